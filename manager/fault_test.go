package manager

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/courier-go/courier/batch"
	"github.com/courier-go/courier/internal/testutil"
)

// The fault tests run two nodes, each behind a fault-injecting proxy that
// its peer dials, and send user and system envelopes both ways while a
// fault is injected and then cleared. Then they account for every envelope:
// delivered once, dead-lettered with a reason, or refused at Send. Run them
// with go test -race -count 20 -run Fault.

// faultOptions make failures show within seconds. Not less: on a shared
// virtual machine a 50ms timer can fire seconds late, and a shorter
// heartbeat timeout would take a live peer for a dead one. (That is
// harmless, only slow: the tests hold whatever reconnects happen.)
func faultOptions() []Option {
	return []Option{
		WithHeartbeatInterval(100 * time.Millisecond),
		WithHeartbeatTimeout(2 * time.Second),
		WithHandshakeTimeout(2 * time.Second),
		WithReconnect(Backoff{Initial: 10 * time.Millisecond, Max: 200 * time.Millisecond, Multiplier: 2, Jitter: 0.2}),
		WithUserQueue(1024),
		WithSystemQueue(1024),
	}
}

const nWatches = 4 // watchers w0..w3 on node a watch processes p0..p3 on node b

// sentinelBase is where the ids of sentinel envelopes start: far above any
// id a pump reaches.
const sentinelBase = 1 << 62

// faultNode is one node of a fault test, with everything it saw.
type faultNode struct {
	t     *testing.T
	m     *Manager
	proxy *faultProxy // in front of the node: its peer dials this

	mu sync.Mutex
	// What the handler got, by envelope id.
	user, sys map[uint64]int
	// Terminated envelopes by watch, with the reason header.
	terms       map[watchKey]int
	termReasons map[watchKey]string
	// Per sending process: whether its Terminated was delivered, and user
	// envelopes from it delivered after that (must stay 0).
	terminated    map[string]bool
	userAfterTerm int
	// Watches this node was asked to keep, as the watched node.
	watchedBy map[watchKey]Peer
	// Dead letters by lane and id, with their reasons.
	dead       [2]map[uint64]int
	deadReason [2]map[uint64]DeadLetterReason
	// Ids refused at Send.
	refused [2]map[uint64]bool
	// Sentinel envelopes delivered, by id (see sentinel).
	sentinels map[uint64]bool
	// gate, while set, holds user deliveries until it is closed, so that
	// the user lane lags the system lane.
	gate atomic.Pointer[chan struct{}]
}

