package ring

import (
	"context"
	"sync/atomic"
	"time"
)

// Bell lets one consumer sleep until a producer has something for it. A ring
// rings its bell after every push, but ringing costs one atomic load unless
// the consumer is parked: only the first push after the consumer parked
// touches the channel. Several rings may share one bell (WithBell) so that a
// consumer of several rings parks once for all of them.
//
// Ring is safe for any number of goroutines; Wait is for the one consumer.
type Bell struct {
	_      pad
	parked atomic.Uint32 // 1 while the consumer is parked or about to park
	_      pad
	wake   chan struct{} // capacity 1: a pending wake-up is never lost
}

// NewBell returns a bell with no consumer parked.
func NewBell() *Bell {
	return &Bell{wake: make(chan struct{}, 1)}
}

// Ring wakes the consumer if it is parked. The caller must have published
// what the consumer is to find before it rings.
func (b *Bell) Ring() {
	if b.parked.Load() != 0 && b.parked.Swap(0) != 0 {
		select {
		case b.wake <- struct{}{}:
		default:
		}
	}
}

// Wait parks the consumer until ready reports true, a producer rings, or ctx
// ends; it returns ctx.Err() in the last case and nil otherwise. A nil return
// is a hint, not a promise: the caller re-checks its rings and may wait again.
//
// Wait announces that it is parking before it calls ready, and producers
// publish before they ring, so a push that ready misses is bound to see the
// announcement and ring: no wake-up is lost.
func (b *Bell) Wait(ctx context.Context, ready func() bool) error {
	_, err := b.WaitTimer(ctx, nil, ready)
	return err
}

// WaitTimer is Wait that also returns, with timedOut set, when timer fires.
// The caller owns the timer and reuses it, so that a consumer that waits
// with a timeout again and again allocates nothing. A nil timer never fires.
func (b *Bell) WaitTimer(ctx context.Context, timer <-chan time.Time, ready func() bool) (timedOut bool, err error) {
	// No spinning first. A consumer that spins, or yields in a loop, takes
	// the processor from the producers it waits for whenever they share
	// one: on a 2-core machine running more goroutines than cores, that is
	// most of the time. Parking lets them run, and the values they push
	// while the consumer wakes up join its next batch.
	b.parked.Store(1)
	if ready() {
		b.parked.Store(0)
		return false, nil
	}
	select {
	case <-b.wake:
		return false, nil
	case <-timer:
		b.parked.Store(0)
		return true, nil
	case <-ctx.Done():
		b.parked.Store(0)
		return false, ctx.Err()
	}
}
