package manager

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/courier-go/courier/internal/testutil"
)

// TestReconnectMaxElapsed: an unreachable peer's endpoint gives up once it
// has spent Backoff.MaxElapsed reconnecting, however many attempts remain.
func TestReconnectMaxElapsed(t *testing.T) {
	t.Parallel()
	addr := closedAddr(t)
	var dead deadLetters
	watcher := newCollector()
	a := newNode(t, watcher, WithDeadLetterHandler(dead.add),
		WithReconnect(Backoff{Initial: 10 * time.Millisecond, Max: 50 * time.Millisecond, Multiplier: 2, MaxAttempts: 1 << 20, MaxElapsed: 300 * time.Millisecond}))
	log := watch(a)
	start := time.Now()
	if err := a.Watch(context.Background(), addr, "w", "p"); err != nil {
		t.Fatal(err)
	}
	if err := a.Send(context.Background(), addr, &Envelope{Target: "t"}); err != nil {
		t.Fatal(err)
	}
	ev := log.waitFor(t, "terminated", 3*time.Second, func(e Event) bool { return e.Type == EventTerminated })
	if took := ev.Time.Sub(start); took > 3*time.Second {
		t.Fatalf("gave up after %v, want about 300ms", took)
	}
	if ev.Reason != ReasonEndpointTerminated.String() {
		t.Errorf("terminated with reason %q", ev.Reason)
	}
	testutil.Eventually(t, "the watcher to hear Terminated", patience, func() bool { return terminatedWatch(watcher, "w", "p") })
	testutil.Eventually(t, "the envelope to be dead-lettered", patience, func() bool { return dead.snapshot()["endpoint terminated"] == 1 })
	s, _ := a.Stats(addr)
	checkBalanced(t, s)
}

func TestBackoffValidated(t *testing.T) {
	if d := DefaultBackoff().MaxElapsed; d != 10*time.Second {
		t.Errorf("default MaxElapsed %v, want 10s", d)
	}
	b := DefaultBackoff()
	b.MaxElapsed = -time.Second
	if _, err := New(WithHandler(newCollector()), WithReconnect(b)); !errors.Is(err, ErrInvalidOption) {
		t.Fatalf("New with a negative MaxElapsed = %v, want ErrInvalidOption", err)
	}
}
