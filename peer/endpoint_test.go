package peer

import (
	"context"
	"errors"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/courier-go/courier/batch"
	"github.com/courier-go/courier/internal/testutil"
	"github.com/courier-go/courier/internal/wire"
	courierv1 "github.com/courier-go/courier/proto/courier/v1"
	"github.com/courier-go/courier/reader"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

var errLost = status.Error(codes.Unavailable, "connection lost")

func userStats(h *harness) LaneStats { return h.ep.Stats().Lanes[batch.LaneUser] }

func balanced(s LaneStats) bool {
	var dead uint64
	for r, n := range s.DeadLettered {
		if Reason(r) != ReasonQueueFull {
			dead += n
		}
	}
	return s.Enqueued == s.Acked+dead+uint64(s.Queued)
}

// deliveredUnacknowledged connects an endpoint to r, which acknowledges
// nothing, and sends it k user envelopes; it returns once r has delivered
// them, with their targets.
func deliveredUnacknowledged(t *testing.T, r *remote, k int) (*harness, *network, []string) {
	t.Helper()
	r.noAck.Store(true)
	n := newNetwork(t, r)
	h := newHarness(t, n, nil)
	h.run()
	h.waitEvent("connected", kind(EventConnected))
	sent := targets("u", k)
	for _, tg := range sent {
		h.send(tg)
	}
	testutil.Eventually(t, "the deliveries", patience, func() bool { return len(r.delivered(batch.LaneUser)) == k })
	return h, n, sent
}

// TestReconnectResendsUnacknowledged: a lost connection is dialed again
// after the policy's first delay, not before, and what the peer had not
// acknowledged is sent again and delivered once.
func TestReconnectResendsUnacknowledged(t *testing.T) {
	r := newRemote("b", 1)
	h, n, want := deliveredUnacknowledged(t, r, 10)
	if s := userStats(h); s.Acked != 0 || s.Queued != 10 {
		t.Fatalf("unacknowledged envelopes left the queue: %+v", s)
	}

	r.noAck.Store(false)
	n.breakAll(errLost)
	ev := h.waitEvent("reconnecting", kind(EventReconnecting))
	if ev.Attempt != 1 || ev.Delay != backoff(1) {
		t.Fatalf("reconnecting: attempt %d after %v, want 1 after %v", ev.Attempt, ev.Delay, backoff(1))
	}
	if got := n.dials.Load(); got != 2 {
		t.Fatalf("%d connections dialed before the delay passed, want 2 (one per lane)", got)
	}
	h.advanceWhenWaiting(backoff(1))
	h.waitEvent("reconnected", kind(EventReconnected))
	testutil.Eventually(t, "the resent envelopes acknowledged", patience, func() bool {
		s := userStats(h)
		return s.Acked == 10 && s.Queued == 0
	})
	s := h.ep.Stats()
	if s.Reconnects != 1 || s.Lanes[batch.LaneUser].Resent != 10 || s.Lanes[batch.LaneUser].Sent != 10 {
		t.Errorf("reconnects %d, sent %d, resent %d; want 1, 10, 10", s.Reconnects, s.Lanes[batch.LaneUser].Sent, s.Lanes[batch.LaneUser].Resent)
	}
	if got := r.delivered(batch.LaneUser); !slices.Equal(got, want) {
		t.Errorf("delivered %v, want %v once each", got, want)
	}
	if s.State != StateConnected || !balanced(s.Lanes[batch.LaneUser]) {
		t.Errorf("state %v, user lane %+v", s.State, s.Lanes[batch.LaneUser])
	}
}

// TestRefusedForGood: a refusal other than "unavailable" ends the endpoint
// at once, with the reason that fits it; what was queued is dead-lettered
// with it, nothing is dialed again, and the node is told to settle.
func TestRefusedForGood(t *testing.T) {
	cases := []struct {
		name   string
		reason courierv1.RefuseReason
		err    error
		want   Reason
	}{
		{"blocked", courierv1.RefuseReason_REFUSE_REASON_BLOCKED, wire.ErrBlocked, ReasonBlocked},
		{"quarantined", courierv1.RefuseReason_REFUSE_REASON_QUARANTINED, reader.ErrQuarantined, ReasonQuarantined},
		{"version", courierv1.RefuseReason_REFUSE_REASON_VERSION, wire.ErrVersion, ReasonEndpointTerminated},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := newRemote("b", 1)
			r.refuse = func(*courierv1.Hello) error { return wire.Refuse(c.reason, "refused by the test") }
			n := newNetwork(t, r)
			h := newHarness(t, n, nil)
			h.send("u0") // before Run: queued whatever the handshake says
			h.run()
			h.ended()
			if ev := h.waitEvent("refused", kind(EventPeerRefused)); !errors.Is(ev.Err, c.err) {
				t.Errorf("refusal's error %v, want %v", ev.Err, c.err)
			}
			ev := h.waitEvent("terminated", kind(EventTerminated))
			if ev.Reason != c.want || !errors.Is(ev.Err, c.err) {
				t.Errorf("terminated with %v (%v), want %v (%v)", ev.Reason, ev.Err, c.want, c.err)
			}
			if got := h.deadLettered(c.want); !slices.Equal(got, []string{"u0"}) {
				t.Errorf("dead-lettered with %v: %v, want [u0]", c.want, got)
			}
			if got := n.streams.Load(); got != 1 {
				t.Errorf("%d streams opened, want 1: the refusal is final", got)
			}
			if got := h.count(EventReconnecting); got != 0 {
				t.Errorf("%d reconnecting events after a final refusal", got)
			}
			if calls := h.settledCalls(); len(calls) != 1 || calls[0].old != nil {
				t.Errorf("settled %+v, want once, with no peer reached", calls)
			}
			if err := h.ep.Send(context.Background(), &batch.Envelope{Target: "u1"}); !errors.Is(err, ErrEndpointTerminated) {
				t.Errorf("Send after the end: %v, want ErrEndpointTerminated", err)
			}
		})
	}
}

