package courierremote

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/asynkron/protoactor-go/eventstream"
	"github.com/courier-go/courier/manager"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// quietSystem is an actor system that logs nothing. Its dead-letter log
// throttle, a goroutine that lives for one throttle interval after the
// first dead letter, is short, so that it has ended by the leak check.
func quietSystem() *actor.ActorSystem {
	return actor.NewActorSystem(actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger {
		return slog.New(slog.DiscardHandler)
	}), actor.WithDeadLetterThrottleInterval(10*time.Millisecond))
}

// fastGiveUp makes a node give up on a lost peer within about a second.
var fastGiveUp = manager.WithReconnect(manager.Backoff{Initial: 10 * time.Millisecond, Max: 50 * time.Millisecond,
	Multiplier: 2, MaxAttempts: 3})

// node is one actor system with courier as its remote.
type node struct {
	t      *testing.T
	system *actor.ActorSystem
	r      *Remote
}

// startNode starts an actor system on 127.0.0.1:0 with courier's opts; the
// test shuts it down at its end.
func startNode(t *testing.T, cfg *Config, opts ...manager.Option) *node {
	t.Helper()
	if cfg == nil {
		cfg = Configure("127.0.0.1", 0)
	}
	system := quietSystem()
	r, err := Start(context.Background(), system, cfg, append([]manager.Option{fastGiveUp}, opts...)...)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	n := &node{t: t, system: system, r: r}
	t.Cleanup(func() { n.stop() })
	return n
}

func (n *node) stop() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := n.r.Shutdown(ctx); err != nil {
		n.t.Errorf("Shutdown: %v", err)
	}
	n.system.Shutdown()
}

// spawn spawns a named actor that runs f on every message.
func (n *node) spawn(name string, f actor.ReceiveFunc) *actor.PID {
	n.t.Helper()
	pid, err := n.system.Root.SpawnNamed(actor.PropsFromFunc(f), name)
	if err != nil {
		n.t.Fatalf("spawn %s: %v", name, err)
	}
	return pid
}

// events records what a node's event stream carries, of type T.
type events[T any] struct {
	mu  sync.Mutex
	got []T
	ch  chan struct{}
	sub *eventstream.Subscription
	es  *eventstream.EventStream
}

func record[T any](t *testing.T, n *node) *events[T] {
	e := &events[T]{ch: make(chan struct{}, 1), es: n.system.EventStream}
	e.sub = n.system.EventStream.Subscribe(func(evt any) {
		if v, ok := evt.(T); ok {
			e.mu.Lock()
			e.got = append(e.got, v)
			e.mu.Unlock()
			select {
			case e.ch <- struct{}{}:
			default:
			}
		}
	})
	t.Cleanup(func() { e.es.Unsubscribe(e.sub) })
	return e
}

func (e *events[T]) all() []T {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]T(nil), e.got...)
}

// wait returns the first recorded event that match accepts, failing the
// test after d.
func (e *events[T]) wait(t *testing.T, what string, d time.Duration, match func(T) bool) T {
	t.Helper()
	timer := time.NewTimer(d)
	defer timer.Stop()
	for {
		for _, v := range e.all() {
			if match(v) {
				return v
			}
		}
		select {
		case <-e.ch:
		case <-timer.C:
			t.Fatalf("no %s within %v; got %d events of the type", what, d, len(e.all()))
		}
	}
}

// inbox is an actor's record of the messages it received.
type inbox struct {
	ch chan any
}

func newInbox() *inbox { return &inbox{ch: make(chan any, 4096)} }

// receive records every message but the actor's own lifecycle ones.
func (b *inbox) receive(ctx actor.Context) {
	switch ctx.Message().(type) {
	case *actor.Started, *actor.Stopping, *actor.Stopped, *actor.Restarting:
		return
	}
	b.ch <- ctx.Message()
}

func (b *inbox) next(t *testing.T, d time.Duration) any {
	t.Helper()
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case m := <-b.ch:
		return m
	case <-timer.C:
		t.Fatalf("nothing received within %v", d)
		return nil
	}
}

// remotePID is the PID of id on n, as another node names it.
func (n *node) remotePID(id string) *actor.PID { return actor.NewPID(n.r.Address(), id) }

