package manager

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/courier-go/courier/internal/testutil"
)

// TestIdleLaneShedsItsQueue: a lane idle for the idle-release period gives
// its queue's memory back, sends again as before when the next envelope
// comes, and keeps its capacity.
func TestIdleLaneShedsItsQueue(t *testing.T) {
	t.Parallel()
	recv := newCollector()
	const capacity = 64
	a := newNode(t, newCollector(), WithSystemID("a"), WithOverflowPolicy(Fail),
		WithUserQueue(capacity), WithIdleRelease(50*time.Millisecond))
	b := newNode(t, recv, WithSystemID("b"))
	send := func(from, n int) {
		t.Helper()
		for i := from; i < from+n; i++ {
			if err := a.Send(context.Background(), b.Addr(), &Envelope{Target: "t", Payload: []byte(fmt.Sprint(i))}); err != nil {
				t.Fatal(err)
			}
		}
	}
	stats := func() EndpointStats {
		s, ok := a.Stats(b.Addr())
		if !ok {
			t.Fatal("no endpoint")
		}
		return s
	}
	send(0, 10)
	recv.wait(t, 10, patience)
	if s := stats(); !s.System.Shed {
		t.Fatal("the system lane, which has sent nothing, holds its queue")
	}
	testutil.Eventually(t, "the idle user lane to shed its queue", patience, func() bool {
		s := stats().User
		return s.Shed && s.Sheds >= 1 && s.Queued == 0 && s.Capacity == capacity
	})
	send(10, 10)
	got := recv.wait(t, 20, patience)
	for i, e := range got {
		if string(e.Payload) != fmt.Sprint(i) {
			t.Fatalf("envelope %d carries %q", i, e.Payload)
		}
	}
	testutil.Eventually(t, "the lane to shed again", patience, func() bool { return stats().User.Sheds >= 2 })
	if s := stats().User; s.Sent != 20 || s.Acked != 20 || s.Resent != 0 {
		t.Fatalf("after two sheds: sent %d, acked %d, resent %d", s.Sent, s.Acked, s.Resent)
	}
}

// TestIdleReleaseOption: WithIdleRelease takes [0, 1h].
func TestIdleReleaseOption(t *testing.T) {
	for _, d := range []time.Duration{-time.Millisecond, time.Hour + 1} {
		if _, err := New(WithHandler(newCollector()), WithIdleRelease(d)); !errors.Is(err, ErrInvalidOption) {
			t.Errorf("WithIdleRelease(%v): %v, want ErrInvalidOption", d, err)
		}
	}
	m, err := New(WithHandler(newCollector()), WithIdleRelease(0))
	if err != nil {
		t.Fatal(err)
	}
	_ = m.Close(context.Background())
}

// TestSendAllocatesNothing: Send of an envelope on the caller's stack, to
// a live endpoint with room, allocates nothing: the envelope is copied into
// the queue, and no path of Send may make it escape (one did, through an
// interface call on the queue-full path, and cost an allocation per Send).
func TestSendAllocatesNothing(t *testing.T) {
	var delivered atomic.Int64 // a handler that allocates nothing itself
	a := newNode(t, newCollector(), WithSystemID("a"), WithUserQueue(1<<16))
	b := newNode(t, HandlerFunc(func(Peer, *Envelope) { delivered.Add(1) }), WithSystemID("b"))
	payload := []byte("payload")
	if err := a.Send(context.Background(), b.Addr(), &Envelope{Target: "t", Payload: payload}); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, "the first envelope", patience, func() bool { return delivered.Load() == 1 })
	ctx := context.Background()
	// AllocsPerRun counts the whole process's allocations, the writers' and
	// readers' per frame too: the fewest of a few runs is Send's.
	allocs := 1.0
	for range 5 {
		allocs = min(allocs, testing.AllocsPerRun(2000, func() {
			env := Envelope{Target: "t", TypeName: "T", Payload: payload}
			if err := a.Send(ctx, b.Addr(), &env); err != nil {
				t.Fatal(err)
			}
		}))
	}
	if allocs > 0.05 {
		t.Fatalf("Send allocates %v times per envelope", allocs)
	}
}