// TestRefusedUnavailableRetries: "unavailable" is the refusal worth trying
// again, by the policy.
func TestRefusedUnavailableRetries(t *testing.T) {
	r := newRemote("b", 1)
	var refusals atomic.Int32
	r.refuse = func(*courierv1.Hello) error {
		if refusals.Add(1) == 1 {
			return wire.Refuse(courierv1.RefuseReason_REFUSE_REASON_UNAVAILABLE, "at a limit")
		}
		return nil
	}
	n := newNetwork(t, r)
	h := newHarness(t, n, nil)
	h.run()
	if ev := h.waitEvent("refused", kind(EventPeerRefused)); !errors.Is(ev.Err, wire.ErrUnavailable) {
		t.Fatalf("refusal's error %v", ev.Err)
	}
	ev := h.waitEvent("reconnecting", kind(EventReconnecting))
	if ev.Attempt != 1 || !errors.Is(ev.Err, wire.ErrUnavailable) {
		t.Fatalf("reconnecting: attempt %d, %v", ev.Attempt, ev.Err)
	}
	h.advanceWhenWaiting(backoff(1))
	h.waitEvent("reconnected", kind(EventReconnected))
	h.send("u0")
	testutil.Eventually(t, "u0 delivered", patience, func() bool { return slices.Equal(r.delivered(batch.LaneUser), []string{"u0"}) })
	if got := h.count(EventTerminated); got != 0 {
		t.Fatalf("%d terminated events", got)
	}
}

