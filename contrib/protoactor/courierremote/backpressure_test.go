package courierremote

import (
	"context"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// actorProcess returns the process of n's actor id.
func (n *node) actorProcess(id string) *actor.ActorProcess {
	n.t.Helper()
	ref, ok := n.system.ProcessRegistry.GetLocal(id)
	p, isActor := ref.(*actor.ActorProcess)
	if !ok || !isActor {
		n.t.Fatalf("%s is not an actor of the node", id)
	}
	return p
}

// atTheGate waits until s has taken its first message and holds it at the
// gate, and returns how many its mailbox mb holds then: limit-1 or limit,
// as the actor took the first one after the wait began or before.
func atTheGate(t *testing.T, s *sink, mb actor.Mailbox, limit int) int {
	t.Helper()
	eventually(t, "the first message taken", 5*time.Second, func() bool { return s.taken.Load() == 1 })
	n := mb.UserMessageCount()
	if n != limit-1 && n != limit {
		t.Fatalf("the mailbox holds %d while the delivery waits, want %d or %d", n, limit-1, limit)
	}
	return n
}

// flood sends n Int64Values, 0 to n-1, from a to pid.
func flood(a *node, pid *actor.PID, n int) {
	for i := range n {
		a.system.Root.Send(pid, wrapperspb.Int64(int64(i)))
	}
}

// waitingFull floods b's sink, an unbounded mailbox held at its gate, with
// n messages from a, until deliveries from a wait for its full mailbox;
// it returns the sink, its PID, the MailboxFullEvents and the first.
func waitingFull(t *testing.T, a, b *node, n int) (*sink, *actor.PID, *events[*MailboxFullEvent], *MailboxFullEvent) {
	t.Helper()
	full := record[*MailboxFullEvent](t, b)
	s, pid := b.spawnSink("sink", 0, true, 0)
	flood(a, b.remotePID("sink"), n)
	ev := full.wait(t, "a full mailbox", 10*time.Second, func(e *MailboxFullEvent) bool { return e.Waiting })
	return s, pid, full, ev
}

func TestMailboxFieldFound(t *testing.T) {
	// Without it the limit is off: the tests below would test nothing.
	if mailboxField == noField || deadFlag == noDeadFlag {
		t.Fatal("ActorProcess's mailbox or dead flag not found by reflection")
	}
	if r := startNode(t, nil).r; r.mailboxLimit != DefaultMailboxLimit {
		t.Fatalf("mailbox limit %d by default, want %d", r.mailboxLimit, DefaultMailboxLimit)
	}
}

func TestMailboxLimitHoldsBackThePeer(t *testing.T) {
	const limit, n = 64, 2000
	a := startNode(t, nil)
	b := startNode(t, Configure("127.0.0.1", 0, WithMailboxLimit(limit)))
	b.spawn("x", idle)
	watcher, box := a.spawnWatcher("watcher")
	s, _, full, ev := waitingFull(t, a, b, n)
	if ev.Address != a.r.Address() || ev.PID.GetId() != "sink" || ev.Messages != limit {
		t.Fatalf("got %+v, want a's deliveries to sink waiting at %d messages", ev, limit)
	}
	// Once the actor holds its first message at the gate, the mailbox
	// holds the rest of what came before the wait, and no more while the
	// delivery waits.
	mb := mailboxOf(b.actorProcess("sink"))
	held := atTheGate(t, s, mb, limit)
	// The system lane has its own reader: a watch and a stop pass.
	x := b.remotePID("x")
	a.watch(watcher, actor.NewPID(x.Address, x.Id))
	stopAndExpect(t, a, box, x)
	if got := mb.UserMessageCount(); got != held || s.delivered.Load() != 0 {
		t.Fatalf("mailbox holds %d and %d delivered after the stop, want %d and 0", got, s.delivered.Load(), held)
	}

	s.release()
	eventually(t, "the whole flood delivered", 20*time.Second, func() bool { return s.delivered.Load() == n })
	for v := range int64(n) {
		if c := s.got(v); c != 1 {
			t.Fatalf("message %d delivered %d times", v, c)
		}
	}
	full.wait(t, "the end of the wait", 5*time.Second, func(e *MailboxFullEvent) bool { return !e.Waiting })
	if b.r.MailboxWaits() == 0 {
		t.Fatal("MailboxWaits is 0 after a wait")
	}
}

func TestMailboxLimitOff(t *testing.T) {
	const n = 2000
	a := startNode(t, nil)
	b := startNode(t, Configure("127.0.0.1", 0, WithMailboxLimit(-1)))
	s, _ := b.spawnSink("sink", 0, true, 0)
	flood(a, b.remotePID("sink"), n)
	// Everything but the message at the gate piles up in the mailbox.
	mb := mailboxOf(b.actorProcess("sink"))
	eventually(t, "the flood in the mailbox", 10*time.Second, func() bool { return mb.UserMessageCount() == n-1 })
	s.release()
	eventually(t, "the whole flood delivered", 20*time.Second, func() bool { return s.delivered.Load() == n })
	if w := b.r.MailboxWaits(); w != 0 {
		t.Fatalf("%d waits with the limit off", w)
	}
}

func TestMailboxWaitEndsWhenTheActorStops(t *testing.T) {
	const limit = 16
	a := startNode(t, nil)
	b := startNode(t, Configure("127.0.0.1", 0, WithMailboxLimit(limit)))
	other := newInbox()
	b.spawn("other", other.receive)
	s, sinkPID, full, _ := waitingFull(t, a, b, 200)
	// Stopped while it holds a message at its gate: the actor is dead to
	// the registry at once, and the delivery stops waiting for it.
	b.system.Root.Stop(sinkPID)
	full.wait(t, "the end of the wait", 5*time.Second, func(e *MailboxFullEvent) bool { return !e.Waiting })
	a.system.Root.Send(b.remotePID("other"), wrapperspb.String("after"))
	if m, ok := other.next(t, 10*time.Second).(*wrapperspb.StringValue); !ok || m.Value != "after" {
		t.Fatalf("got %v, want the message sent after the flood", m)
	}
	s.release()
}

// Blocking the peer closes its lanes, which waits for the batch in
// progress: a delivery waiting for room lets go, and Block returns.
func TestMailboxWaitLetsGoOfABlockedPeer(t *testing.T) {
	a := startNode(t, nil)
	b := startNode(t, Configure("127.0.0.1", 0, WithMailboxLimit(16)))
	_, _, full, _ := waitingFull(t, a, b, 500)
	done := make(chan struct{})
	go func() {
		defer close(done)
		b.r.Block(a.system.ID)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Block still waits for the delivery held back by the full mailbox")
	}
	full.wait(t, "the end of the wait", 5*time.Second, func(e *MailboxFullEvent) bool { return !e.Waiting })
}

// A peer that goes away while a delivery from it waits: its watchers on
// the node are told AddressTerminated while the actor is still full.
func TestMailboxWaitLetsGoOfAPeerThatStops(t *testing.T) {
	a := startNode(t, nil)
	b := startNode(t, Configure("127.0.0.1", 0, WithMailboxLimit(16)))
	a.spawn("x", idle)
	watcher, box := b.spawnWatcher("watcher")
	x := a.remotePID("x")
	b.watch(watcher, actor.NewPID(x.Address, x.Id))
	s, _, _, _ := waitingFull(t, a, b, 500)

	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_ = a.r.Shutdown(ctx) // its flush cannot finish: b holds it back
	box.expectTerminated(t, x, actor.TerminatedReason_AddressTerminated)
	if s.delivered.Load() != 0 {
		t.Fatal("the sink took messages before its gate opened")
	}
}

// A message for an actor that was told to stop is a dead letter, not a
// message dropped with its mailbox; and a full mailbox of a stopped actor
// no longer makes deliveries wait.
func TestMessagesToAStoppedActorAreDeadLetters(t *testing.T) {
	const limit, first, n = 16, 500, 100
	a := startNode(t, nil)
	b := startNode(t, Configure("127.0.0.1", 0, WithMailboxLimit(limit)))
	dead := record[*DeadLetterEvent](t, b)
	s, sinkPID, _, _ := waitingFull(t, a, b, first)
	mb := mailboxOf(b.actorProcess("sink"))
	held := atTheGate(t, s, mb, limit)
	waits := b.r.MailboxWaits()

	// Held at its gate, the actor cannot stop yet, but it is dead to the
	// registry: the rest of the flood, and what follows, is dead letters.
	b.system.Root.Stop(sinkPID)
	flood(a, b.remotePID("sink"), n)
	want := first - 1 - held + n // all but those taken or in the mailbox at the stop
	eventually(t, "the flood's rest dead-lettered", 10*time.Second, func() bool { return len(dead.all()) >= want })
	for _, d := range dead.all() {
		if d.Reason != ReasonNoSuchProcess || d.PID.GetId() != "sink" {
			t.Fatalf("dead letter %+v, want %q for sink", d, ReasonNoSuchProcess)
		}
	}
	if got := len(dead.all()); got != want {
		t.Fatalf("%d dead letters, want %d", got, want)
	}
	if got := mb.UserMessageCount(); got != held {
		t.Fatalf("the stopped actor's mailbox holds %d, want the %d from before the stop", got, held)
	}
	if w := b.r.MailboxWaits(); w != waits {
		t.Fatalf("%d more waits for a stopped actor", w-waits)
	}
	s.release()
}
