package manager

import (
	"context"
	"errors"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/courier-go/courier/batch"
	"github.com/courier-go/courier/internal/testutil"
	courierv1 "github.com/courier-go/courier/proto/courier/v1"
	"google.golang.org/grpc/codes"
)

// closedAddr returns a loopback address nothing listens on: a listener's,
// closed.
func closedAddr(t *testing.T) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	lis.Close()
	return addr
}

// deadLetters counts user-lane dead letters by reason name.
type deadLetters struct {
	mu sync.Mutex
	by map[string]int
}

func (d *deadLetters) add(l DeadLetter) {
	if l.Envelope.Lane != batch.LaneUser {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.by == nil {
		d.by = map[string]int{}
	}
	d.by[l.Reason.String()]++
}

func (d *deadLetters) snapshot() map[string]int {
	d.mu.Lock()
	defer d.mu.Unlock()
	m := make(map[string]int, len(d.by))
	for k, v := range d.by {
		m[k] = v
	}
	return m
}

// terminatedWatch reports whether c got the node's own Terminated for the
// watch of target by watcher.
func terminatedWatch(c *collector, watcher, target string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, e := range c.envs {
		if e.Kind == batch.KindTerminated && e.Target == watcher && e.SenderID == target {
			for _, h := range e.Header {
				if h.Key == ReasonHeader && h.Value == AddressTerminated {
					return true
				}
			}
		}
	}
	return false
}

// TestPeerShutdownEndsEndpoint: a peer that closes says goodbye; its
// endpoint ends within the shutdown grace instead of reconnecting with the
// full backoff. The watchers of its processes hear Terminated, what was
// queued for it is dead-lettered with reason "peer shut down", and the
// counters balance.
func TestPeerShutdownEndsEndpoint(t *testing.T) {
	t.Parallel()
	delivered := newCollector()
	b := newNode(t, delivered)
	var dead deadLetters
	watcher := newCollector()
	a := newNode(t, watcher, WithDeadLetterHandler(dead.add))
	log := watch(a)
	if err := a.Watch(context.Background(), b.Addr(), "w", "p"); err != nil {
		t.Fatal(err)
	}
	const n = 50
	for range n {
		if err := a.Send(context.Background(), b.Addr(), &Envelope{Target: "t"}); err != nil {
			t.Fatal(err)
		}
	}
	delivered.wait(t, n+1, 20*time.Second) // and the watch
	start := time.Now()
	closed := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		closed <- b.Close(ctx)
	}()
	// Once a has heard the goodbye, what it queues waits for the grace:
	// a node restarting on the address would get it.
	log.waitFor(t, "reconnecting", 3*time.Second, func(e Event) bool {
		return e.Type == EventReconnecting && e.Address == b.Addr()
	})
	queued := 0
	for range 10 {
		if a.Send(context.Background(), b.Addr(), &Envelope{Target: "t"}) == nil {
			queued++
		}
	}
	ev := log.waitFor(t, "terminated", 3*time.Second, func(e Event) bool {
		return e.Type == EventTerminated && e.Address == b.Addr()
	})
	if took := ev.Time.Sub(start); took > 3*time.Second {
		t.Fatalf("the endpoint of a peer that shut down terminated after %v", took)
	}
	if ev.Reason != "peer shut down" {
		t.Errorf("terminated with reason %q (%v), want \"peer shut down\"", ev.Reason, ev.Err)
	}
	testutil.Eventually(t, "the watcher to hear Terminated", patience, func() bool { return terminatedWatch(watcher, "w", "p") })
	if err := <-closed; err != nil {
		t.Fatal(err)
	}
	s := quiet(t, a, b.Addr())
	checkBalanced(t, s)
	if got := dead.snapshot(); got["peer shut down"] != queued || len(got) > 1 || queued == 0 {
		t.Errorf("dead letters by reason %v, want %d \"peer shut down\"", got, queued)
	}
	if s.User.Acked != n {
		t.Errorf("acked %d, want %d", s.User.Acked, n)
	}
}