// TestNewIncarnationSettles: reaching a restarted peer settles with the old
// incarnation first: what it did not acknowledge is dead-lettered with
// ReasonPeerRestarted and never handed to the new one, which gets what is
// sent from then on.
func TestNewIncarnationSettles(t *testing.T) {
	h, n, owed := deliveredUnacknowledged(t, newRemote("b", 1), 5)

	restarted := newRemote("b", 2)
	n.use(restarted)
	n.breakAll(errLost)
	h.waitEvent("reconnecting", kind(EventReconnecting))
	h.advanceWhenWaiting(backoff(1))
	ev := h.waitEvent("peer restarted", kind(EventPeerRestarted))
	if ev.Count != 5 || ev.Reason != ReasonPeerRestarted || ev.Peer.Incarnation != 2 {
		t.Errorf("peer restarted: %d dead-lettered with %v, peer %+v; want 5, peer restarted, incarnation 2", ev.Count, ev.Reason, ev.Peer)
	}
	if got := h.deadLettered(ReasonPeerRestarted); !slices.Equal(got, owed) {
		t.Errorf("dead-lettered %v, want %v", got, owed)
	}
	if calls := h.settledCalls(); len(calls) != 1 || calls[0].old == nil || calls[0].old.Incarnation != 1 || calls[0].blocked {
		t.Errorf("settled %+v, want once, with incarnation 1, not blocked", calls)
	}
	h.waitEvent("reconnected", kind(EventReconnected))
	h.send("u5")
	testutil.Eventually(t, "u5 acknowledged", patience, func() bool { return userStats(h).Acked == 1 })
	if got := restarted.delivered(batch.LaneUser); !slices.Equal(got, []string{"u5"}) {
		t.Errorf("the new incarnation got %v, want [u5]", got)
	}
	if s := userStats(h); !balanced(s) || s.Queued != 0 {
		t.Errorf("user lane %+v", s)
	}
}

// TestGivesUpAfterMaxAttempts: an unreachable peer is dialed after each of
// the policy's delays, and given up after MaxAttempts failed attempts in a
// row, dead-lettering what was queued.
func TestGivesUpAfterMaxAttempts(t *testing.T) {
	n := newNetwork(t, newRemote("b", 1))
	n.failDials(status.Error(codes.Unavailable, "connection refused"))
	h := newHarness(t, n, func(c *Config) { c.Reconnect.MaxAttempts = 2 })
	h.send("u0")
	h.run()
	for attempt := 1; attempt <= 2; attempt++ {
		ev := h.waitEvent("reconnecting", func(ev Event) bool { return ev.Kind == EventReconnecting && ev.Attempt == attempt })
		if ev.Delay != backoff(attempt) {
			t.Fatalf("attempt %d after %v, want %v", attempt, ev.Delay, backoff(attempt))
		}
		if got := h.ep.State(); got != StateReconnecting {
			t.Fatalf("state %v while waiting to reconnect", got)
		}
		h.advanceWhenWaiting(backoff(attempt))
	}
	h.ended()
	ev := h.waitEvent("terminated", kind(EventTerminated))
	if ev.Reason != ReasonEndpointTerminated {
		t.Errorf("terminated with %v", ev.Reason)
	}
	if got := h.deadLettered(ReasonEndpointTerminated); !slices.Equal(got, []string{"u0"}) {
		t.Errorf("dead-lettered %v, want [u0]", got)
	}
	if got := h.count(EventReconnecting); got != 2 {
		t.Errorf("%d reconnecting events, want 2", got)
	}
	if !h.ep.Replaceable(0) || h.ep.Replaceable(time.Second) {
		t.Error("a terminated endpoint is replaceable after the given time only")
	}
}

// TestSilentPeerIsDropped: a peer from which nothing comes back on the
// control stream for the heartbeat timeout is taken for gone, and dialed
// again.
func TestSilentPeerIsDropped(t *testing.T) {
	r := newRemote("b", 1)
	r.silent.Store(true)
	n := newNetwork(t, r)
	h := newHarness(t, n, func(c *Config) { c.Heartbeat, c.HeartbeatTimeout = time.Second, 3*time.Second })
	h.run()
	h.waitEvent("connected", kind(EventConnected))
	for range 2 {
		h.advanceWhenWaiting(time.Second)
	}
	if got := h.count(EventReconnecting); got != 0 {
		t.Fatalf("dropped after 2s of silence, the timeout is 3s")
	}
	h.advanceWhenWaiting(time.Second)
	ev := h.waitEvent("reconnecting", kind(EventReconnecting))
	if !errors.Is(ev.Err, ErrPeerSilent) {
		t.Fatalf("reconnecting because of %v, want ErrPeerSilent", ev.Err)
	}
}

