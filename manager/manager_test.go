package manager

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/courier-go/courier/batch"
	"github.com/courier-go/courier/internal/testutil"
	"github.com/courier-go/courier/peer"
)

// patience bounds the waits of the manager's tests: far longer than any of
// them takes on a loaded machine, so that a timeout is a bug.
const patience = 20 * time.Second

// collector is a Handler that records what it is given.
type collector struct {
	mu   sync.Mutex
	envs []Envelope
	from []Peer
	cond *sync.Cond
}

func newCollector() *collector {
	c := &collector{}
	c.cond = sync.NewCond(&c.mu)
	return c
}

func (c *collector) Deliver(p Peer, env *Envelope) {
	c.mu.Lock()
	c.envs = append(c.envs, env.Clone())
	c.from = append(c.from, p)
	c.cond.Broadcast()
	c.mu.Unlock()
}

// wait waits until n envelopes have arrived or the deadline passes.
func (c *collector) wait(t *testing.T, n int, d time.Duration) []Envelope {
	t.Helper()
	deadline := time.Now().Add(d)
	timer := time.AfterFunc(d, func() { c.mu.Lock(); c.cond.Broadcast(); c.mu.Unlock() })
	defer timer.Stop()
	c.mu.Lock()
	defer c.mu.Unlock()
	for len(c.envs) < n && time.Now().Before(deadline) {
		c.cond.Wait()
	}
	if len(c.envs) < n {
		t.Fatalf("got %d envelopes within %v, want %d", len(c.envs), d, n)
	}
	return append([]Envelope(nil), c.envs...)
}

func newNode(t *testing.T, h Handler, opts ...Option) *Manager {
	t.Helper()
	m, err := New(append([]Option{WithListenAddress("127.0.0.1:0"), WithHandler(h)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = m.Close(ctx)
	})
	return m
}

func TestTwoNodesInOrder(t *testing.T) {
	t.Parallel()
	recv := newCollector()
	a := newNode(t, newCollector(), WithSystemID("a"), WithOverflowPolicy(Block))
	b := newNode(t, recv, WithSystemID("b"))
	const n = 5000
	for i := range n {
		env := &Envelope{Target: "actor/" + strconv.Itoa(i%7), TypeName: "T", Payload: []byte(fmt.Sprint(i))}
		if err := a.Send(context.Background(), b.Addr(), env); err != nil {
			t.Fatal(err)
		}
	}
	got := recv.wait(t, n, 20*time.Second)
	for i, e := range got {
		if string(e.Payload) != fmt.Sprint(i) || e.Target != "actor/"+strconv.Itoa(i%7) || e.Lane != batch.LaneUser {
			t.Fatalf("envelope %d: %+v", i, e)
		}
	}
	if recv.from[0].SystemID != "a" || recv.from[0].Address != a.Addr() {
		t.Fatalf("peer %+v", recv.from[0])
	}
}

// events records a manager's events.
type eventLog struct {
	mu  sync.Mutex
	evs []Event
}

func watch(m *Manager) *eventLog {
	l := &eventLog{}
	m.Subscribe(func(e Event) {
		l.mu.Lock()
		l.evs = append(l.evs, e)
		l.mu.Unlock()
	})
	return l
}

// waitFor waits until an event matching f has been seen, and returns the
// first such event.
func (l *eventLog) waitFor(t *testing.T, what string, d time.Duration, f func(Event) bool) Event {
	t.Helper()
	var found Event
	seen := false
	defer func() {
		if !seen { // timed out
			t.Logf("events seen: %v", l.types())
		}
	}()
	testutil.Eventually(t, "a "+what+" event", d, func() bool {
		l.mu.Lock()
		defer l.mu.Unlock()
		for _, e := range l.evs {
			if f(e) {
				found, seen = e, true
				return true
			}
		}
		return false
	})
	return found
}

func (l *eventLog) types() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var s []string
	for _, e := range l.evs {
		s = append(s, e.Type.String())
	}
	return s
}

func (l *eventLog) count(f func(Event) bool) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, e := range l.evs {
		if f(e) {
			n++
		}
	}
	return n
}

