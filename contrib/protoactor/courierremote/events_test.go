package courierremote

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/asynkron/protoactor-go/remote"
	"github.com/courier-go/courier/manager"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

func TestEndpointConnectedAndTerminatedEvents(t *testing.T) {
	a, b := startNode(t, nil), startNode(t, nil)
	b.spawn("echo", echo)
	connected := record[*remote.EndpointConnectedEvent](t, a)
	terminated := record[*remote.EndpointTerminatedEvent](t, a)
	ours := record[*EndpointEvent](t, a)

	requestString(t, a, b.remotePID("echo"), "hi")
	connected.wait(t, "EndpointConnectedEvent for b", 5*time.Second, func(e *remote.EndpointConnectedEvent) bool {
		return e.Address == b.r.Address()
	})
	ours.wait(t, "courier's connected event", 5*time.Second, func(e *EndpointEvent) bool {
		return e.Type == manager.EventConnected && e.Address == b.r.Address()
	})

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := b.r.Shutdown(ctx); err != nil {
		t.Fatalf("b's Shutdown: %v", err)
	}
	terminated.wait(t, "EndpointTerminatedEvent for b", 10*time.Second, func(e *remote.EndpointTerminatedEvent) bool {
		return e.Address == b.r.Address()
	})
}

func TestEndpointThrottledEvent(t *testing.T) {
	a := startNode(t, nil, manager.WithUserQueue(64))
	b := startNode(t, nil)
	// Held at its gate, the sink takes nothing: its mailbox fills, then
	// courier's delivery on b waits, and a's user queue to b fills.
	s, _ := b.spawnSink("sink", 4, true, 0)
	throttled := record[*EndpointThrottledEvent](t, a)

	sink := b.remotePID("sink")
	for i := range 200 {
		a.system.Root.Send(sink, wrapperspb.Int64(int64(i)))
	}
	e := throttled.wait(t, "throttled event", 5*time.Second, func(e *EndpointThrottledEvent) bool { return e.Level == 1 })
	if e.Address != b.r.Address() || e.QueueCap != 64 || e.QueueLen < 64*8/10 {
		t.Fatalf("throttled event %+v, want b's address, capacity 64 and a length at the high watermark", e)
	}
	s.release()
	throttled.wait(t, "throttle cleared", 5*time.Second, func(e *EndpointThrottledEvent) bool { return e.Level == 0 })
}

func TestCourierDeadLettersReachTheEventStream(t *testing.T) {
	a := startNode(t, nil, manager.WithUserQueue(16)) // DropNewest, the default
	b := startNode(t, nil)
	s, _ := b.spawnSink("sink", 4, true, 0)
	ours := record[*DeadLetterEvent](t, a)
	theirs := record[*actor.DeadLetterEvent](t, a)

	const n = 200
	sink := b.remotePID("sink")
	for i := range n {
		a.system.Root.Send(sink, wrapperspb.Int64(int64(i)))
	}
	// Queue-full dead letters are made by Send itself: all are in.
	var dropped []int64
	for _, e := range ours.all() {
		if e.Reason != manager.ReasonQueueFull.String() {
			t.Fatalf("dead letter with reason %q, want %q", e.Reason, manager.ReasonQueueFull)
		}
		v, ok := e.Message.(*wrapperspb.Int64Value)
		if !ok || e.PID.GetId() != "sink" || e.PID.GetAddress() != b.r.Address() {
			t.Fatalf("dead letter %v for %v, want an Int64Value for the sink", e.Message, e.PID)
		}
		dropped = append(dropped, v.Value)
	}
	if len(dropped) < n-64 {
		t.Fatalf("%d queue-full dead letters of %d sent into a queue of 16 held by a gated sink", len(dropped), n)
	}

	s.release()
	eventually(t, "everything not dropped delivered", 10*time.Second, func() bool {
		return s.delivered.Load() == int64(n-len(dropped))
	})
	// Every message was either delivered once or dead-lettered once.
	for i := range int64(n) {
		d := slices.Contains(dropped, i)
		if got := s.got(i); (d && got != 0) || (!d && got != 1) {
			t.Fatalf("message %d: dead-lettered %v, delivered %d times", i, d, got)
		}
	}
	// courier's count, the adapter's events and the actor system's
	// dead letters agree.
	var courier int
	for _, e := range ours.all() {
		if courierReasons[e.Reason] {
			courier++
		}
	}
	if dl := a.r.Manager().DeadLetters(); dl != uint64(courier) || courier != len(dropped) {
		t.Fatalf("courier counted %d dead letters; %d DeadLetterEvents with courier's reasons; %d dropped", dl, courier, len(dropped))
	}
	sys := 0
	for _, e := range theirs.all() {
		if _, ok := e.Message.(*wrapperspb.Int64Value); ok && e.PID.GetId() == "sink" {
			sys++
		}
	}
	if sys != len(dropped) {
		t.Fatalf("%d actor.DeadLetterEvents for %d courier dead letters", sys, len(dropped))
	}
}

