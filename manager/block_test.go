package manager

import (
	"context"
	"encoding/binary"
	"errors"
	"slices"
	"sync/atomic"
	"testing"

	"github.com/courier-go/courier/batch"
	"github.com/courier-go/courier/internal/testutil"
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
	// The dialer's refusals, and whether it has reported its end.
	var dialerErr atomic.Value
	var dialerRefusals atomic.Int32
	var dialerEnded atomic.Bool
	a.Subscribe(func(e Event) {
		switch e.Type {
		case EventPeerRefused:
			dialerRefusals.Add(1)
			dialerErr.Store(e.Err)
		case EventTerminated:
			dialerEnded.Store(true)
		}
	})
	var queued uint64
	if sendToRefuser(t, a, b.Addr()) {
		queued = 1
	}
	ep := endpointOf(t, a, b.Addr())
	testutil.Eventually(t, "the endpoint to fail, dead-lettering what it queued with reason blocked", patience, func() bool {
		s, _ := a.Stats(b.Addr())
		return s.State == StateTerminated && s.User.DeadLettered[ReasonBlocked] == queued
	})
	// The endpoint's goroutine has returned: it dials no more. It reports
	// each attempt's refusal before its end, and events arrive in order,
	// so by its terminated event every refusal it will ever report is in.
	endpointEnded(t, ep)
	testutil.Eventually(t, "the dialer's terminated event", patience, dialerEnded.Load)
	if err, _ := dialerErr.Load().(error); !errors.Is(err, ErrBlocked) {
		t.Errorf("dialer's refusal %v is not ErrBlocked", err)
	}
	if n := dialerRefusals.Load(); n != 1 {
		t.Errorf("the dialer was refused %d times, want once: it retried", n)
	}
	// Sends in the next moments are refused, not dialed again: the
	// terminated endpoint stays the address's, and no other dials.
	for range 50 {
		err := a.Send(context.Background(), b.Addr(), &Envelope{Target: "x"})
		if !errors.Is(err, ErrEndpointTerminated) {
			t.Fatalf("Send to a blocking peer: %v, want ErrEndpointTerminated", err)
		}
	}
	if endpointOf(t, a, b.Addr()) != ep {
		t.Error("a Send to the blocking peer made a new endpoint, which dials it again")
	}
	testutil.Eventually(t, "b to report the refusal", patience, func() bool { return refusals.Load() > 0 })
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
	testutil.Eventually(t, "traffic both ways", patience, func() bool { return deliveredUser(a) > 100 && deliveredUser(b) > 100 })

	ep := endpointOf(t, a.m, b.proxy.Addr())
	a.m.Block(b.m.SystemID())
	a.mu.Lock()
	atBlock := len(a.user) + len(a.sys)
	a.mu.Unlock()
	if s := states[ep.State()]; s != StateTerminated {
		t.Errorf("endpoint to the blocked peer is %v", s)
	}
	checkTerminated(t, a, b.proxy.Addr(), AddressTerminated, func() { endpointEnded(t, ep) })
	// What a delivered from b is final once b can send nothing more: the
	// traffic stopped, b closed, and no stream of b's left on a (a blocked
	// system's handshakes are refused, so none can come).
	stop()
	b.kill()
	testutil.Eventually(t, "a to have no stream from b open", patience, func() bool { return a.m.live.count(b.m.SystemID()) == 0 })
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
	b2 := newFaultNode(t, b.m.Addr(), b.proxy)
	payload := binary.BigEndian.AppendUint64(nil, 1<<40)
	testutil.Eventually(t, "the restarted peer to be accepted", patience, func() bool {
		_ = b2.m.Send(context.Background(), a.proxy.Addr(), &Envelope{Target: "x", Payload: payload})
		a.mu.Lock()
		defer a.mu.Unlock()
		return a.user[1<<40] > 0
	})
}
