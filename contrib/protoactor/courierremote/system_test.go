package courierremote

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/courier-go/courier/manager"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// idle is an actor that does nothing.
func idle(actor.Context) {}

// stopAndExpect stops the remote process pid from a and expects its
// Terminated, reason Stopped, as the watcher's next message.
func stopAndExpect(t *testing.T, a *node, box *inbox, pid *actor.PID) {
	t.Helper()
	a.system.Root.Stop(actor.NewPID(pid.Address, pid.Id))
	box.expectTerminated(t, pid, actor.TerminatedReason_Stopped)
}

func TestWatchRemoteActorTerminatedOnce(t *testing.T) {
	a, b := startNode(t, nil), startNode(t, nil)
	b.spawn("x", idle)
	b.spawn("y", idle)
	x, y := b.remotePID("x"), b.remotePID("y")

	// The watcher watches x as it starts, and takes commands after.
	box := newInbox()
	watching := make(chan struct{})
	a.spawn("watcher", func(ctx actor.Context) {
		switch m := ctx.Message().(type) {
		case *actor.Started:
			ctx.Watch(actor.NewPID(x.Address, x.Id))
			close(watching)
		case *watchCmd:
			ctx.Watch(m.pid)
			close(m.done)
		default:
			box.receive(ctx)
		}
	})
	watcher := a.system.NewLocalPID("watcher")
	select {
	case <-watching:
	case <-time.After(5 * time.Second):
		t.Fatal("watcher did not start")
	}
	if n := a.r.Manager().Watches(b.r.Address()); n != 1 {
		t.Fatalf("%d watches on record for b, want 1", n)
	}
	// Stopped from the watcher's node: the Stop follows the Watch on a's
	// system lane.
	stopAndExpect(t, a, box, x)
	if n := a.r.Manager().Watches(b.r.Address()); n != 0 {
		t.Fatalf("%d watches on record for b after the Terminated, want 0", n)
	}

	// The sentinel takes the same path: y, watched and then stopped from
	// its own node, has its Terminated come by b's system lane after
	// anything more b would have sent for x. It must be the next message:
	// x's Terminated came once.
	a.watch(watcher, actor.NewPID(y.Address, y.Id))
	barrier(t, a, b, watcher, box) // y has the Watch before b stops it
	b.system.Root.Stop(b.system.NewLocalPID("y"))
	box.expectTerminated(t, y, actor.TerminatedReason_Stopped)
	if n := a.r.Manager().Watches(b.r.Address()); n != 0 {
		t.Fatalf("%d watches on record for b at the end, want 0", n)
	}
}

// barrier makes sure every system message a has queued for b so far has
// been delivered to its target's mailbox on b: a's system lane to b is
// FIFO, so once the Terminated of a throwaway process, watched and stopped
// now, is back, everything queued before its Watch was delivered.
func barrier(t *testing.T, a, b *node, watcher *actor.PID, box *inbox) {
	t.Helper()
	name := "barrier-" + b.system.ProcessRegistry.NextId()
	b.spawn(name, idle)
	z := b.remotePID(name)
	a.watch(watcher, actor.NewPID(z.Address, z.Id))
	stopAndExpect(t, a, box, z)
}

func TestTerminatedComesAfterTheUserMessagesSentBeforeIt(t *testing.T) {
	a, b := startNode(t, nil), startNode(t, nil)
	watcher, box := a.spawnWatcher("watcher")
	const n = 500
	to := a.remotePID("watcher")
	b.spawn("producer", func(ctx actor.Context) {
		if _, ok := ctx.Message().(*struct{}); !ok {
			return
		}
		for i := range n {
			ctx.Send(to, wrapperspb.Int64(int64(i)))
		}
		ctx.Stop(ctx.Self())
	})
	producer := b.remotePID("producer")
	a.watch(watcher, actor.NewPID(producer.Address, producer.Id))
	barrier(t, a, b, watcher, box)

	b.system.Root.Send(b.system.NewLocalPID("producer"), &struct{}{})
	for i := range n {
		m := box.next(t, 10*time.Second)
		v, ok := m.(*wrapperspb.Int64Value)
		if !ok || v.Value != int64(i) {
			t.Fatalf("message %d: got %T %v, want Int64Value %d (all %d before the Terminated)", i, m, m, i, n)
		}
	}
	box.expectTerminated(t, producer, actor.TerminatedReason_Stopped)
}

