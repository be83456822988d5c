// Package ring is the first stage of courier's pipeline: a bounded,
// lock-free, multi-producer single-consumer queue of values.
//
// A Ring holds a fixed number of slots, a power of two chosen at
// construction. Any number of goroutines may push; exactly one goroutine,
// the consumer, may call Drain, Wait and Ready. Len, Cap and Close are safe
// from any goroutine.
//
// # Invariants
//
//   - Values are copied into a slot by TryPush and copied out by Drain or
//     Peek. A value the consumer has read can be retained in its slot until
//     the consumer releases it (the writer keeps envelopes until the peer
//     acknowledges them, and reads them again after a reconnect); Release
//     and Drain clear the slot, so the ring never keeps a released value
//     alive.
//   - Values pushed by one goroutine are drained in the order it pushed them.
//   - Neither TryPush nor Drain takes a lock, touches a channel or
//     allocates (but the first push after New or Shed, which allocates the
//     slots). Producers never spin on a slot: a push either claims a free
//     position with one compare-and-swap on the tail or reports ErrFull.
//   - The consumer wakes once per batch, not once per value: a producer rings
//     the Bell only when the consumer has announced that it is parking on an
//     empty ring, which is the empty → non-empty transition the consumer can
//     observe.
//   - Nobody spins. A consumer with nothing to read parks at once, and so
//     does a producer in Push that finds the ring full. Parked producers
//     are woken one at a time, in the order they parked: freeing one slot
//     wakes one producer, and a producer that gets in wakes the next while
//     room is left.
//   - After Close no push succeeds, and the consumer can still read every
//     value whose push succeeded; Drained reports when it has.
//   - The slots are allocated by the first push, not by New, and the
//     consumer can free them again with Shed while the ring is empty and
//     retains nothing; the next push allocates them anew. Capacity never
//     changes: a full ring is full at the same length whether its slots
//     were allocated once or many times. Shed sets a flag in the tail word
//     with the same compare-and-swap producers claim positions with, so no
//     push can be writing into the slots it frees. Next hands the consumer
//     a value where it lies, for encoding without a copy; it stays there
//     until Release.
//
// # Layout
//
// The producers' tail, the consumer's head, the Bell's parking flag and the
// blocked-producer gate each sit on their own cache line, so the hot counters
// of one side never invalidate the other side's line. A slot carries a
// sequence number that its producer stores after writing the value; the
// consumer reads it to know the slot is ready. Producers learn how much room
// is left from a copy of the consumer's head kept on their own line, and read
// the consumer's head only when that copy says the ring is full: once a lap,
// not once per push.
package ring
