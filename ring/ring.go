package ring

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync/atomic"
)

// Errors returned by the ring. Compare with errors.Is.
var (
	// ErrFull is returned by TryPush when every slot holds a value the
	// consumer has not drained yet.
	ErrFull = errors.New("ring: full")
	// ErrClosed is returned by pushes after Close, and by Wait once the ring
	// is closed and every accepted value has been drained.
	ErrClosed = errors.New("ring: closed")
	// ErrCapacity is returned by New for a capacity that is not a power of
	// two between MinCapacity and MaxCapacity.
	ErrCapacity = errors.New("ring: capacity must be a power of two")
)

// Capacity bounds accepted by New.
const (
	MinCapacity = 2
	MaxCapacity = 1 << 30
)

// Flags in the tail word. Positions count pushes and never reach them.
const (
	// closedBit marks the tail once the ring is closed.
	closedBit = uint64(1) << 63
	// bareBit marks a ring without storage: new, or shed by its consumer
	// while empty. The next push allocates the storage.
	bareBit = uint64(1) << 62
	// growBit marks the producer that is allocating the storage; others
	// yield until it is done.
	growBit = uint64(1) << 61
	flags   = closedBit | bareBit | growBit
)

// pad keeps what follows it off the cache line of what precedes it. 128
// bytes, because x86's adjacent-line prefetcher pulls lines in pairs.
type pad [128]byte

type slot[T any] struct {
	// seq is pos+1 once the producer that claimed position pos has written
	// val. Any other value means the slot is not ready for the consumer.
	seq atomic.Uint64
	val T
}

// Ring is a bounded lock-free multi-producer single-consumer queue. Create it
// with New. See the package documentation for the concurrency contract.
type Ring[T any] struct {
	// storage holds the slots; nil while the tail has bareBit. It is
	// replaced only by the producer holding growBit, and cleared only by
	// the consumer in Shed, while no position is claimed.
	storage atomic.Pointer[storage[T]]
	// Read-only after New.
	size uint64 // the capacity: len of the slots
	mask uint64
	bell *Bell
	_    pad

	// tail is the next position to claim, with the flags above. Written
	// by producers with compare-and-swap.
	tail atomic.Uint64
	// seenHead is a head some producer has read: at most head, so a
	// position less than a lap ahead of it is free. Producers check room
	// against it and read the consumer's head only when it says full, so
	// the consumer's line is read once per lap, not once per push.
	seenHead atomic.Uint64
	_        pad

	// head is the first position not yet released: every slot below it is
	// free. Written only by the consumer, once per Release; producers read
	// it to see how much room is left.
	head atomic.Uint64
	// read is the next position to hand to the consumer; head <= read. Only
	// the consumer touches it. Values between head and read have been read
	// but are retained until Release.
	read uint64
	_    pad

	gate gate
}

// storage is the slots of a ring, allocated at its first push.
type storage[T any] struct{ slots []slot[T] }

// Option configures a Ring in New.
type Option interface{ apply(*options) }

type options struct{ bell *Bell }

type optionFunc func(*options)

func (f optionFunc) apply(o *options) { f(o) }

// WithBell makes the ring ring b instead of a bell of its own, so that one
// consumer can park on several rings at once (see Bell.Wait). Default: each
// ring has its own bell.
func WithBell(b *Bell) Option {
	return optionFunc(func(o *options) { o.bell = b })
}

// New returns an empty ring with room for capacity values. capacity must be
// a power of two in [MinCapacity, MaxCapacity]; otherwise New returns an
// error that wraps ErrCapacity.
func New[T any](capacity int, opts ...Option) (*Ring[T], error) {
	if capacity < MinCapacity || capacity > MaxCapacity || capacity&(capacity-1) != 0 {
		return nil, fmt.Errorf("%w in [%d, %d], got %d", ErrCapacity, MinCapacity, MaxCapacity, capacity)
	}
	var o options
	for _, opt := range opts {
		opt.apply(&o)
	}
	if o.bell == nil {
		o.bell = NewBell()
	}
	r := &Ring[T]{
		size: uint64(capacity),
		mask: uint64(capacity - 1),
		bell: o.bell,
		gate: gate{turn: make(chan struct{}, 1), closed: make(chan struct{})},
	}
	r.tail.Store(bareBit) // the slots are allocated by the first push
	return r, nil
}

// grow allocates the storage of a ring whose tail t has bareBit, or yields
// to the producer that is doing it. New slots have seq 0, which is not
// ready for any position (ready means pos+1).
func (r *Ring[T]) grow(t uint64) {
	if t&growBit != 0 {
		runtime.Gosched() // another producer is allocating: rare, and short
		return
	}
	if !r.tail.CompareAndSwap(t, t|growBit) {
		return
	}
	// Always fresh: a Shed that read the old storage before it set
	// bareBit clears storage only if it still holds the old one.
	r.storage.Store(&storage[T]{slots: make([]slot[T], r.size)})
	for {
		t := r.tail.Load()
		if r.tail.CompareAndSwap(t, t&^(bareBit|growBit)) { // keeps closedBit
			return
		}
	}
}

