package manager

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/courier-go/courier/internal/testutil"
)

// parkProbe is a context that records when Done is first asked for: a Send
// under Block asks only when its queue is full and it is about to wait, so
// once it has, the Send is waiting, or returns only when its queue has room.
type parkProbe struct {
	context.Context
	asked atomic.Bool
}

func (p *parkProbe) Done() <-chan struct{} {
	p.asked.Store(true)
	return p.Context.Done()
}

// stalled returns a sender whose peer's handler is stuck until the returned
// function is called, with the user lane already filled: the queue holds
// capacity envelopes the peer has not acknowledged.
func stalled(t *testing.T, capacity int, opts ...Option) (a, b *Manager, h *gatedHandler, release func()) {
	t.Helper()
	h = newGated()
	a = newNode(t, newCollector(), append([]Option{WithUserQueue(capacity)}, opts...)...)
	b = newNode(t, h)
	var once sync.Once
	release = func() { once.Do(func() { close(h.gate) }) }
	t.Cleanup(release)
	// Fill the peer's stream windows and the queue: send until the queue
	// stays full.
	payload := make([]byte, 4096)
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		s, ok := a.Stats(b.Addr())
		if ok && s.User.Queued == capacity {
			return a, b, h, release
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Millisecond)
		err := a.Send(ctx, b.Addr(), &Envelope{Target: "u", Payload: payload})
		cancel()
		if err != nil && !errors.Is(err, ErrQueueFull) && !errors.Is(err, context.DeadlineExceeded) {
			t.Fatal(err)
		}
	}
	t.Fatal("the user queue never filled")
	return
}

func TestOverflowDropNewest(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var dead []DeadLetter
	a, b, _, release := stalled(t, 64, WithDeadLetterHandler(func(d DeadLetter) {
		mu.Lock()
		dead = append(dead, d)
		mu.Unlock()
	}))
	before := len(dead)
	for i := range 10 {
		if err := a.Send(context.Background(), b.Addr(), &Envelope{Target: "dropped", RequestID: uint64(i)}); err != nil {
			t.Fatalf("DropNewest Send = %v, want nil", err)
		}
	}
	mu.Lock()
	got := dead[before:]
	mu.Unlock()
	if len(got) != 10 {
		t.Fatalf("%d dead letters, want 10", len(got))
	}
	for i, d := range got {
		if d.Reason != ReasonQueueFull || d.Envelope.Target != "dropped" || d.Envelope.RequestID != uint64(i) || d.Address != b.Addr() {
			t.Fatalf("dead letter %d: %+v", i, d)
		}
	}
	release()
	checkBalanced(t, quiet(t, a, b.Addr()))
}

func TestOverflowFail(t *testing.T) {
	t.Parallel()
	a, b, _, release := stalled(t, 64, WithOverflowPolicy(Fail))
	before, _ := a.Stats(b.Addr())
	err := a.Send(context.Background(), b.Addr(), &Envelope{Target: "refused"})
	if !errors.Is(err, ErrQueueFull) {
		t.Fatalf("Fail Send = %v, want ErrQueueFull", err)
	}
	after, _ := a.Stats(b.Addr())
	if after.User.Refused != before.User.Refused+1 || after.User.Enqueued != before.User.Enqueued {
		t.Fatalf("refused %d→%d, enqueued %d→%d", before.User.Refused, after.User.Refused, before.User.Enqueued, after.User.Enqueued)
	}
	if a.DeadLetters() != 0 {
		t.Fatalf("%d dead letters under Fail", a.DeadLetters())
	}
	release()
	checkBalanced(t, quiet(t, a, b.Addr()))
}