// Watch, Unwatch and Stop, on the system lane, overtake a user lane whose
// queue is full behind a slow actor; the Terminated comes back on b's own
// system lane (b's user lane to a is idle here; courier's barrier keeps a
// Terminated behind the user messages its node sent before it).
func TestSystemMessagesOvertakeAThrottledUserLane(t *testing.T) {
	a, b := startNode(t, nil), startNode(t, nil)
	// A slow receiver behind a small mailbox: once the mailbox is full,
	// courier's delivery of a's user lane on b waits for it, and a's user
	// queue to b fills.
	slow, _ := b.spawnSink("slow", 64, false, 2*time.Millisecond)
	b.spawn("x", idle)
	b.spawn("x2", idle)
	watcher, box := a.spawnWatcher("watcher")

	const n = 3000
	sink := b.remotePID("slow")
	for i := range n {
		a.system.Root.Send(sink, wrapperspb.Int64(int64(i)))
	}
	// An Unwatch overtakes too: x2's stop, once unwatched, tells nobody,
	// so the next message is x's Terminated.
	x, x2 := b.remotePID("x"), b.remotePID("x2")
	a.watch(watcher, actor.NewPID(x2.Address, x2.Id))
	a.unwatch(watcher, actor.NewPID(x2.Address, x2.Id))
	a.system.Root.Stop(actor.NewPID(x2.Address, x2.Id))
	a.watch(watcher, actor.NewPID(x.Address, x.Id))
	stopAndExpect(t, a, box, x)
	delivered := slow.delivered.Load()
	st, _ := a.r.Manager().Stats(b.r.Address())
	t.Logf("at the Terminated: %d of %d delivered, %d in a's user queue to b", delivered, n, st.User.Queued)
	if delivered > n-2000 {
		t.Fatalf("%d of %d user messages delivered before the Terminated: the system lane did not overtake", delivered, n)
	}
	if st.User.Queued < 1000 {
		t.Fatalf("a's user queue to b holds %d: the user lane was not throttled", st.User.Queued)
	}
	// Let the flood through, and see it all arrive.
	slow.release()
	eventually(t, "the whole flood delivered", 20*time.Second, func() bool { return slow.delivered.Load() == n })
}

func TestAddressTerminated(t *testing.T) {
	a, b := startNode(t, nil), startNode(t, nil)
	b.spawn("x", idle)
	watcher, box := a.spawnWatcher("watcher")
	x := b.remotePID("x")
	a.watch(watcher, actor.NewPID(x.Address, x.Id))
	barrier(t, a, b, watcher, box)

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := b.r.Shutdown(ctx); err != nil {
		t.Fatalf("b's Shutdown: %v", err)
	}
	box.expectTerminated(t, x, actor.TerminatedReason_AddressTerminated)
	// No watch is left that could be told again.
	if n := a.r.Manager().Watches(x.Address); n != 0 {
		t.Fatalf("%d watches on record for b after AddressTerminated, want 0", n)
	}
	expectOnlyOne(t, a, watcher, box)
}

func TestUnwatchedRemoteActorSendsNoTerminated(t *testing.T) {
	a, b := startNode(t, nil), startNode(t, nil)
	b.spawn("x", idle)
	b.spawn("y", idle)
	watcher, box := a.spawnWatcher("watcher")
	x, y := b.remotePID("x"), b.remotePID("y")

	a.watch(watcher, actor.NewPID(x.Address, x.Id))
	a.unwatch(watcher, actor.NewPID(x.Address, x.Id))
	if n := a.r.Manager().Watches(b.r.Address()); n != 0 {
		t.Fatalf("%d watches on record after Unwatch, want 0", n)
	}
	a.system.Root.Stop(actor.NewPID(x.Address, x.Id))
	// x's Terminated, if there were one, would come before y's on b's
	// system lane: y's must be the next message.
	a.watch(watcher, actor.NewPID(y.Address, y.Id))
	stopAndExpect(t, a, box, y)
	eventually(t, "x stopped on b", 5*time.Second, func() bool {
		_, ok := b.system.ProcessRegistry.GetLocal("x")
		return !ok
	})
}

