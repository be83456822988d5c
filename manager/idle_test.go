package manager

import (
	"context"
	"errors"
	"fmt"
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
