package courierremote

import (
	"sync"

	"github.com/courier-go/courier/batch"
	"google.golang.org/protobuf/proto"
)

// Small payloads are carved out of shared chunks instead of allocated one
// by one: at 64 B a message, an allocation per payload was a fifth of the
// sending node's CPU, most of it the garbage collector's. A chunk is never
// written again once a payload is carved from it, and never reused: the
// garbage collector frees it when the last payload in it is gone, so a
// payload stays valid for as long as anyone holds it, which is what
// courier's Send asks of a payload (valid until delivered or
// dead-lettered) and what a decoded message asks of the bytes it aliases.
const (
	// arenaChunk is the size of one chunk: the largest of the runtime's
	// small size classes that is well below its 32 KiB large-object path,
	// which was a third of the arena's cost.
	arenaChunk = 16 << 10
	// arenaMax is the largest payload copied into a chunk on receipt, and
	// the least room a sender's chunk keeps for the next payload; a larger
	// one is allocated alone, so that no chunk is held by a big payload's
	// neighbours for long.
	arenaMax = 2 << 10
)

// arena hands out the tail of a chunk. An arena is used by one goroutine
// at a time: arenas takes it from the pool and puts it back.
type arena struct{ buf []byte }

// arenas are per-P, so that concurrent senders neither share a chunk nor
// take a lock.
var arenas = sync.Pool{New: func() any { return new(arena) }}

// tail returns the chunk's free space, a new chunk when less than arenaMax
// is left, as a zero-length slice to append to.
func (a *arena) tail() []byte {
	if cap(a.buf)-len(a.buf) < arenaMax {
		a.buf = make([]byte, 0, arenaChunk)
	}
	return a.buf[len(a.buf):]
}

// carve takes out the n bytes that were appended to tail, when they stayed
// in the chunk, and reports whether they did.
func (a *arena) carve(out []byte) bool {
	free := a.buf[len(a.buf):cap(a.buf)]
	if len(out) == 0 || cap(out) != cap(free) || &out[0] != &free[0] {
		return false // grown out of the chunk: it is the caller's own
	}
	a.buf = a.buf[:len(a.buf)+len(out)]
	return true
}

// copyIn returns a copy of p carved from the arena (a fresh allocation
// when p is larger than arenaMax).
func copyIn(p []byte) []byte {
	if len(p) > arenaMax || len(p) == 0 {
		return append([]byte(nil), p...)
	}
	a := arenas.Get().(*arena)
	out := append(a.tail(), p...)
	a.carve(out)
	arenas.Put(a)
	return out[:len(out):len(out)]
}

// decodeUser decodes a user envelope's payload from a copy carved out of
// an arena, so that the message's bytes and strings may alias the copy
// (serial.Registry.UnmarshalAliasing) instead of being allocated one by
// one. A decoded message holds at most one chunk (arenaChunk bytes) alive.
func (r *Remote) decodeUser(env *batch.Envelope) (proto.Message, error) {
	msg, err := r.ser.UnmarshalAliasing(env.TypeName, env.SerializerID, copyIn(env.Payload))
	return r.orControl(env, msg, err)
}