// Shed frees the ring's storage if the ring is empty and retains nothing,
// and reports whether it did: an idle ring then holds no slots, and the
// next push allocates them again. The capacity stays what it was. Consumer
// only.
func (r *Ring[T]) Shed() bool {
	t := r.tail.Load()
	old := r.storage.Load()
	if old == nil || t&flags != 0 || r.read != t || r.head.Load() != t {
		return false
	}
	// With bareBit set no producer can claim a position: each claims with
	// a compare-and-swap of the tail it read without the bit.
	if !r.tail.CompareAndSwap(t, t|bareBit) {
		return false // a push got in
	}
	r.storage.CompareAndSwap(old, nil) // unless a push has grown it already
	return true
}

// Holding reports whether the ring holds its storage (see Shed). Safe from
// any goroutine.
func (r *Ring[T]) Holding() bool { return r.tail.Load()&bareBit == 0 }

// TryPush copies v into the ring. It returns ErrFull when there is no free
// slot and ErrClosed after Close; it never blocks. Safe for concurrent use.
func (r *Ring[T]) TryPush(v T) error { return r.TryPushFrom(&v) }

// TryPushFrom is TryPush of *v: it copies the value straight from v into
// its slot, without the copy a by-value argument makes, which matters for
// large values. The ring keeps no reference to v.
func (r *Ring[T]) TryPushFrom(v *T) error {
	for {
		t := r.tail.Load()
		if t&flags != 0 {
			if t&closedBit != 0 {
				return ErrClosed
			}
			r.grow(t)
			continue
		}
		// Every position below head has been drained and its slot cleared,
		// so position t is free as long as it is less than a lap ahead.
		if t-r.seenHead.Load() >= r.size {
			h := r.head.Load()
			if int64(t-h) < 0 {
				continue // t is stale: the consumer has drained past it since
			}
			if t-h >= r.size {
				return ErrFull
			}
			r.seenHead.Store(h)
		}
		if r.tail.CompareAndSwap(t, t+1) {
			// A claimed position keeps the ring from being shed: the
			// storage stays until the consumer has released it.
			s := &r.storage.Load().slots[t&r.mask]
			s.val = *v
			s.seq.Store(t + 1)
			r.bell.Ring()
			return nil
		}
	}
}

// Push copies v into the ring, waiting while it is full. It returns
// ErrClosed if the ring is closed before v is accepted and ctx.Err() if ctx
// ends first. Safe for concurrent use.
//
// Waiting is the slow path. A producer that finds the ring full parks at
// once: spinning would only take the processor from the consumer it waits
// for. Parked producers are woken one at a time, in the order they parked:
// the consumer wakes the first when it frees room, and a woken producer that
// pushes wakes the next if room is left. So freeing a few slots wakes a few
// producers, not all of them, and a burst of producers costs one wake-up per
// producer that gets in, not one per value.
func (r *Ring[T]) Push(ctx context.Context, v T) error { return r.PushFrom(ctx, &v) }

// PushFrom is Push of *v, copying straight from v as TryPushFrom does.
func (r *Ring[T]) PushFrom(ctx context.Context, v *T) error {
	if err := r.TryPushFrom(v); err != ErrFull {
		return err
	}
	for {
		// Counted as waiting before the retry: a Release that frees a slot
		// after this TryPush fails is bound to see the waiter and pass it
		// the turn.
		r.gate.waiting.Add(1)
		err := r.TryPushFrom(v)
		if err != ErrFull {
			r.gate.waiting.Add(-1)
			if err == nil {
				r.passTurn()
			}
			return err
		}
		select {
		case <-r.gate.turn:
		case <-r.gate.closed:
		case <-ctx.Done():
			r.gate.waiting.Add(-1)
			return ctx.Err()
		}
		r.gate.waiting.Add(-1) // woken: count in again and retry
	}
}

// passTurn wakes the next parked producer if there is room for it.
func (r *Ring[T]) passTurn() {
	if r.gate.waiting.Load() > 0 && r.Len() < int(r.size) {
		r.gate.wake()
	}
}

// Drain moves up to len(dst) values, oldest first, into dst and returns how
// many it moved: Peek, then Release of everything read. Consumer only.
func (r *Ring[T]) Drain(dst []T) int {
	n := r.Peek(dst)
	r.Release(r.Retained())
	return n
}

// Peek copies up to len(dst) values into dst, oldest unread first, and
// returns how many it copied. The values stay in the ring, taking room,
// until Release; Rewind makes them readable again. Peek stops early at a
// slot whose producer has claimed it but not yet finished writing it.
// Consumer only.
func (r *Ring[T]) Peek(dst []T) int {
	st := r.storage.Load()
	if st == nil {
		return 0
	}
	p := r.read
	n := 0
	for n < len(dst) {
		s := &st.slots[p&r.mask]
		if s.seq.Load() != p+1 {
			break
		}
		dst[n] = s.val
		p++
		n++
	}
	r.read = p
	return n
}