// quiet waits until nothing is left in the endpoint's queues and every
// envelope they took is accounted for, on both lanes (LaneStats.Balanced),
// and returns the statistics. With no Send in flight that state is final:
// nothing is left to acknowledge or dead-letter. It fails the test if the
// lanes never get there.
func quiet(t *testing.T, m *Manager, address string) EndpointStats {
	t.Helper()
	var s EndpointStats
	settled := false
	defer func() {
		if !settled {
			t.Logf("last statistics: user %+v; system %+v", s.User, s.System)
		}
	}()
	testutil.Eventually(t, "the endpoint's queues to empty with every envelope accounted for", patience, func() bool {
		var ok bool
		if s, ok = m.Stats(address); !ok {
			t.Fatalf("no endpoint for %s", address)
		}
		return s.User.Queued == 0 && s.System.Queued == 0 && s.User.Balanced() && s.System.Balanced()
	})
	settled = true
	return s
}

// sendToRefuser sends an envelope to address, a peer that refuses m at the
// handshake, and reports whether it was queued. The Send makes the
// endpoint, which dials at once: a refusal quick enough to end it before
// the envelope is queued makes Send refuse the envelope instead
// (ErrEndpointTerminated), one of an envelope's ends, with no dead letter
// then.
func sendToRefuser(t *testing.T, m *Manager, address string) (queued bool) {
	t.Helper()
	err := m.Send(context.Background(), address, &Envelope{Target: "t"})
	if err != nil && !errors.Is(err, ErrEndpointTerminated) {
		t.Fatalf("Send to a refusing peer: %v", err)
	}
	return err == nil
}

// endpointOf returns m's endpoint for address.
func endpointOf(t *testing.T, m *Manager, address string) *peer.Endpoint {
	t.Helper()
	v, ok := m.endpoints.Load(address)
	if !ok {
		t.Fatalf("no endpoint for %s", address)
	}
	return v.(*peer.Endpoint)
}

// endpointEnded waits for ep's goroutine to return. A terminated endpoint
// has settled with its peer by then (dead letters, quarantine, watchers
// told Terminated), and dials no more.
func endpointEnded(t *testing.T, ep *peer.Endpoint) {
	t.Helper()
	select {
	case <-ep.Done():
	case <-time.After(patience):
		t.Fatalf("the endpoint for %s (%v) still runs after %v", ep.Address(), states[ep.State()], patience)
	}
}

func checkBalanced(t *testing.T, s EndpointStats) {
	t.Helper()
	for name, ls := range map[string]LaneStats{"user": s.User, "system": s.System} {
		if !ls.Balanced() {
			t.Errorf("%s lane counters unbalanced: enqueued %d != acked %d + dead-lettered %d + queued %d",
				name, ls.Enqueued, ls.Acked, ls.DeadLetteredAfterEnqueue(), ls.Queued)
		}
	}
}

func TestSystemLaneInOrder(t *testing.T) {
	t.Parallel()
	recv := newCollector()
	a := newNode(t, newCollector())
	b := newNode(t, recv)
	const n = 500
	for i := range n {
		env := &Envelope{Target: "sys", Lane: batch.LaneSystem, Kind: batch.KindStop, Payload: []byte(fmt.Sprint(i))}
		if err := a.Send(context.Background(), b.Addr(), env); err != nil {
			t.Fatal(err)
		}
	}
	for i, e := range recv.wait(t, n, 20*time.Second) {
		if string(e.Payload) != fmt.Sprint(i) || e.Lane != batch.LaneSystem || e.Kind != batch.KindStop {
			t.Fatalf("envelope %d: %+v", i, e)
		}
	}
	checkBalanced(t, quiet(t, a, b.Addr()))
}

func TestManyConcurrentSenders(t *testing.T) {
	t.Parallel()
	recv := newCollector()
	a := newNode(t, newCollector(), WithOverflowPolicy(Block))
	b := newNode(t, recv)
	const senders, each = 16, 500
	var wg sync.WaitGroup
	for s := range senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				env := &Envelope{Target: "t", SenderID: fmt.Sprint(s), Payload: []byte(fmt.Sprint(i))}
				if err := a.Send(context.Background(), b.Addr(), env); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	next := map[string]int{}
	for _, e := range recv.wait(t, senders*each, 30*time.Second) {
		if want := fmt.Sprint(next[e.SenderID]); string(e.Payload) != want {
			t.Fatalf("sender %s: got %s, want %s", e.SenderID, e.Payload, want)
		}
		next[e.SenderID]++
	}
	s := quiet(t, a, b.Addr())
	checkBalanced(t, s)
	if s.User.Acked != senders*each {
		t.Fatalf("acked %d, want %d", s.User.Acked, senders*each)
	}
}

