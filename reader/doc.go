// Package reader is the inbound stage of courier's pipeline: the Transport
// gRPC service, which runs the listener's side of the handshake on every
// Connect stream, and the receive loop that decodes frames on either end of
// a stream and delivers their envelopes.
//
// # Concurrency
//
// Each stream has one receive loop, its only receiver, running in the gRPC
// handler's goroutine on the listening side and in a goroutine of the
// endpoint on the dialing side. Deliver is called from that goroutine, in
// order. The streams of different lanes and peers are independent: a slow
// handler on one stream holds back that stream only.
//
// # Invariants
//
//   - Nothing is delivered before the handshake is accepted, and nothing a
//     frame says is trusted before the frame decoder has checked it against
//     the negotiated limits.
//   - Any bad frame, protocol violation or panicking handler ends the stream
//     with an error wrapping a typed sentinel and a gRPC status; the rest of
//     the node is unaffected.
//   - Envelopes of one lane from one peer incarnation are delivered once and
//     in order, across streams and reconnects: a LaneState remembers the
//     last position delivered, and only the stream that claimed it last may
//     deliver.
//   - Per envelope the loop takes no lock, makes no channel operation and
//     allocates nothing; per frame it takes the lane's lock once.
package reader