func TestBlockList(t *testing.T) {
	a, b := startNode(t, nil), startNode(t, nil)
	b.spawn("echo", echo)
	ours := record[*DeadLetterEvent](t, a)
	theirs := record[*actor.DeadLetterEvent](t, a)
	ended := record[*EndpointEvent](t, a)

	a.r.Block(b.system.ID)
	if !slices.Equal(a.r.Blocked(), []string{b.system.ID}) || !a.r.IsBlocked(b.system.ID) {
		t.Fatalf("Blocked() = %v, IsBlocked = %v", a.r.Blocked(), a.r.IsBlocked(b.system.ID))
	}
	a.system.Root.Send(b.remotePID("echo"), wrapperspb.String("x"))
	dl := ours.wait(t, "blocked dead letter", 5*time.Second, func(*DeadLetterEvent) bool { return true })
	if dl.Reason != manager.ReasonBlocked.String() || dl.PID.GetId() != "echo" {
		t.Fatalf("dead letter %q for %v, want %q", dl.Reason, dl.PID, manager.ReasonBlocked)
	}
	theirs.wait(t, "actor.DeadLetterEvent", 5*time.Second, func(e *actor.DeadLetterEvent) bool {
		m, ok := e.Message.(*wrapperspb.StringValue)
		return ok && m.Value == "x"
	})
	// The endpoint ended, blocked; until courier replaces it, it refuses
	// sends, which are dead letters with the same reason.
	ended.wait(t, "the endpoint's end", 5*time.Second, func(e *EndpointEvent) bool {
		return e.Type == manager.EventTerminated && e.Address == b.r.Address() && e.Reason == manager.ReasonBlocked.String()
	})
	// Every later send fails too, promptly.
	for range 3 {
		_, err := a.system.Root.RequestFuture(b.remotePID("echo"), wrapperspb.String("y"), 20*time.Second).Result()
		if !errors.Is(err, actor.ErrDeadLetter) {
			t.Fatalf("request to a blocked system: %v, want actor.ErrDeadLetter", err)
		}
	}
	for _, e := range ours.all() {
		if e.Reason != manager.ReasonBlocked.String() {
			t.Fatalf("dead letter with reason %q, want %q", e.Reason, manager.ReasonBlocked)
		}
	}

	a.r.Unblock(b.system.ID)
	if len(a.r.Blocked()) != 0 || a.r.IsBlocked(b.system.ID) {
		t.Fatalf("after Unblock: Blocked() = %v, IsBlocked = %v", a.r.Blocked(), a.r.IsBlocked(b.system.ID))
	}
	// b never got through, so nothing of it is quarantined: a reaches it
	// again once its failed endpoint is replaced.
	eventually(t, "b reachable after Unblock", 10*time.Second, func() bool {
		res, err := a.system.Root.RequestFuture(b.remotePID("echo"), wrapperspb.String("z"), 5*time.Second).Result()
		return err == nil && res.(*wrapperspb.StringValue).GetValue() != ""
	})
}
