package courierremote

import (
	"errors"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// TestLocalCacheFollowsTheRegistry: the receiving node caches the actor
// its messages go to, and the cache never outlives the actor. Messages to
// an actor that stopped are dead letters (no such process), and an actor
// spawned again under the name gets the next ones, not its predecessor.
func TestLocalCacheFollowsTheRegistry(t *testing.T) {
	if deadFlag == noDeadFlag {
		t.Fatal("ActorProcess has no int32 field dead: the local cache is off with this protoactor-go")
	}
	a, b := startNode(t, nil), startNode(t, nil)
	ours := record[*DeadLetterEvent](t, b)
	first := newInbox()
	pid := b.spawn("worker", first.receive)
	target := b.remotePID("worker")

	for _, s := range []string{"one", "two"} {
		a.system.Root.Send(target, wrapperspb.String(s))
		if m, ok := first.next(t, 5*time.Second).(*wrapperspb.StringValue); !ok || m.Value != s {
			t.Fatalf("worker got %v, want %q", m, s)
		}
	}
	if _, cached := b.r.locals.get(b.system.ProcessRegistry, "worker"); !cached {
		t.Fatal("the worker is not in the registry")
	}
	if err := b.system.Root.StopFuture(pid).Wait(); err != nil {
		t.Fatal(err)
	}

	a.system.Root.Send(target, wrapperspb.String("to the stopped one"))
	dl := ours.wait(t, "no-such-process dead letter", 5*time.Second, func(*DeadLetterEvent) bool { return true })
	if dl.Reason != ReasonNoSuchProcess || !errors.Is(dl.Err, ErrNoSuchProcess) || dl.PID.GetId() != "worker" {
		t.Fatalf("dead letter %q for %v, err %v; want %q for worker", dl.Reason, dl.PID, dl.Err, ReasonNoSuchProcess)
	}
	select {
	case m := <-first.ch:
		t.Fatalf("the stopped worker received %v", m)
	default:
	}

	second := newInbox()
	b.spawn("worker", second.receive)
	a.system.Root.Send(target, wrapperspb.String("three"))
	if m, ok := second.next(t, 5*time.Second).(*wrapperspb.StringValue); !ok || m.Value != "three" {
		t.Fatalf("the new worker got %v, want three", m)
	}
	if got, ok := b.r.locals.get(b.system.ProcessRegistry, "worker"); !ok || got == actor.Process(nil) {
		t.Fatal("the new worker is not found")
	}
}
