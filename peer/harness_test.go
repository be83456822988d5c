package peer

import (
	"context"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/courier-go/courier/batch"
	"github.com/courier-go/courier/internal/testutil"
	"github.com/courier-go/courier/internal/wire"
	"github.com/courier-go/courier/reader"
)

// patience bounds every wait on the endpoint's goroutines; the test clock
// decides everything timed.
const patience = 10 * time.Second

// handshakeTimeout is the fake remote's and the endpoint's: on the test
// clock it never passes unless a test advances it.
const handshakeTimeout = time.Minute

// harness runs one endpoint on a test clock and records what it tells its
// node.
type harness struct {
	t   *testing.T
	clk *testClock
	ep  *Endpoint

	mu      sync.Mutex
	events  []Event
	dead    map[Reason][]string // targets dead-lettered, by reason
	settled []settledCall
	forgot  atomic.Bool
}

type settledCall struct {
	old     *reader.Peer
	blocked bool
}

// backoff is the test's reconnect delay: n × 100ms, no jitter.
func backoff(n int) time.Duration { return time.Duration(n) * 100 * time.Millisecond }

// newHarness makes an endpoint dialing through d (nil for a client-only
// one), its Config changed by mod. The test starts it with run.
func newHarness(t *testing.T, d Dialer, mod func(*Config)) *harness {
	t.Helper()
	h := &harness{t: t, clk: newTestClock(), dead: map[Reason][]string{}}
	cfg := Config{
		Address:          "remote:1",
		Self:             wire.Node{SystemID: "self", Incarnation: 7, Limits: batch.DefaultLimits()},
		UserQueue:        64,
		SystemQueue:      16,
		HighWater:        64,
		Heartbeat:        time.Hour,
		HeartbeatTimeout: time.Hour,
		HandshakeTimeout: handshakeTimeout,
		SystemTimeout:    time.Minute,
		IdleTimeout:      time.Minute,
		Reconnect:        Reconnect{Delay: backoff, ShutdownGrace: time.Second},
		Dialer:           d,
		Clock:            h.clk,
		Node: Node{
			DeadLetter: func(env *batch.Envelope, reason Reason) {
				h.mu.Lock()
				defer h.mu.Unlock()
				h.dead[reason] = append(h.dead[reason], env.Target)
			},
			Emit: func(ev Event) {
				h.mu.Lock()
				defer h.mu.Unlock()
				h.events = append(h.events, ev)
			},
			Closing:     func() bool { return false },
			Blocked:     func(string) bool { return false },
			Quarantined: func(reader.Peer) bool { return false },
			Bind: func(rcv *reader.Receive) { // a listening node: acks come back here
				rcv.State = new(reader.LaneState)
				rcv.Generation = rcv.State.Claim()
				rcv.Deliver = func(*reader.Peer, *batch.Envelope) {}
			},
			Settled: func(old *reader.Peer, blocked bool) {
				h.mu.Lock()
				defer h.mu.Unlock()
				h.settled = append(h.settled, settledCall{old, blocked})
			},
			Forget: func() { h.forgot.Store(true) },
		},
	}
	if d == nil {
		cfg.ClientOnly, cfg.Dialer = true, nil
	}
	if mod != nil {
		mod(&cfg)
	}
	ep, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	h.ep = ep
	return h
}

// run starts the endpoint's goroutine; the test's end closes it.
func (h *harness) run() {
	go h.ep.Run()
	h.t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), patience)
		defer cancel()
		h.ep.Close(ctx)
	})
}

// send queues a user envelope for target.
func (h *harness) send(target string) {
	h.t.Helper()
	if err := h.ep.Send(context.Background(), &batch.Envelope{Target: target, Payload: []byte(target)}); err != nil {
		h.t.Fatalf("Send(%s): %v", target, err)
	}
}

// waitEvent waits for the first event that match accepts, and returns it.
func (h *harness) waitEvent(what string, match func(Event) bool) Event {
	h.t.Helper()
	var found Event
	testutil.Eventually(h.t, what, patience, func() bool {
		h.mu.Lock()
		defer h.mu.Unlock()
		for _, ev := range h.events {
			if match(ev) {
				found = ev
				return true
			}
		}
		return false
	})
	return found
}

func kind(k EventKind) func(Event) bool { return func(ev Event) bool { return ev.Kind == k } }

func (h *harness) count(k EventKind) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for _, ev := range h.events {
		if ev.Kind == k {
			n++
		}
	}
	return n
}

func (h *harness) deadLettered(r Reason) []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.dead[r])
}

func (h *harness) settledCalls() []settledCall {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.settled)
}

// advanceWhenWaiting waits until one of the endpoint's goroutines waits on
// a timer d from now, then moves the clock by d.
func (h *harness) advanceWhenWaiting(d time.Duration) {
	h.t.Helper()
	testutil.Eventually(h.t, "a timer of "+d.String(), patience, func() bool {
		return slices.Contains(h.clk.waiting(), d)
	})
	h.clk.Advance(d)
}

// ended waits for the endpoint's goroutine to return.
func (h *harness) ended() {
	h.t.Helper()
	testutil.Eventually(h.t, "the endpoint to end", patience, func() bool {
		select {
		case <-h.ep.Done():
			return true
		default:
			return false
		}
	})
}

// targets returns "prefix0" … "prefix(n-1)".
func targets(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = prefix + strconv.Itoa(i)
	}
	return out
}