// TestQuarantinedDialerGivesUp: after Block and Unblock the old incarnation
// of the blocked node is quarantined. Its next endpoint is refused for that,
// and gives up at once: one refusal, Terminated with ErrQuarantined, the
// envelope dead-lettered, no reconnect.
func TestQuarantinedDialerGivesUp(t *testing.T) {
	t.Parallel()
	a := newNode(t, newCollector(), WithSystemID("alpha"))
	var dead deadLetters
	b := newNode(t, newCollector(), WithSystemID("beta"), WithDeadLetterHandler(dead.add),
		WithReconnect(Backoff{Initial: 10 * time.Millisecond, Max: 20 * time.Millisecond, Multiplier: 2, MaxAttempts: 1000}))
	recv := watch(b)
	if err := b.Send(context.Background(), a.Addr(), &Envelope{Target: "x"}); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, "b to connect", patience, func() bool {
		s, _ := b.Stats(a.Addr())
		return s.User.Acked == 1
	})
	a.Block("beta")
	testutil.Eventually(t, "b's endpoint to end", patience, func() bool {
		s, _ := b.Stats(a.Addr())
		return s.State == StateTerminated
	})
	a.Unblock("beta")
	// Once the terminated endpoint may be replaced, a Send dials anew.
	var sentAt time.Time
	testutil.Eventually(t, "a new endpoint", patience, func() bool {
		sentAt = time.Now()
		return b.Send(context.Background(), a.Addr(), &Envelope{Target: "x"}) == nil
	})
	recv.mu.Lock()
	seen := len(recv.evs)
	recv.mu.Unlock()
	ev := recv.waitFor(t, "terminated", 3*time.Second, func(e Event) bool {
		return e.Type == EventTerminated && e.Time.After(sentAt)
	})
	if took := ev.Time.Sub(sentAt); took > 3*time.Second {
		t.Fatalf("the quarantined dialer gave up after %v", took)
	}
	if !errors.Is(ev.Err, ErrQuarantined) {
		t.Errorf("terminated with %v, want ErrQuarantined", ev.Err)
	}
	recv.mu.Lock()
	refusals, retries := 0, 0
	for _, e := range recv.evs[seen:] {
		switch {
		case e.Time.After(ev.Time):
		case e.Type == EventPeerRefused && errors.Is(e.Err, ErrQuarantined):
			refusals++
		case e.Type == EventReconnecting:
			retries++
		}
	}
	recv.mu.Unlock()
	if refusals != 1 || retries != 0 {
		t.Errorf("%d quarantine refusals and %d reconnects before giving up, want 1 and 0", refusals, retries)
	}
	testutil.Eventually(t, "the envelope to be dead-lettered", patience, func() bool { return dead.snapshot()["quarantined"] == 1 })
}