// Next returns the oldest unread value where it lies, and marks it read,
// or nil when none is ready: Peek of one value, without the copy. The value
// stays in place, unchanged, until Release frees its slot. Consumer only.
func (r *Ring[T]) Next() *T {
	st := r.storage.Load()
	if st == nil {
		return nil
	}
	s := &st.slots[r.read&r.mask]
	if s.seq.Load() != r.read+1 {
		return nil
	}
	r.read++
	return &s.val
}

// Release frees the slots of the n oldest values not yet released, and
// wakes producers waiting for room. Those values must have been read, though
// a Rewind since may have made them readable again: a reader moves past
// them. Release panics if n is more than Len. Consumer only.
func (r *Ring[T]) Release(n int) {
	if n <= 0 {
		return
	}
	h := r.head.Load()
	end := h + uint64(n)
	if end > r.tail.Load()&^flags {
		panic("ring: Release of more values than the ring holds")
	}
	// Whole slots are cleared, a run at a time (two where the positions
	// wrap), which is one bulk clear instead of a store per field. A
	// cleared seq is ready for no position, as in a new slot, and no
	// producer can claim these positions until head moves past them.
	slots := r.storage.Load().slots // values are held: so is the storage
	from, to := h&r.mask, end&r.mask
	switch {
	case n == len(slots):
		clear(slots)
	case from < to:
		clear(slots[from:to])
	default:
		clear(slots[from:])
		clear(slots[:to])
	}
	r.read = max(r.read, end)
	r.head.Store(end)
	if r.gate.waiting.Load() > 0 {
		r.gate.wake()
	}
}

// Rewind makes every value read and not yet released readable again, from
// the oldest. Consumer only.
func (r *Ring[T]) Rewind() { r.read = r.head.Load() }

// Retained returns the number of values read and not yet released. Consumer
// only.
func (r *Ring[T]) Retained() int { return int(r.read - r.head.Load()) }

// Ready reports whether Peek or Drain would return at least one value.
// Consumer only.
func (r *Ring[T]) Ready() bool {
	st := r.storage.Load()
	return st != nil && st.slots[r.read&r.mask].seq.Load() == r.read+1
}

// Wait parks the consumer until the ring has a value to drain, the ring is
// closed and drained, or ctx ends. It returns nil when there may be values
// to drain (it can return spuriously with none), ErrClosed once Drained
// holds, and ctx.Err() if ctx ends first. Consumer only.
func (r *Ring[T]) Wait(ctx context.Context) error {
	for {
		if r.Drained() {
			return ErrClosed
		}
		if err := r.bell.Wait(ctx, r.readyOrClosed); err != nil {
			return err
		}
		if !r.Drained() {
			return nil
		}
	}
}

func (r *Ring[T]) readyOrClosed() bool {
	return r.Ready() || r.tail.Load()&closedBit != 0
}

// Close makes every later push fail with ErrClosed, wakes a parked consumer
// and releases producers blocked in Push. Values already accepted stay in the
// ring for the consumer to drain. Close is idempotent and safe from any
// goroutine.
func (r *Ring[T]) Close() {
	if r.tail.Or(closedBit)&closedBit != 0 {
		return
	}
	r.bell.Ring()
	close(r.gate.closed)
}

// Closed reports whether Close has been called.
func (r *Ring[T]) Closed() bool { return r.tail.Load()&closedBit != 0 }

// Drained reports whether the ring is closed and the consumer has read
// every value that was accepted before Close (some may still be retained).
// Consumer only.
func (r *Ring[T]) Drained() bool {
	t := r.tail.Load()
	return t&closedBit != 0 && r.read == t&^flags
}

// Len returns the number of values accepted and not yet released: those
// waiting to be read, those read and retained, and those whose producers are
// still writing them. Safe from any goroutine; the
// answer may be stale by the time it is used.
func (r *Ring[T]) Len() int {
	h := r.head.Load()
	t := r.tail.Load() &^ flags
	if t < h { // tail read after a concurrent Drain moved head past it
		return 0
	}
	return int(t - h)
}

// Pushed returns how many values have been accepted since New: the
// position of the latest push, counting from 1. A producer that reads it
// after its own push returned gets at least that push's position. Safe from
// any goroutine.
func (r *Ring[T]) Pushed() uint64 { return r.tail.Load() &^ flags }

// Bell returns the bell the ring rings when a value arrives, for consumers
// that park on more than the ring.
func (r *Ring[T]) Bell() *Bell { return r.bell }

// Cap returns the ring's capacity.
func (r *Ring[T]) Cap() int { return int(r.size) }

// gate parks producers that found the ring full. Only producers about to
// park and a consumer that sees one waiting touch its channels.
type gate struct {
	waiting atomic.Int32 // producers parked or about to park
	_       pad
	turn    chan struct{} // capacity 1: a pending turn is never lost
	closed  chan struct{} // closed by Close
}

func (g *gate) wake() {
	select {
	case g.turn <- struct{}{}:
	default: // a turn is already pending
	}
}