func TestBothDirectionsAtOnce(t *testing.T) {
	t.Parallel()
	ra, rb := newCollector(), newCollector()
	a := newNode(t, ra, WithOverflowPolicy(Block))
	b := newNode(t, rb, WithOverflowPolicy(Block))
	const n = 2000
	var wg sync.WaitGroup
	for _, dir := range []struct {
		from *Manager
		to   string
	}{{a, b.Addr()}, {b, a.Addr()}} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range n {
				if err := dir.from.Send(context.Background(), dir.to, &Envelope{Target: "t", Payload: []byte(fmt.Sprint(i))}); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	for _, r := range []*collector{ra, rb} {
		for i, e := range r.wait(t, n, 30*time.Second) {
			if string(e.Payload) != fmt.Sprint(i) {
				t.Fatalf("envelope %d: %s", i, e.Payload)
			}
		}
	}
}

// TestClientOnlyNode: a node without a listener sends to a server, and the
// server answers over the streams the client opened.
func TestClientOnlyNode(t *testing.T) {
	t.Parallel()
	srvRecv := newCollector()
	var server *Manager
	server = newNode(t, HandlerFunc(func(p Peer, env *Envelope) {
		srvRecv.Deliver(p, env)
		reply := &Envelope{Target: "client-actor", Payload: append([]byte("re:"), env.Payload...), Lane: env.Lane}
		if err := server.Send(context.Background(), p.Address, reply); err != nil {
			t.Errorf("reply: %v", err)
		}
	}))
	cliRecv := newCollector()
	client, err := New(WithHandler(cliRecv), WithSystemID("cli"))
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close(context.Background())
	if client.Addr() != "" {
		t.Fatalf("client-only node has address %q", client.Addr())
	}
	const n = 100
	for i := range n {
		lane := batch.Lane(i % 2)
		if err := client.Send(context.Background(), server.Addr(), &Envelope{Target: "srv", Lane: lane, Payload: []byte(fmt.Sprint(i))}); err != nil {
			t.Fatal(err)
		}
	}
	got := srvRecv.wait(t, n, 20*time.Second)
	if p := srvRecv.from[0]; p.SystemID != "cli" || !strings.HasPrefix(p.Address, ClientAddressPrefix+"cli:") {
		t.Fatalf("server sees the client as %+v", p)
	}
	_ = got
	replies := cliRecv.wait(t, n, 20*time.Second)
	perLane := map[batch.Lane]int{}
	for _, e := range replies {
		want := fmt.Sprint(perLane[e.Lane]*2 + int(e.Lane))
		if string(e.Payload) != "re:"+want {
			t.Fatalf("lane %v reply %s, want re:%s", e.Lane, e.Payload, want)
		}
		perLane[e.Lane]++
	}
	if cliRecv.from[0].Address != server.Addr() {
		t.Fatalf("client sees the server as %+v", cliRecv.from[0])
	}
}

func TestAdvertisedAddress(t *testing.T) {
	plain, err := New(WithListenAddress("127.0.0.1:0"), WithHandler(HandlerFunc(func(Peer, *Envelope) {})))
	if err != nil {
		t.Fatal(err)
	}
	told, err := New(WithListenAddress("127.0.0.1:0"), WithAdvertiseAddress("node-7.example:4000"),
		WithHandler(HandlerFunc(func(Peer, *Envelope) {})))
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range []*Manager{plain, told} {
		if err := m.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
		defer m.Close(context.Background())
	}
	if got := plain.AdvertisedAddress(); got != plain.Addr() || got == "" {
		t.Fatalf("without WithAdvertiseAddress: %q, want Addr %q", got, plain.Addr())
	}
	if got := told.AdvertisedAddress(); got != "node-7.example:4000" {
		t.Fatalf("with WithAdvertiseAddress: %q", got)
	}
}
