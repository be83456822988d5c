package manager

import (
	"context"
	"errors"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/courier-go/courier/batch"
	"github.com/courier-go/courier/internal/testutil"
)

// TestCloseWhileSending closes the sending node while many goroutines send
// to a peer on both lanes: Close returns, nothing panics, no goroutine is
// left behind (goleak), and every envelope is accounted for: delivered,
// dead-lettered, or refused at Send.
func TestCloseWhileSending(t *testing.T) {
	t.Parallel()
	var delivered atomic.Int64
	b := newNode(t, HandlerFunc(func(Peer, *Envelope) { delivered.Add(1) }))
	var dead atomic.Int64
	a, err := New(WithListenAddress("127.0.0.1:0"), WithHandler(newCollector()), WithUserQueue(256),
		WithDeadLetterHandler(func(DeadLetter) { dead.Add(1) }))
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	var sent, refused atomic.Int64
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for s := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				env := &Envelope{Target: "t", Lane: batch.Lane(s % 2), Payload: make([]byte, 100)}
				sent.Add(1)
				if err := a.Send(context.Background(), b.Addr(), env); err != nil {
					if !errors.Is(err, ErrClosed) {
						t.Errorf("Send: %v", err)
					}
					refused.Add(1)
					return // a closing node's callers stop sending
				}
				runtime.Gosched()
			}
		}()
	}
	// Close while envelopes are in flight.
	testutil.Eventually(t, "traffic to flow", patience, func() bool { return delivered.Load() > 100 })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := a.Close(ctx); err != nil {
		t.Fatal(err)
	}
	close(stop)
	wg.Wait()
	if err := a.Close(ctx); err != nil { // idempotent
		t.Fatal(err)
	}
	// Deliveries that were in flight land within the flush; give the
	// receiver a moment to count the last frame.
	defer func() {
		t.Logf("sent %d: delivered %d, dead-lettered %d, refused %d", sent.Load(), delivered.Load(), dead.Load(), refused.Load())
	}()
	testutil.Eventually(t, "sent = delivered + dead-lettered + refused", 5*time.Second, func() bool {
		return delivered.Load()+dead.Load()+refused.Load() == sent.Load()
	})
	if err := a.Send(context.Background(), b.Addr(), &Envelope{Target: "t"}); !errors.Is(err, ErrClosed) {
		t.Fatalf("Send after Close = %v", err)
	}
}

func TestCloseFlushesQueued(t *testing.T) {
	t.Parallel()
	recv := newCollector()
	b := newNode(t, recv)
	a, err := New(WithHandler(newCollector()), WithOverflowPolicy(Block))
	if err != nil {
		t.Fatal(err)
	}
	const n = 3000
	for range n {
		if err := a.Send(context.Background(), b.Addr(), &Envelope{Target: "t", Payload: make([]byte, 64)}); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := a.Close(ctx); err != nil {
		t.Fatal(err)
	}
	recv.wait(t, n, time.Second) // everything was delivered before Close returned
	if a.DeadLetters() != 0 {
		t.Fatalf("%d dead letters", a.DeadLetters())
	}
}

// TestCloseAcknowledgesDelivered: a receiver that closes right after a
// delivery acknowledges it in its goodbye, so the sender counts it acked
// instead of dead-lettering it at its own Close.
func TestCloseAcknowledgesDelivered(t *testing.T) {
	t.Parallel()
	for i := range 5 {
		recv := newCollector()
		a := newNode(t, newCollector())
		b := newNode(t, recv)
		if err := a.Send(context.Background(), b.Addr(), &Envelope{Target: "x"}); err != nil {
			t.Fatal(err)
		}
		recv.wait(t, 1, 20*time.Second)
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		if err := b.Close(ctx); err != nil {
			t.Fatal(err)
		}
		if err := a.Close(ctx); err != nil {
			t.Fatal(err)
		}
		cancel()
		s, _ := a.Stats(b.Addr())
		if s.User.Acked != 1 || s.User.DeadLetteredAfterEnqueue() != 0 {
			t.Fatalf("round %d: acked %d, dead-lettered %v", i, s.User.Acked, s.User.DeadLettered)
		}
	}
}

// TestCloseGivesUpOnStalledPeer: a peer whose handler never returns stops
// reading, so its flow-control window stays shut and the sender's writer
// waits inside gRPC. Close must still return once its ctx ends, and account
// for every envelope: acknowledged, or dead-lettered with reason shutdown.
func TestCloseGivesUpOnStalledPeer(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	var first sync.Once
	arrived := make(chan struct{})
	b := newNode(t, HandlerFunc(func(Peer, *Envelope) {
		first.Do(func() { close(arrived) })
		<-release
	}), WithFlowControlWindows(1<<20, 4<<20))
	t.Cleanup(func() { close(release) }) // runs before b's Close
	a, err := New(WithHandler(newCollector()))
	if err != nil {
		t.Fatal(err)
	}
	// 8 MiB of payload: more than b's windows (1 MiB for the stream) let
	// through while nothing reads.
	payload := make([]byte, 64<<10)
	for range 128 {
		if err := a.Send(context.Background(), b.Addr(), &Envelope{Target: "t", Payload: payload}); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case <-arrived:
	case <-time.After(20 * time.Second):
		t.Fatal("nothing arrived")
	}
	closed := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		defer cancel()
		closed <- a.Close(ctx)
	}()
	select {
	case <-closed:
	case <-time.After(20 * time.Second):
		t.Fatal("Close did not return after its context ended")
	}
	s, _ := a.Stats(b.Addr())
	if !s.User.Balanced() || s.User.Queued != 0 {
		t.Fatalf("enqueued %d, acked %d, dead-lettered %v, queued %d", s.User.Enqueued, s.User.Acked, s.User.DeadLettered, s.User.Queued)
	}
	if s.User.DeadLettered[ReasonShutdown] == 0 {
		t.Fatalf("nothing dead-lettered for shutdown: %v", s.User.DeadLettered)
	}
}