// eventually polls cond until it holds, failing the test after d.
func eventually(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not the case within %v: %s", d, what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// courierReasons are the dead-letter reasons courier gives, as the
// adapter's DeadLetterEvent spells them.
var courierReasons = map[string]bool{
	manager.ReasonQueueFull.String():          true,
	manager.ReasonTooLarge.String():           true,
	manager.ReasonEndpointTerminated.String(): true,
	manager.ReasonBlocked.String():            true,
	manager.ReasonShutdown.String():           true,
	manager.ReasonPeerRestarted.String():      true,
}

// watchCmd and unwatchCmd tell a watcher actor (spawnWatcher) to watch or
// unwatch pid; done is closed once it has.
type watchCmd struct {
	pid  *actor.PID
	done chan struct{}
}

type unwatchCmd struct {
	pid  *actor.PID
	done chan struct{}
}

// spawnWatcher spawns an actor that watches and unwatches on command and
// records everything else it receives, Terminated included.
func (n *node) spawnWatcher(name string) (*actor.PID, *inbox) {
	n.t.Helper()
	box := newInbox()
	pid := n.spawn(name, func(ctx actor.Context) {
		switch m := ctx.Message().(type) {
		case *watchCmd:
			ctx.Watch(m.pid)
			close(m.done)
			return
		case *unwatchCmd:
			ctx.Unwatch(m.pid)
			close(m.done)
			return
		}
		box.receive(ctx)
	})
	return pid, box
}

// command sends a watch or unwatch command and waits until it is done:
// the system message is then queued ahead of anything sent after.
func (n *node) command(watcher *actor.PID, cmd any, done chan struct{}) {
	n.t.Helper()
	n.system.Root.Send(watcher, cmd)
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		n.t.Fatalf("watcher %v did not take %T", watcher, cmd)
	}
}

func (n *node) watch(watcher, pid *actor.PID) {
	n.t.Helper()
	c := &watchCmd{pid: pid, done: make(chan struct{})}
	n.command(watcher, c, c.done)
}

func (n *node) unwatch(watcher, pid *actor.PID) {
	n.t.Helper()
	c := &unwatchCmd{pid: pid, done: make(chan struct{})}
	n.command(watcher, c, c.done)
}

// expectTerminated takes the inbox's next message, which must be the
// Terminated of who (address and id) for why.
func (b *inbox) expectTerminated(t *testing.T, who *actor.PID, why actor.TerminatedReason) {
	t.Helper()
	m := b.next(t, 10*time.Second)
	term, ok := m.(*actor.Terminated)
	if !ok {
		t.Fatalf("got %T %v, want the Terminated of %v", m, m, who)
	}
	if term.Who.GetAddress() != who.Address || term.Who.GetId() != who.Id || term.Why != why {
		t.Fatalf("got Terminated{Who: %v, Why: %v}, want Who %v, Why %v", term.Who, term.Why, who, why)
	}
}

// sink is an actor that counts the Int64Values it takes, optionally held
// at a gate (closed channel: open) and slowed per message, behind a
// bounded mailbox, so that a full mailbox stalls courier's delivery of the
// peer's user lane and the sender's user queue fills.
type sink struct {
	delivered atomic.Int64
	taken     atomic.Int64 // messages taken from the mailbox, at the gate or past it
	gate      chan struct{}
	openOnce  sync.Once
	slow      atomic.Int64 // nanoseconds per message
	mu        sync.Mutex
	values    map[int64]int
}

// spawnSink spawns a sink under name with a mailbox of the given size (0:
// protoactor-go's default, unbounded), closed (held at the gate) if gated. The test opens it and lifts the
// slowness before the nodes stop, so that nothing is left in flight.
func (n *node) spawnSink(name string, mailbox int, gated bool, per time.Duration) (*sink, *actor.PID) {
	n.t.Helper()
	s := &sink{gate: make(chan struct{}), values: map[int64]int{}}
	if !gated {
		s.open()
	}
	s.slow.Store(int64(per))
	var opts []actor.PropsOption
	if mailbox > 0 {
		opts = append(opts, actor.WithMailbox(actor.Bounded(mailbox)))
	}
	props := actor.PropsFromFunc(func(ctx actor.Context) {
		m, ok := ctx.Message().(*wrapperspb.Int64Value)
		if !ok {
			return
		}
		s.taken.Add(1)
		<-s.gate
		if d := s.slow.Load(); d > 0 {
			time.Sleep(time.Duration(d))
		}
		s.mu.Lock()
		s.values[m.Value]++
		s.mu.Unlock()
		s.delivered.Add(1)
	}, opts...)
	pid, err := n.system.Root.SpawnNamed(props, name)
	if err != nil {
		n.t.Fatalf("spawn %s: %v", name, err)
	}
	n.t.Cleanup(s.release) // runs before the node stops
	return s, pid
}

func (s *sink) open() { s.openOnce.Do(func() { close(s.gate) }) }

// release opens the gate and lifts the slowness.
func (s *sink) release() {
	s.slow.Store(0)
	s.open()
}

// got returns how many times the sink took value v.
func (s *sink) got(v int64) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.values[v]
}