// TestRefusalsFinalOrRetried: every refusal reason but "unavailable" ends
// the dialer's endpoint at once with the reason's error; "unavailable" is
// tried again.
func TestRefusalsFinalOrRetried(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name   string
		reason courierv1.RefuseReason
		err    error
		dead   string // "" for a refusal that is retried
	}{
		{"version", courierv1.RefuseReason_REFUSE_REASON_VERSION, ErrVersion, "endpoint terminated"},
		{"blocked", courierv1.RefuseReason_REFUSE_REASON_BLOCKED, ErrBlocked, "blocked"},
		{"invalid", courierv1.RefuseReason_REFUSE_REASON_INVALID, ErrRefused, "endpoint terminated"},
		{"unauthorized", courierv1.RefuseReason_REFUSE_REASON_UNAUTHORIZED, ErrUnauthorized, "endpoint terminated"},
		{"quarantined", courierv1.RefuseReason(6), ErrQuarantined, "quarantined"},
		{"unavailable", courierv1.RefuseReason_REFUSE_REASON_UNAVAILABLE, ErrRefused, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			srv := &refusingServer{reason: c.reason}
			addr := serveFake(t, srv)
			var dead deadLetters
			a := newNode(t, newCollector(), WithDeadLetterHandler(dead.add),
				WithReconnect(Backoff{Initial: 10 * time.Millisecond, Max: 20 * time.Millisecond, Multiplier: 2, MaxAttempts: 1000}))
			log := watch(a)
			// A refusal can be that quick: the endpoint may end before the
			// first envelope is in its queue, and Send then refuses it
			// instead (one of the three ends of an envelope).
			queued := true
			if err := a.Send(context.Background(), addr, &Envelope{Target: "t"}); err != nil {
				if c.dead == "" || !errors.Is(err, ErrEndpointTerminated) {
					t.Fatal(err)
				}
				queued = false
			}
			if c.dead == "" {
				testutil.Eventually(t, "attempts again", patience, func() bool { return srv.attempts.Load() >= 3 })
				if s, _ := a.Stats(addr); s.State == StateTerminated {
					t.Fatalf("endpoint terminated on an %s refusal", c.name)
				}
				return
			}
			ev := log.waitFor(t, "terminated", 3*time.Second, func(e Event) bool { return e.Type == EventTerminated })
			if !errors.Is(ev.Err, c.err) || !errors.Is(ev.Err, ErrRefused) {
				t.Errorf("terminated with %v, want %v", ev.Err, c.err)
			}
			if ev.Reason != c.dead {
				t.Errorf("terminated with reason %q, want %q", ev.Reason, c.dead)
			}
			if queued {
				testutil.Eventually(t, "the envelope to be dead-lettered", patience, func() bool { return dead.snapshot()[c.dead] == 1 })
			}
			if n := log.count(func(e Event) bool { return e.Type == EventReconnecting }); n != 0 {
				t.Errorf("%d reconnects before giving up", n)
			}
		})
	}
}