// TestClientOnlyAttachAndIdle: a client-only peer's endpoint sends over
// the streams the peer opened, and ends once the peer has had none for the
// idle timeout, asking the node to forget it.
func TestClientOnlyAttachAndIdle(t *testing.T) {
	h := newHarness(t, nil, nil)
	h.run()
	if got := h.ep.State(); got != StateWaiting {
		t.Fatalf("state %v before any stream", got)
	}
	client := reader.Peer{SystemID: "c", Address: "client:c:3", Incarnation: 3}
	var got atomic.Int32
	var pipes [2]*pipe
	var loops [2]chan error
	var detach [2]func()
	for lane := range 2 {
		p := newPipe()
		pipes[lane] = p
		// This node's side: the endpoint's writer sends, a receive loop
		// takes the client's acks.
		own := &reader.Receive{Stream: listenerEnd{p}, Peer: client, Lane: batch.Lane(lane), Limits: batch.DefaultLimits(),
			State: new(reader.LaneState), Deliver: func(*reader.Peer, *batch.Envelope) {}, Counters: new(reader.Counters)}
		own.Generation = own.State.Claim()
		d, err := h.ep.Attach(own, listenerEnd{p}, batch.DefaultLimits())
		if err != nil {
			t.Fatal(err)
		}
		detach[lane] = d
		loops[lane] = make(chan error, 1)
		go func() { loops[lane] <- own.Run() }()
		// The client's side: it delivers and acknowledges.
		theirs := &reader.Receive{Stream: dialerEnd{p}, Lane: batch.Lane(lane), Limits: batch.DefaultLimits(),
			State: new(reader.LaneState), Deliver: func(*reader.Peer, *batch.Envelope) { got.Add(1) },
			Ack: reader.AckInline(dialerEnd{p}), Counters: new(reader.Counters)}
		theirs.Generation = theirs.State.Claim()
		go func() { _ = theirs.Run() }()
	}
	testutil.Eventually(t, "connected", patience, func() bool { return h.ep.State() == StateConnected })
	for _, tg := range targets("c", 3) {
		h.send(tg)
	}
	testutil.Eventually(t, "3 envelopes acknowledged by the client", patience, func() bool { return userStats(h).Acked == 3 })
	if got.Load() != 3 {
		t.Fatalf("the client got %d envelopes, want 3", got.Load())
	}

	for lane := range 2 { // the client goes away
		pipes[lane].fail(errLost)
		<-loops[lane]
		detach[lane]()
	}
	h.advanceWhenWaiting(time.Minute)
	h.ended()
	if ev := h.waitEvent("terminated", kind(EventTerminated)); !errors.Is(ev.Err, ErrIdle) || ev.Reason != ReasonEndpointTerminated {
		t.Errorf("terminated with %v (%v), want endpoint terminated (ErrIdle)", ev.Reason, ev.Err)
	}
	if !h.forgot.Load() {
		t.Error("the node was not asked to forget the endpoint")
	}
	if calls := h.settledCalls(); len(calls) != 1 || calls[0].old == nil || calls[0].old.SystemID != "c" {
		t.Errorf("settled %+v, want once, with the client", calls)
	}
	if _, err := h.ep.Attach(&reader.Receive{Peer: client}, listenerEnd{newPipe()}, batch.DefaultLimits()); !errors.Is(err, ErrEndpointTerminated) {
		t.Errorf("Attach after the end: %v", err)
	}
}