func TestOverflowBlock(t *testing.T) {
	t.Parallel()
	a, b, h, release := stalled(t, 64, WithOverflowPolicy(Block))
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := a.Send(ctx, b.Addr(), &Envelope{Target: "late"}); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Block Send on a full queue = %v, want DeadlineExceeded", err)
	}
	// The queue stays full until release: the peer's handler is stuck. So
	// a Send that has begun to wait must still be waiting now.
	probe := &parkProbe{Context: context.Background()}
	done := make(chan error, 1)
	go func() { done <- a.Send(probe, b.Addr(), &Envelope{Target: "waits"}) }()
	testutil.Eventually(t, "the Send to wait for room", patience, probe.asked.Load)
	select {
	case err := <-done:
		t.Fatalf("Block Send returned %v while the queue is full", err)
	default:
	}
	if s, _ := a.Stats(b.Addr()); s.User.Queued != s.User.Capacity {
		t.Fatalf("queue holds %d of %d while the peer is stuck", s.User.Queued, s.User.Capacity)
	}
	release()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Block Send still waits after the peer caught up")
	}
	s := quiet(t, a, b.Addr())
	checkBalanced(t, s)
	if s.User.DeadLettered[ReasonQueueFull] != 0 || a.DeadLetters() != 0 {
		t.Fatalf("dead letters under Block: %v", s.User.DeadLettered)
	}
	if n := h.user.Load(); n != int64(s.User.Acked) {
		t.Fatalf("handler got %d, acked %d", n, s.User.Acked)
	}
}

func TestThrottledEventHysteresis(t *testing.T) {
	t.Parallel()
	h := newGated()
	a := newNode(t, newCollector(), WithUserQueue(64), WithThrottleWatermarks(0.75, 0.25), WithOverflowPolicy(Fail))
	log := watch(a)
	b := newNode(t, h)
	defer func() {
		select {
		case <-h.gate:
		default:
			close(h.gate)
		}
	}()
	payload := make([]byte, 4096)
	for i := 0; i < 10000; i++ {
		if err := a.Send(context.Background(), b.Addr(), &Envelope{Target: "u", Payload: payload}); errors.Is(err, ErrQueueFull) {
			break
		}
	}
	on := log.waitFor(t, "throttled", 5*time.Second, func(e Event) bool { return e.Type == EventThrottled && e.Level == 1 })
	if on.QueueLen < 48 || on.QueueCap != 64 || on.Address != b.Addr() {
		t.Fatalf("throttled event %+v: want queue length >= 48 of 64", on)
	}
	if s, _ := a.Stats(b.Addr()); s.Throttled != 1 {
		t.Fatalf("stats say throttled %d", s.Throttled)
	}
	close(h.gate)
	off := log.waitFor(t, "throttle cleared", 10*time.Second, func(e Event) bool { return e.Type == EventThrottled && e.Level == 0 })
	if off.QueueLen > 16 {
		t.Fatalf("throttle cleared at queue length %d, want <= 16", off.QueueLen)
	}
	if n := log.count(func(e Event) bool { return e.Type == EventThrottled && e.Level == 1 }); n != 1 {
		t.Fatalf("%d throttled events for one episode, want 1", n)
	}
	checkBalanced(t, quiet(t, a, b.Addr()))
}

func TestSendRefusals(t *testing.T) {
	t.Parallel()
	a := newNode(t, newCollector(), WithMaxFrameBytes(64<<10))
	b := newNode(t, newCollector())
	cases := []struct {
		env  Envelope
		want error
	}{
		{Envelope{}, ErrInvalidEnvelope},
		{Envelope{Target: "t", Lane: 7}, ErrInvalidEnvelope},
		{Envelope{Target: "t", Payload: make([]byte, 65<<10)}, ErrTooLarge},
	}
	for _, c := range cases {
		if err := a.Send(context.Background(), b.Addr(), &c.env); !errors.Is(err, c.want) {
			t.Errorf("Send(%+v) = %v, want %v", c.env.Target, err, c.want)
		}
	}
	if err := a.Send(context.Background(), ClientAddressPrefix+"nobody:1", &Envelope{Target: "t"}); !errors.Is(err, ErrUnknownClient) {
		t.Errorf("Send to an unknown client = %v", err)
	}
}
