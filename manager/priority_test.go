package manager

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/courier-go/courier/batch"
)

// gatedHandler blocks user deliveries until the gate opens and records
// system ones at once.
type gatedHandler struct {
	gate     chan struct{}
	user     atomic.Int64
	system   *collector
	userSeen chan struct{} // closed at the first user delivery
	first    atomic.Bool
}

func newGated() *gatedHandler {
	return &gatedHandler{gate: make(chan struct{}), system: newCollector(), userSeen: make(chan struct{})}
}

func (h *gatedHandler) Deliver(p Peer, env *Envelope) {
	if env.Lane == batch.LaneSystem {
		h.system.Deliver(p, env)
		return
	}
	if h.first.CompareAndSwap(false, true) {
		close(h.userSeen)
	}
	<-h.gate
	h.user.Add(1)
}

// TestSystemLaneOvertakesStalledUserLane: the receiver's user handler is
// stuck, the sender floods the user lane far past its capacity, and system
// envelopes sent meanwhile are delivered while the user lane is still
// stalled. If they waited for the user lane, the test would fail: the gate
// opens only after they arrive, or after the deadline.
func TestSystemLaneOvertakesStalledUserLane(t *testing.T) {
	t.Parallel()
	h := newGated()
	var dead atomic.Int64
	a := newNode(t, newCollector(), WithUserQueue(256), WithDeadLetterHandler(func(DeadLetter) { dead.Add(1) }))
	b := newNode(t, h)
	defer func() {
		select {
		case <-h.gate:
		default:
			close(h.gate)
		}
	}()

	payload := make([]byte, 1024)
	const flood = 20000
	for range flood {
		if err := a.Send(context.Background(), b.Addr(), &Envelope{Target: "u", Payload: payload}); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case <-h.userSeen:
	case <-time.After(10 * time.Second):
		t.Fatal("no user envelope reached the handler")
	}
	if dead.Load() == 0 {
		t.Fatal("the flood did not overflow the user queue")
	}

	const system = 50
	for i := range system {
		env := &Envelope{Target: "s", Lane: batch.LaneSystem, Kind: batch.KindStop, RequestID: uint64(i)}
		if err := a.Send(context.Background(), b.Addr(), env); err != nil {
			t.Fatal(err)
		}
	}
	got := h.system.wait(t, system, 10*time.Second)
	if n := h.user.Load(); n != 0 {
		t.Fatalf("%d user envelopes were delivered although the handler is stuck", n)
	}
	for i, e := range got {
		if e.RequestID != uint64(i) {
			t.Fatalf("system envelope %d has request id %d", i, e.RequestID)
		}
	}
	close(h.gate)
	s := quiet(t, a, b.Addr())
	checkBalanced(t, s)
	if total := s.User.Enqueued + s.User.DeadLettered[ReasonQueueFull]; total != flood {
		t.Fatalf("enqueued %d + dropped %d != sent %d", s.User.Enqueued, s.User.DeadLettered[ReasonQueueFull], flood)
	}
}
