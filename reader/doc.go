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
//   - A batch is refused whole, before any of it is delivered, when it
//     breaks the numbering below (ErrBadPosition, a *PositionError) or
//     holds an envelope its lane does not allow (ErrInvalidEnvelope): one
//     without a target, or, on the user lane, of any kind but none, or, on
//     the system lane, of a kind courier does not know. Both wrap
//     ErrProtocol, and the dialer sees codes.InvalidArgument.
//   - Per envelope the loop takes no lock, makes no channel operation and
//     allocates nothing; per frame it takes the lane's lock once.
//
// # Positions
//
// A sender numbers each lane's envelopes toward a peer with consecutive
// positions (courier.v1.Batch.position is the first of a batch's). The
// receiver keeps, per peer incarnation and lane, the last position it
// delivered or was told to skip; it starts at 0, and moves only forward.
// Against it a batch must keep these rules, or the stream is closed:
//
//   - Position 0 is not a position: a lane's first envelope is at 1.
//   - A batch with envelopes starts at or below last+1: a resend after a
//     reconnect overlaps what was delivered (those envelopes are dropped as
//     duplicates), but a batch never leaves a gap. So the first batch with
//     envelopes that a receiver gets for a peer incarnation and lane starts
//     at 1, unless a skip came before it.
//   - A batch without envelopes is a skip: every position before its own
//     will never come (envelopes the sender dead-lettered as too large, or
//     owed to an incarnation of this node that it has settled with, after
//     which its numbering goes on where it was). A skip only moves last
//     forward; one at or below last+1 changes nothing.
//   - No batch's positions wrap past 2^64-1, the last position there is.
//
// A sender that follows them, as courier's writer does, never loses an
// envelope silently at the receiver: each position is delivered once, or
// was skipped by the sender, which dead-lettered the envelope.
package reader