func newFaultNode(t *testing.T, listen string, proxy *faultProxy, opts ...Option) *faultNode {
	t.Helper()
	if testing.Short() {
		t.Skip("fault tests take seconds each; they run without -short")
	}
	n := &faultNode{
		t: t, proxy: proxy,
		user: map[uint64]int{}, sys: map[uint64]int{},
		terms: map[watchKey]int{}, termReasons: map[watchKey]string{},
		terminated: map[string]bool{}, watchedBy: map[watchKey]Peer{},
		sentinels: map[uint64]bool{},
	}
	for l := range 2 {
		n.dead[l] = map[uint64]int{}
		n.deadReason[l] = map[uint64]DeadLetterReason{}
		n.refused[l] = map[uint64]bool{}
	}
	base := append([]Option{
		WithListenAddress(listen),
		WithAdvertiseAddress(proxy.Addr()),
		WithHandler(HandlerFunc(n.deliver)),
		WithDeadLetterHandler(n.deadLetter),
	}, faultOptions()...)
	m, err := New(append(base, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	n.m = m
	proxy.SetTarget(m.Addr())
	t.Cleanup(func() { n.kill() })
	return n
}

// kill closes the node at once: what it holds is dead-lettered.
func (n *faultNode) kill() {
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_ = n.m.Close(ctx)
}

func envID(env *Envelope) uint64 {
	if len(env.Payload) < 8 {
		return 0
	}
	return binary.BigEndian.Uint64(env.Payload)
}

func (n *faultNode) deliver(p Peer, env *Envelope) {
	if g := n.gate.Load(); g != nil && env.Lane == batch.LaneUser {
		<-*g
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if id := envID(env); id > sentinelBase {
		n.sentinels[id] = true
		return
	}
	switch {
	case env.Lane == batch.LaneUser:
		n.user[envID(env)]++
		if n.terminated[env.SenderID] {
			n.userAfterTerm++
		}
	case env.Kind == batch.KindWatch:
		n.watchedBy[watchKey{watcher: env.SenderID, target: env.Target}] = p
	case env.Kind == batch.KindTerminated:
		k := watchKey{watcher: env.Target, target: env.SenderID}
		n.terms[k]++
		n.terminated[env.SenderID] = true
		for _, h := range env.Header {
			if h.Key == ReasonHeader {
				n.termReasons[k] = h.Value
			}
		}
	default:
		n.sys[envID(env)]++
	}
}

func (n *faultNode) deadLetter(d DeadLetter) {
	n.mu.Lock()
	defer n.mu.Unlock()
	id := envID(&d.Envelope)
	if id == 0 || id > sentinelBase {
		return // a watch, a Terminated or a sentinel
	}
	n.dead[d.Envelope.Lane][id]++
	n.deadReason[d.Envelope.Lane][id] = d.Reason
}

// pump sends user envelopes, and every tenth id a system envelope, to
// address until stop closes; ids start at base+1. It returns the last id
// sent on each lane.
func (n *faultNode) pump(address string, base uint64, stop <-chan struct{}) (last [2]uint64) {
	last = [2]uint64{base, base}
	for i := 0; ; i++ {
		select {
		case <-stop:
			return last
		default:
		}
		lane := batch.LaneUser
		if i%10 == 9 {
			lane = batch.LaneSystem
		}
		last[lane]++
		id := last[lane]
		payload := binary.BigEndian.AppendUint64(nil, id)
		env := &Envelope{Target: "sink", SenderID: fmt.Sprintf("p%d", id%nWatches), Payload: payload, Lane: lane}
		if lane == batch.LaneSystem {
			env.Kind = batch.KindStop
		}
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		err := n.m.Send(ctx, address, env)
		cancel()
		if err != nil {
			n.mu.Lock()
			n.refused[lane][id] = true
			n.mu.Unlock()
		}
		if i%20 == 19 {
			time.Sleep(time.Millisecond)
		}
	}
}

// traffic runs pumps both ways until stop is called; stop returns the
// last ids sent by a and by b.
func traffic(a, b *faultNode) (stop func() (fromA, fromB [2]uint64)) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	var once sync.Once
	var la, lb [2]uint64
	wg.Add(2)
	go func() { defer wg.Done(); la = a.pump(b.proxy.Addr(), 0, done) }()
	go func() { defer wg.Done(); lb = b.pump(a.proxy.Addr(), 0, done) }()
	return func() ([2]uint64, [2]uint64) {
		once.Do(func() {
			close(done)
			wg.Wait()
		})
		return la, lb
	}
}

// flowing waits until user envelopes have been delivered both ways.
func flowing(t *testing.T, a, b *faultNode) {
	t.Helper()
	testutil.Eventually(t, "traffic both ways", patience, func() bool { return deliveredUser(a) > 0 && deliveredUser(b) > 0 })
}

// account waits until every envelope from sender to receivers, ids 1 to
// last on each lane, is accounted for, and fails the test for one that is
// missing or counted twice. A restarted peer has several receivers;
// lostOK names the dead-letter reasons that say an envelope may or may not
// have been delivered (the peer went away before acknowledging it).
func account(t *testing.T, sender *faultNode, last [2]uint64, lostOK map[DeadLetterReason]bool, receivers ...*faultNode) {
	t.Helper()
	accounted := false
	defer func() {
		if accounted {
			return
		}
		// Timed out: name the envelopes, every missing one too.
		problems := accountOnce(sender, last, lostOK, receivers, true)
		for i, p := range problems {
			if i == 10 {
				t.Errorf("... and %d more", len(problems)-10)
				break
			}
			t.Error(p)
		}
	}()
	testutil.Eventually(t, "every envelope to be accounted for", 30*time.Second, func() bool {
		return len(accountOnce(sender, last, lostOK, receivers, false)) == 0
	})
	accounted = true
}

func accountOnce(sender *faultNode, last [2]uint64, lostOK map[DeadLetterReason]bool, receivers []*faultNode, final bool) []string {
	var problems []string
	sender.mu.Lock()
	defer sender.mu.Unlock()
	for _, r := range receivers {
		if r != sender {
			r.mu.Lock()
			defer r.mu.Unlock()
		}
	}
	for lane := range 2 {
		for id := uint64(1); id <= last[lane]; id++ {
			got := 0
			for _, r := range receivers {
				if lane == int(batch.LaneUser) {
					got += r.user[id]
				} else {
					got += r.sys[id]
				}
			}
			dead := sender.dead[lane][id]
			refused := sender.refused[lane][id]
			switch {
			case got > 1:
				problems = append(problems, fmt.Sprintf("lane %d id %d delivered %d times", lane, id, got))
			case dead > 1:
				problems = append(problems, fmt.Sprintf("lane %d id %d dead-lettered %d times", lane, id, dead))
			case refused && got+dead > 0:
				problems = append(problems, fmt.Sprintf("lane %d id %d refused at Send, yet delivered %d, dead-lettered %d", lane, id, got, dead))
			case got == 1 && dead == 1 && !lostOK[sender.deadReason[lane][id]]:
				problems = append(problems, fmt.Sprintf("lane %d id %d delivered and dead-lettered (%v)", lane, id, sender.deadReason[lane][id]))
			case got+dead == 0 && !refused:
				if final || len(problems) == 0 {
					problems = append(problems, fmt.Sprintf("lane %d id %d missing", lane, id))
				}
			}
		}
	}
	return problems
}

// newFaultPair starts nodes a and b, each behind its own proxy, and has a
// watch the processes p0..p3 on b.
func newFaultPair(t *testing.T) (a, b *faultNode) {
	t.Helper()
	pa := newFaultProxy(t, "127.0.0.1:1")
	pb := newFaultProxy(t, "127.0.0.1:1")
	a = newFaultNode(t, "127.0.0.1:0", pa)
	b = newFaultNode(t, "127.0.0.1:0", pb)
	for i := range nWatches {
		if err := a.m.Watch(context.Background(), pb.Addr(), fmt.Sprintf("w%d", i), fmt.Sprintf("p%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	testutil.Eventually(t, "b to see the watches", patience, func() bool {
		b.mu.Lock()
		defer b.mu.Unlock()
		return len(b.watchedBy) == nWatches
	})
	return a, b
}

var sentinelSeq atomic.Uint64

// sentinel has from send a sentinel envelope on each lane to to, after
// everything it sent to before, and waits until to has delivered both. A
// lane delivers in order, each position once and none after a gap: so by
// then to has delivered, or dropped as a duplicate, everything from queued
// for it earlier, and what it counted from from is final.
func sentinel(t *testing.T, from, to *faultNode) {
	t.Helper()
	var ids [2]uint64
	for lane := range 2 {
		ids[lane] = sentinelBase + sentinelSeq.Add(1)
		env := &Envelope{Target: "sentinel", SenderID: "sentinel", Lane: batch.Lane(lane),
			Payload: binary.BigEndian.AppendUint64(nil, ids[lane])}
		if env.Lane == batch.LaneSystem {
			env.Kind = batch.KindStop
		}
		if err := from.m.Send(context.Background(), to.proxy.Addr(), env); err != nil {
			t.Fatalf("sentinel on lane %d: %v", lane, err)
		}
	}
	testutil.Eventually(t, "the sentinels to arrive", patience, func() bool {
		to.mu.Lock()
		defer to.mu.Unlock()
		return to.sentinels[ids[0]] && to.sentinels[ids[1]]
	})
}

// terminateWatched has b tell each watcher on a that its process is gone,
// as b's embedder would, and checks that each watcher hears it once, after
// the user envelopes from that process.
func terminateWatched(t *testing.T, a, b *faultNode) {
	t.Helper()
	sendTerminated(t, b, a)
	checkTerminated(t, a, b.proxy.Addr(), "", func() { sentinel(t, b, a) })
}

// sendTerminated has b tell each watcher on a that its process is gone.
func sendTerminated(t *testing.T, b, a *faultNode) {
	t.Helper()
	b.mu.Lock()
	var ws []watchKey
	for k := range b.watchedBy {
		ws = append(ws, k)
	}
	b.mu.Unlock()
	for _, k := range ws {
		env := &Envelope{Target: k.watcher, SenderID: k.target, Lane: batch.LaneSystem, Kind: batch.KindTerminated}
		if err := b.m.Send(context.Background(), a.proxy.Addr(), env); err != nil {
			t.Fatal(err)
		}
	}
}

// checkTerminated waits for every watcher on a of a process at address to
// have been told, then for settled, and checks that each was told once,
// with the reason header want ("" for a Terminated from the peer itself).
// settled returns once nothing can tell a watcher again: the peer's
// sentinel has arrived (for Terminated envelopes the peer sent), or a's
// endpoint has settled with the peer (for those a made itself).
func checkTerminated(t *testing.T, a *faultNode, address, want string, settled func()) {
	t.Helper()
	testutil.Eventually(t, "every watcher to hear Terminated", patience, func() bool {
		a.mu.Lock()
		defer a.mu.Unlock()
		return len(a.terms) == nWatches
	})
	settled()
	a.mu.Lock()
	defer a.mu.Unlock()
	for k, n := range a.terms {
		if n != 1 {
			t.Errorf("watcher %s of %s told Terminated %d times", k.watcher, k.target, n)
		}
		if a.termReasons[k] != want {
			t.Errorf("watcher %s of %s: reason %q, want %q", k.watcher, k.target, a.termReasons[k], want)
		}
	}
	if a.userAfterTerm != 0 {
		t.Errorf("%d user envelopes delivered after their sender's Terminated", a.userAfterTerm)
	}
	if n := a.m.Watches(address); n != 0 {
		t.Errorf("%d watches still on record", n)
	}
}

// runFault injects a fault while traffic flows both ways, clears it, and
// checks that traffic resumed, that every envelope is accounted for, and
// that the watches still work.
func runFault(t *testing.T, inject func(a, b *faultNode), clear func(a, b *faultNode)) {
	a, b := newFaultPair(t)
	stop := traffic(a, b)
	defer stop()
	flowing(t, a, b)
	inject(a, b)
	clear(a, b)
	// Traffic must flow again: a fresh envelope each way arrives.
	before := deliveredUser(b)
	testutil.Eventually(t, "traffic to resume", patience, func() bool { return deliveredUser(b) > before+100 })
	fromA, fromB := stop()
	account(t, a, fromA, nil, b)
	account(t, b, fromB, nil, a)
	terminateWatched(t, a, b)
}

func deliveredUser(n *faultNode) int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return len(n.user)
}

func TestFaultCut(t *testing.T) {
	runFault(t, func(a, b *faultNode) {
		for range 3 {
			a.proxy.Cut()
			b.proxy.Cut()
			time.Sleep(100 * time.Millisecond)
		}
	}, func(a, b *faultNode) {})
}

func TestFaultReset(t *testing.T) {
	runFault(t, func(a, b *faultNode) {
		for range 3 {
			b.proxy.Reset()
			time.Sleep(50 * time.Millisecond)
			a.proxy.Reset()
			time.Sleep(100 * time.Millisecond)
		}
	}, func(a, b *faultNode) {})
}

func TestFaultResetMidFrame(t *testing.T) {
	runFault(t, func(a, b *faultNode) {
		for range 3 {
			a.proxy.ResetMidFrame()
			b.proxy.ResetMidFrame()
			time.Sleep(150 * time.Millisecond)
		}
	}, func(a, b *faultNode) {})
}

func TestFaultBlackHole(t *testing.T) {
	runFault(t, func(a, b *faultNode) {
		a.proxy.BlackHole(true)
		b.proxy.BlackHole(true)
		// Longer than the heartbeat timeout: both sides must notice.
		time.Sleep(3 * time.Second)
	}, func(a, b *faultNode) {
		a.proxy.BlackHole(false)
		b.proxy.BlackHole(false)
	})
}

func TestFaultDelay(t *testing.T) {
	runFault(t, func(a, b *faultNode) {
		a.proxy.SetDelay(30 * time.Millisecond)
		b.proxy.SetDelay(30 * time.Millisecond)
		time.Sleep(500 * time.Millisecond)
	}, func(a, b *faultNode) {
		a.proxy.SetDelay(0)
		b.proxy.SetDelay(0)
	})
}

// TestFaultPeerRestart kills b and starts a new node on its address: a new
// incarnation. What a owed the old b is dead-lettered, a's watchers of
// processes on the old b hear Terminated ("address terminated") once, and
// traffic flows to the new b.
func TestFaultPeerRestart(t *testing.T) {
	a, b := newFaultPair(t)
	events := make(chan Event, 1024)
	unsub := a.m.Subscribe(func(e Event) {
		if e.Type == EventPeerRestarted {
			events <- e
		}
	})
	defer unsub()
	stop := traffic(a, b)
	defer stop()
	flowing(t, a, b)

	b.kill()
	b2 := newFaultNode(t, b.m.Addr(), b.proxy)
	if b2.m.Incarnation() == b.m.Incarnation() {
		t.Fatal("restarted node has the old incarnation")
	}
	// a's endpoint settles with the old b, telling the watchers, before it
	// reports the restart.
	checkTerminated(t, a, b.proxy.Addr(), AddressTerminated, func() {
		select {
		case e := <-events:
			if e.Peer.Incarnation != b2.m.Incarnation() {
				t.Errorf("peer restarted event names incarnation %x, want %x", e.Peer.Incarnation, b2.m.Incarnation())
			}
		case <-time.After(patience):
			t.Fatal("no peer restarted event")
		}
	})
	// Traffic from a flows to the new b.
	testutil.Eventually(t, "traffic to the new incarnation", patience, func() bool { return deliveredUser(b2) > 100 })
	fromA, fromB := stop()
	lost := map[DeadLetterReason]bool{ReasonPeerRestarted: true}
	account(t, a, fromA, lost, b, b2)
	// b was killed: what it had not seen acknowledged is dead-lettered with
	// reason shutdown, delivered or not.
	account(t, b, fromB, map[DeadLetterReason]bool{ReasonShutdown: true}, a)
}

// TestFaultTerminatedAfterData holds a Terminated back until the user
// envelopes its sender sent before it are delivered: the user lane is held
// up at the receiver while the Terminated arrives on the system lane, and
// the connection is cut under both.
func TestFaultTerminatedAfterData(t *testing.T) {
	a, b := newFaultPair(t)
	gate := make(chan struct{})
	a.gate.Store(&gate)
	const n = 500 // fits in the user queue: none is dropped
	for i := range n {
		env := &Envelope{Target: "sink", SenderID: fmt.Sprintf("p%d", i%nWatches),
			Payload: binary.BigEndian.AppendUint64(nil, uint64(i+1)), Lane: batch.LaneUser}
		if err := b.m.Send(context.Background(), a.proxy.Addr(), env); err != nil {
			t.Fatal(err)
		}
	}
	sendTerminated(t, b, a)
	// The Terminated envelopes reach a and wait there for the user lane.
	testutil.Eventually(t, "the Terminated envelopes to be held", patience, func() bool {
		held := 0
		a.m.inbound.Range(func(_, v any) bool {
			held += int(v.(*inboundPeer).heldN.Load())
			return true
		})
		return held == nWatches
	})
	a.mu.Lock()
	early := len(a.terms)
	a.mu.Unlock()
	if early != 0 {
		t.Fatalf("%d Terminated delivered while the user lane was held up", early)
	}
	a.proxy.Cut()
	close(gate)
	checkTerminated(t, a, b.proxy.Addr(), "", func() { sentinel(t, b, a) })
	a.mu.Lock()
	got := len(a.user)
	a.mu.Unlock()
	if got != n {
		t.Errorf("a got %d user envelopes before the Terminated envelopes, want %d", got, n)
	}
}

// TestFaultUnreachable makes the peer unreachable until the endpoint gives
// up: what was queued is dead-lettered with reason "endpoint terminated",
// and the watchers hear Terminated ("address terminated") once.
func TestFaultUnreachable(t *testing.T) {
	pa := newFaultProxy(t, "127.0.0.1:1")
	pb := newFaultProxy(t, "127.0.0.1:1")
	a := newFaultNode(t, "127.0.0.1:0", pa,
		WithReconnect(Backoff{Initial: 10 * time.Millisecond, Max: 50 * time.Millisecond, Multiplier: 2, MaxAttempts: 3}))
	b := newFaultNode(t, "127.0.0.1:0", pb)
	for i := range nWatches {
		if err := a.m.Watch(context.Background(), pb.Addr(), fmt.Sprintf("w%d", i), fmt.Sprintf("p%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	testutil.Eventually(t, "b to see the watches", patience, func() bool {
		b.mu.Lock()
		defer b.mu.Unlock()
		return len(b.watchedBy) == nWatches
	})
	ep := endpointOf(t, a.m, pb.Addr())
	terminated := make(chan Event, 1)
	unsub := a.m.Subscribe(func(e Event) {
		if e.Type == EventTerminated {
			terminated <- e
		}
	})
	defer unsub()

	pb.Refuse(true)
	pb.Cut()
	const n = 100
	sent := 0
	for i := range n {
		env := &Envelope{Target: "sink", Payload: binary.BigEndian.AppendUint64(nil, uint64(i+1)), Lane: batch.LaneUser}
		if a.m.Send(context.Background(), pb.Addr(), env) == nil {
			sent++
		} else {
			a.mu.Lock()
			a.refused[batch.LaneUser][uint64(i+1)] = true
			a.mu.Unlock()
		}
	}
	select {
	case e := <-terminated:
		if e.Reason != ReasonEndpointTerminated.String() {
			t.Errorf("terminated with reason %q", e.Reason)
		}
	case <-time.After(patience):
		t.Fatal("endpoint not terminated")
	}
	checkTerminated(t, a, pb.Addr(), AddressTerminated, func() { endpointEnded(t, ep) })
	account(t, a, [2]uint64{n, 0}, nil, b)
	a.mu.Lock()
	for id, r := range a.deadReason[batch.LaneUser] {
		if r != ReasonEndpointTerminated {
			t.Errorf("envelope %d dead-lettered with reason %v", id, r)
		}
	}
	a.mu.Unlock()
}

// TestFaultUnwatch: after Unwatch, neither the peer's Terminated nor the
// peer's loss reaches the watcher.
func TestFaultUnwatch(t *testing.T) {
	a, b := newFaultPair(t)
	for i := range nWatches {
		if err := a.m.Unwatch(context.Background(), b.proxy.Addr(), fmt.Sprintf("w%d", i), fmt.Sprintf("p%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	if n := a.m.Watches(b.proxy.Addr()); n != 0 {
		t.Fatalf("%d watches on record after Unwatch", n)
	}
	// b's embedder still sends Terminated (it may not have seen the
	// Unwatch yet), then b goes away.
	sendTerminated(t, b, a)
	testutil.Eventually(t, "b's Terminated envelopes to reach a", patience, func() bool { return a.m.staleTerminated.Load() == nWatches })
	// b's goodbye ends a's endpoint after the grace: by the time its
	// goroutine returns, it has settled with b, and told no watcher.
	ep := endpointOf(t, a.m, b.proxy.Addr())
	b.kill()
	endpointEnded(t, ep)
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.terms) != 0 {
		t.Errorf("watchers told Terminated after Unwatch: %v", a.terms)
	}
}

// TestFaultSystemQueueFull: a peer that acknowledges no system envelope
// (its handler is stuck) leaves the system queue full; after the system
// queue timeout it is declared failed, as Artery quarantines, and what was
// queued for it is dead-lettered.
func TestFaultSystemQueueFull(t *testing.T) {
	stuck := make(chan struct{})
	b := newNode(t, HandlerFunc(func(_ Peer, env *Envelope) {
		if env.Lane == batch.LaneSystem {
			<-stuck
		}
	}))
	defer close(stuck) // before b closes: Close waits for its handlers
	var dead atomic.Int32
	a := newNode(t, newCollector(), WithSystemQueue(4), WithSystemQueueTimeout(100*time.Millisecond),
		WithDeadLetterHandler(func(d DeadLetter) {
			if d.Reason == ReasonEndpointTerminated {
				dead.Add(1)
			}
		}))
	var err error
	sent := 0
	for sent = 0; sent < 100; sent++ {
		err = a.Send(context.Background(), b.Addr(), &Envelope{Target: "x", Lane: batch.LaneSystem, Kind: batch.KindStop})
		if err != nil {
			break
		}
	}
	if !errors.Is(err, ErrSystemQueueFull) {
		t.Fatalf("after %d sends: %v, want ErrSystemQueueFull", sent, err)
	}
	testutil.Eventually(t, "the queued system envelopes to be dead-lettered", patience, func() bool {
		s, _ := a.Stats(b.Addr())
		return s.State == StateTerminated && int(dead.Load()) == sent // none was acknowledged
	})
}
