// Package writer is the outbound stage of courier's pipeline: one Writer per
// lane per peer moves envelopes from the lane's ring into frames on a
// stream.
//
// # Concurrency
//
// A Writer owns one goroutine, the ring's only consumer and the stream's
// only sender. Producers push into the ring from any goroutine and ring its
// bell only when the writer is parked, so the writer wakes once per burst.
// Attach, Detach, PeerAcked, AckReceived, Stop and Terminate are safe from
// any goroutine.
//
// # Invariants
//
//   - Envelopes leave the ring in the order they were pushed and get
//     consecutive lane positions, which outlive streams. A frame carries the
//     position of its first envelope.
//   - A sent envelope stays in its ring slot until the peer acknowledges its
//     position, so the ring's capacity bounds queued plus unacknowledged
//     envelopes. After a link is lost the writer rewinds and sends the
//     unacknowledged envelopes again, with the same positions, on the next
//     link; the receiver drops what it already delivered.
//   - An envelope that cannot fit a frame under the negotiated limits is
//     dead-lettered once, and its position skipped; the next frame (an empty
//     one if need be) tells the receiver the position will not come.
//   - The writer asks for an acknowledgement when it is about to go idle or
//     when a quarter of its ring waits for one, with at most two asks
//     unanswered: acks cost a few frames per burst, not one per frame, and
//     come back before the senders find the ring full of envelopes that are
//     only waiting for their ack.
//   - After a frame of 16 KiB or more the writer yields its processor once,
//     having handed the frame to gRPC, whose writer goroutine it has just
//     woken; and the receive loop yields after asking for that frame's ack.
//     Either woken goroutine would otherwise wait until the waker blocks,
//     which under load is a frame later, and the sender's window is only as
//     wide as its ring. Smaller frames, as to many peers at once, do not
//     yield.
//   - Envelopes are encoded where they lie in the ring (Ring.Next), not
//     copied out first. A lane idle for Config.IdleRelease, with nothing
//     queued or unacknowledged, sheds the ring's slots and the encoder's
//     room for a frame (Ring.Shed, Encoder.Shed); the next envelope
//     allocates them again.
//   - When the writer exits, every envelope left in the ring is dead-lettered
//     exactly once, with the reason it was stopped for.
//   - Per envelope the writer takes no lock, makes no channel operation and
//     allocates nothing; per frame it takes a pooled buffer that gRPC
//     returns once it has written it.
//
// The writer decides two dead-letter reasons (ReasonTooLarge and
// ReasonShutdown); every other reason is its caller's (package peer, which
// numbers them all), handed to Terminate or Settle and passed back to
// DeadLetter unchanged. DeadLetter is where the caller counts them.
//
// One lane's writer never waits for the other's: the system lane has its
// own ring, writer and stream, so a user stream blocked by HTTP/2 flow
// control cannot delay it.
package writer