func TestWatchingAMissingRemoteProcess(t *testing.T) {
	a, b := startNode(t, nil), startNode(t, nil)
	watcher, box := a.spawnWatcher("watcher")
	ghost := b.remotePID("ghost")
	a.watch(watcher, actor.NewPID(ghost.Address, ghost.Id))
	box.expectTerminated(t, ghost, actor.TerminatedReason_NotFound)
	if n := a.r.Manager().Watches(b.r.Address()); n != 0 {
		t.Fatalf("%d watches on record after the Terminated, want 0", n)
	}
}

func TestWatchAcrossNarrowRegistries(t *testing.T) {
	// Neither node's registry knows actor.Terminated: the adapter's
	// protocol carries it all the same, reason included.
	narrow := Configure("127.0.0.1", 0, WithSerializers(narrowRegistry(t, &wrapperspb.Int64Value{})))
	a := startNode(t, narrow)
	b := startNode(t, Configure("127.0.0.1", 0, WithSerializers(narrowRegistry(t, &wrapperspb.Int64Value{}))))
	b.spawn("x", idle)
	watcher, box := a.spawnWatcher("watcher")
	x := b.remotePID("x")
	a.watch(watcher, actor.NewPID(x.Address, x.Id))
	stopAndExpect(t, a, box, x)
	ghost := b.remotePID("ghost")
	a.watch(watcher, actor.NewPID(ghost.Address, ghost.Id))
	box.expectTerminated(t, ghost, actor.TerminatedReason_NotFound)
}

// watchChild makes a's watcher watch the child's echo, once the child has
// answered a request, and returns the echo's PID.
func watchChild(t *testing.T, a *node, watcher *actor.PID, c *child) *actor.PID {
	t.Helper()
	pid := actor.NewPID(c.addr, "echo")
	if got := requestString(t, a, pid, "hi"); !strings.HasPrefix(got, "HI") {
		t.Fatalf("the child answered %q", got)
	}
	a.watch(watcher, pid)
	eventually(t, "the watch on record", 5*time.Second, func() bool { return a.r.Manager().Watches(c.addr) == 1 })
	return pid
}

// expectOnlyOne checks that box's Terminated so far was the only one: the
// Terminated of a watch made now, on another node, is the next message.
func expectOnlyOne(t *testing.T, a *node, watcher *actor.PID, box *inbox) {
	t.Helper()
	c := startNode(t, nil)
	c.spawn("y", idle)
	y := c.remotePID("y")
	a.watch(watcher, actor.NewPID(y.Address, y.Id))
	stopAndExpect(t, a, box, y)
}

// A node that dies without a word: its watchers are told AddressTerminated
// once courier gives up on it, and once only.
func TestAddressTerminatedWhenTheNodeDies(t *testing.T) {
	c := startChild(t, 0)
	a := startNode(t, nil, fastGiveUp)
	watcher, box := a.spawnWatcher("watcher")
	pid := watchChild(t, a, watcher, c)
	c.kill(t)
	box.expectTerminated(t, pid, actor.TerminatedReason_AddressTerminated)
	if n := a.r.Manager().Watches(c.addr); n != 0 {
		t.Fatalf("%d watches on record for the dead node, want 0", n)
	}
	expectOnlyOne(t, a, watcher, box)
}

// A node that dies and comes back on its address as a new incarnation: the
// watchers of the old one are told AddressTerminated, once, and the new
// one serves.
func TestAddressTerminatedWhenThePeerRestarts(t *testing.T) {
	c := startChild(t, 0)
	a := startNode(t, nil)
	restarts := record[*EndpointEvent](t, a)
	watcher, box := a.spawnWatcher("watcher")
	pid := watchChild(t, a, watcher, c)
	port := c.port(t)
	c.kill(t)
	again := startChild(t, port)
	box.expectTerminated(t, pid, actor.TerminatedReason_AddressTerminated)
	restarts.wait(t, "the endpoint meeting the new incarnation", 10*time.Second, func(e *EndpointEvent) bool {
		return e.Type == manager.EventPeerRestarted
	})
	if got := requestString(t, a, actor.NewPID(again.addr, "echo"), "again"); !strings.HasPrefix(got, "AGAIN") {
		t.Fatalf("the restarted node answered %q", got)
	}
	expectOnlyOne(t, a, watcher, box)
}
