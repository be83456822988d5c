// Package wire joins courier's frames to gRPC. It is the stage between the
// frame codec (batch) and the two ends of a stream (writer, reader): the
// pass-through codec that hands gRPC pre-encoded frames and hands back
// received ones without a copy, the stream interface both sides of a
// Connect stream share, and the handshake: its messages (NewHello,
// NewWelcome, the limits both sides settle on), its checks, its refusals
// and their sentinels.
//
// # Invariants
//
//   - The codec is registered under the content-subtype "courier" and
//     chosen per call, so an embedder's own gRPC services on the same
//     server or connection keep their codecs.
//   - A buffer given to gRPC by Marshal belongs to gRPC until its transport
//     has written it; a received InFrame holds gRPC's pieces until Free.
//   - The first frame of a stream is a Hello (dialer) or a Welcome
//     (listener), decoded under HandshakeLimits before any limit is
//     negotiated; anything else ends the stream with ErrHandshake. The
//     limits of a stream are the smaller of both sides' (Negotiated), so
//     neither sends what the other refuses.
//   - Every refusal is a *RefusedError that wraps ErrRefused and the
//     sentinel of its reason; which reasons are final and which may be
//     retried is the dialer's decision (package peer), documented in
//     manager.
//
// # Concurrency
//
// Codec is stateless and safe for concurrent use. A Stream is used as gRPC
// allows: one goroutine sends and one receives. Dial and Accept run on the
// stream's goroutines before either side starts its loops; Accept reads the
// Hello on a goroutine of its own so that its timeout holds, and that
// goroutine ends with the stream.
package wire
