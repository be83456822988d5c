package manager

import (
	"context"
	"encoding/binary"
	"errors"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/courier-go/courier/batch"
)

// TestBlockAtHandshake: a node on the block list is refused at the
// handshake; the dialer's endpoint fails with reason "blocked", both sides
// report the refusal, and the dialer does not retry in a tight loop.
func TestBlockAtHandshake(t *testing.T) {
	t.Parallel()
	a := newNode(t, newCollector(), WithSystemID("alpha"))
	var refusals atomic.Int32
	b := newNode(t, newCollector(), WithSystemID("beta"), WithBlockList("alpha"))
	b.Subscribe(func(e Event) {
		if e.Type == EventPeerRefused && errors.Is(e.Err, ErrBlocked) {
			refusals.Add(1)
		}
	})
	if got := b.Blocked(); !slices.Equal(got, []string{"alpha"}) {
		t.Fatalf("Blocked() = %v", got)
	}
	var dialerErr atomic.Value
	a.Subscribe(func(e Event) {
		if e.Type == EventPeerRefused {
			dialerErr.Store(e.Err)
		}
	})
	if err := a.Send(context.Background(), b.Addr(), &Envelope{Target: "x"}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the endpoint to fail, dead-lettering the envelope with reason blocked", func() bool {
		s, _ := a.Stats(b.Addr())
		return s.State == StateTerminated && s.User.DeadLettered[ReasonBlocked] == 1
	})
	waitFor(t, "the dialer's refused event", func() bool { return dialerErr.Load() != nil })
	if err := dialerErr.Load().(error); !errors.Is(err, ErrBlocked) {
		t.Errorf("dialer's refusal %v is not ErrBlocked", err)
	}
	// Sends in the next moments are refused, not dialed again.
	for range 50 {
		err := a.Send(context.Background(), b.Addr(), &Envelope{Target: "x"})
		if !errors.Is(err, ErrEndpointTerminated) {
			t.Fatalf("Send to a blocking peer: %v, want ErrEndpointTerminated", err)
		}
	}
	time.Sleep(100 * time.Millisecond)
	if n := refusals.Load(); n > 2 { // one per stream of the one attempt
		t.Errorf("%d refusals: the dialer retried", n)
	}
}

// TestBlockLive blocks a connected peer: its streams close, nothing more
// from it is delivered, the endpoint to it fails with reason "blocked", and
// its watchers are told Terminated. After Unblock, a restarted peer (a new
// incarnation) is accepted.
func TestBlockLive(t *testing.T) {
	t.Parallel()
	a, b := newFaultPair(t)
	stop := traffic(a, b)
	defer stop()
	waitFor(t, "traffic both ways", func() bool { return deliveredUser(a) > 100 && deliveredUser(b) > 100 })

	a.m.Block(b.m.SystemID())
	a.mu.Lock()
	atBlock := len(a.user) + len(a.sys)
	a.mu.Unlock()
	if s, _ := a.m.Stats(b.proxy.Addr()); s.State != StateTerminated {
		t.Errorf("endpoint to the blocked peer is %v", s.State)
	}
	checkTerminated(t, a, b.proxy.Addr(), AddressTerminated)
	time.Sleep(300 * time.Millisecond)
	a.mu.Lock()
	after := len(a.user) + len(a.sys)
	a.mu.Unlock()
	if after != atBlock {
		t.Errorf("%d envelopes from the blocked peer delivered after Block returned", after-atBlock)
	}
	a.mu.Lock()
	for id, r := range a.deadReason[batch.LaneUser] {
		// Sent after the Block: a new endpoint, which b refuses, for b
		// quarantined a when a's refusal ended b's endpoint.
		if r != ReasonBlocked && r != ReasonQueueFull && r != ReasonQuarantined {
			t.Errorf("envelope %d dead-lettered with reason %v", id, r)
			break
		}
	}
	a.mu.Unlock()

	a.m.Unblock(b.m.SystemID())
	if got := a.m.Blocked(); len(got) != 0 {
		t.Fatalf("Blocked() after Unblock = %v", got)
	}
	b.kill()
	b2 := newFaultNode(t, b.m.Addr(), b.proxy)
	payload := binary.BigEndian.AppendUint64(nil, 1<<40)
	waitFor(t, "the restarted peer to be accepted", func() bool {
		_ = b2.m.Send(context.Background(), a.proxy.Addr(), &Envelope{Target: "x", Payload: payload})
		a.mu.Lock()
		defer a.mu.Unlock()
		return a.user[1<<40] > 0
	})
}