// TestHandshakeStatusCodes: each way a handshake fails ends the stream with
// a gRPC status of its own.
func TestHandshakeStatusCodes(t *testing.T) {
	t.Parallel()
	node := newNode(t, newCollector(), WithBlockList("blocked"), WithMaxStreamsPerPeer(2),
		WithAuthorizer(func(_ context.Context, c PeerCredentials) error {
			if c.Peer.SystemID == "stranger" {
				return errors.New("not you")
			}
			return nil
		}))
	// "limited" holds its two streams; "old" is connected, then blocked and
	// unblocked: its incarnation is quarantined.
	for range 2 {
		if _, err := tryRaw(t, node.Addr(), helloFrom("limited", 5)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := tryRaw(t, node.Addr(), helloFrom("old", 7)); err != nil {
		t.Fatal(err)
	}
	node.Block("old")
	node.Unblock("old")

	for _, c := range []struct {
		name  string
		hello *courierv1.Hello
		code  codes.Code
	}{
		{"version", func() *courierv1.Hello { h := goodHello(); h.ProtocolVersion = 2; return h }(), codes.FailedPrecondition},
		{"invalid", func() *courierv1.Hello { h := goodHello(); h.SystemId = ""; return h }(), codes.InvalidArgument},
		{"blocked", helloFrom("blocked", 1), codes.PermissionDenied},
		{"unauthorized", helloFrom("stranger", 1), codes.PermissionDenied},
		{"unavailable", helloFrom("limited", 5), codes.Unavailable},
		{"quarantined", helloFrom("old", 7), codes.Aborted},
	} {
		t.Run(c.name, func(t *testing.T) {
			p := dialRaw(t, node.Addr())
			if _, err := p.handshake(c.hello); !errors.Is(err, ErrRefused) {
				t.Fatalf("handshake = %v, want a refusal", err)
			}
			if code := p.end(t); code != c.code {
				t.Fatalf("stream ended with %v, want %v", code, c.code)
			}
		})
	}
	t.Run("not a hello", func(t *testing.T) {
		p := dialRaw(t, node.Addr())
		p.sendRaw(t, append([]byte{0}, mustMarshal(t, &courierv1.Frame{Kind: &courierv1.Frame_Ack{Ack: &courierv1.Ack{Position: 1}}})...))
		if code := p.end(t); code != codes.InvalidArgument {
			t.Fatalf("stream ended with %v, want InvalidArgument", code)
		}
	})
}

// TestUnresolvableHost: a host the resolver says does not exist is final:
// the endpoint terminates at once, its event's error wraps the resolver's,
// and the queued envelope is dead-lettered for it.
func TestUnresolvableHost(t *testing.T) {
	t.Parallel()
	const host = "no-such-host.invalid"
	var dnsErr *net.DNSError
	if _, err := net.DefaultResolver.LookupHost(context.Background(), host); !errors.As(err, &dnsErr) || !dnsErr.IsNotFound {
		t.Skipf("this machine's resolver does not say %s does not exist: %v", host, err)
	}
	var dead deadLetters
	a := newNode(t, newCollector(), WithDeadLetterHandler(dead.add))
	log := watch(a)
	start := time.Now()
	addr := host + ":4000"
	// The endpoint may give up before the envelope is in its queue; Send
	// then refuses it instead.
	queued := true
	if err := a.Send(context.Background(), addr, &Envelope{Target: "t"}); err != nil {
		if !errors.Is(err, ErrEndpointTerminated) {
			t.Fatal(err)
		}
		queued = false
	}
	ev := log.waitFor(t, "terminated", 3*time.Second, func(e Event) bool { return e.Type == EventTerminated })
	if took := ev.Time.Sub(start); took > 3*time.Second {
		t.Fatalf("gave up after %v", took)
	}
	var got *net.DNSError
	if !errors.As(ev.Err, &got) || !got.IsNotFound {
		t.Errorf("terminated with %v, want a not-found *net.DNSError", ev.Err)
	}
	if ev.Reason != "unresolvable host" {
		t.Errorf("terminated with reason %q", ev.Reason)
	}
	if n := log.count(func(e Event) bool { return e.Type == EventReconnecting }); n != 0 {
		t.Errorf("%d reconnects to an unresolvable host", n)
	}
	if queued {
		testutil.Eventually(t, "the envelope to be dead-lettered", patience, func() bool { return dead.snapshot()["unresolvable host"] == 1 })
	}
}

// TestCloseEndsUnreachableEndpoints: Close with no deadline returns once
// the reachable peer has acknowledged; an endpoint that cannot connect has
// nothing to flush and ends at once, dead-lettering with reason shutdown.
func TestCloseEndsUnreachableEndpoints(t *testing.T) {
	t.Parallel()
	recv := newCollector()
	b := newNode(t, recv)
	var dead deadLetters
	a, err := New(WithHandler(newCollector()), WithDeadLetterHandler(dead.add))
	if err != nil {
		t.Fatal(err)
	}
	gone := closedAddr(t)
	log := watch(a)
	for _, addr := range []string{b.Addr(), gone} {
		if err := a.Send(context.Background(), addr, &Envelope{Target: "t"}); err != nil {
			t.Fatal(err)
		}
	}
	log.waitFor(t, "reconnecting", 20*time.Second, func(e Event) bool { return e.Type == EventReconnecting && e.Address == gone })
	closed := make(chan error, 1)
	start := time.Now()
	go func() { closed <- a.Close(context.Background()) }()
	select {
	case err := <-closed:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("Close(context.Background()) still waiting after 3s")
	}
	t.Logf("Close took %v", time.Since(start))
	recv.wait(t, 1, time.Second)
	if got := dead.snapshot(); got["shutdown"] != 1 || len(got) != 1 {
		t.Errorf("dead letters by reason %v, want one \"shutdown\"", got)
	}
	for _, addr := range []string{b.Addr(), gone} {
		s, _ := a.Stats(addr)
		checkBalanced(t, s)
	}
}
