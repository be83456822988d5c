// Command blocklist shows Block and Unblock. Node B floods node A; while the
// traffic flows A blocks B's system id. A closes B's streams at once and
// refuses its handshakes; B's endpoint for A terminates with reason
// "blocked" and dead-letters what it still held, and B's statistics still
// balance: every envelope was delivered or dead-lettered. After Unblock the
// old incarnation of B stays quarantined, but a freshly started node with
// the same system id (a new incarnation) gets through again.
//
// Run it with:
//
//	go run ./examples/blocklist
package main

import (
	"context"
	"errors"
	"fmt"
	"log"
	"sync"
	"sync/atomic"
	"time"

	"github.com/courier-go/courier/manager"
)

func main() {
	if err := run(); err != nil {
		log.Fatal(err)
	}
}

func run() error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	var received atomic.Int64
	hello := make(chan string, 1)
	a, err := manager.New(
		manager.WithListenAddress("127.0.0.1:0"),
		manager.WithSystemID("node-a"),
		manager.WithHandler(manager.HandlerFunc(func(from manager.Peer, env *manager.Envelope) {
			if string(env.Payload) == "hello again" {
				hello <- fmt.Sprintf("%s (incarnation %016x)", from.SystemID, from.Incarnation)
				return
			}
			received.Add(1)
		})),
	)
	if err != nil {
		return err
	}
	if err := a.Start(ctx); err != nil {
		return err
	}
	defer closeNode(a)
	aRefused := make(chan struct{}, 1)
	a.Subscribe(func(e manager.Event) {
		printEvents("node-a")(e)
		if e.Type == manager.EventPeerRefused {
			select {
			case aRefused <- struct{}{}:
			default:
			}
		}
	})

	var deadMu sync.Mutex
	dead := map[manager.DeadLetterReason]int{}
	newB := func() (*manager.Manager, error) {
		return manager.New(
			manager.WithListenAddress("127.0.0.1:0"),
			manager.WithSystemID("node-b"),
			manager.WithOverflowPolicy(manager.Block), // no "queue full" drops
			manager.WithDeadLetterHandler(func(d manager.DeadLetter) {
				deadMu.Lock()
				dead[d.Reason]++
				deadMu.Unlock()
			}),
			manager.WithHandler(manager.HandlerFunc(func(manager.Peer, *manager.Envelope) {})),
		)
	}
	b, err := newB()
	if err != nil {
		return err
	}
	if err := b.Start(ctx); err != nil {
		return err
	}
	defer closeNode(b)
	terminated := make(chan struct{})
	var once sync.Once
	b.Subscribe(func(e manager.Event) {
		printEvents("node-b")(e)
		if e.Type == manager.EventTerminated {
			once.Do(func() { close(terminated) })
		}
	})

	// B floods A until Send refuses.
	payload := []byte("some work")
	sendErr := make(chan error, 1)
	go func() {
		for {
			if err := b.Send(ctx, a.Addr(), &manager.Envelope{Target: "worker", Payload: payload}); err != nil {
				sendErr <- err
				return
			}
		}
	}()
	for deadline := time.Now().Add(5 * time.Second); received.Load() < 10000; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			return fmt.Errorf("node-a got only %d envelopes in 5s", received.Load())
		}
	}
	fmt.Printf("node-a: blocking node-b after %d envelopes\n", received.Load())
	a.Block(b.SystemID())
	fmt.Printf("node-a: Blocked() = %v\n", a.Blocked())

	// B's endpoint reconnects, is refused and terminates; A refuses it.
	for _, w := range []struct {
		ch   <-chan struct{}
		what string
	}{{terminated, "node-b's endpoint did not terminate"}, {aRefused, "node-a refused nothing"}} {
		select {
		case <-w.ch:
		case <-time.After(5 * time.Second):
			return errors.New(w.what + " within 5s")
		}
	}
	select {
	case err := <-sendErr:
		fmt.Printf("node-b: Send now fails: %v\n", err)
	case <-time.After(5 * time.Second):
		return errors.New("node-b's Send still succeeds 5s after the block")
	}
	// The terminated endpoint dead-letters what it held in its own
	// goroutine: wait until that is done and the counters add up.
	var s manager.EndpointStats
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(time.Millisecond) {
		s, _ = b.Stats(a.Addr())
		deadMu.Lock()
		n := 0
		for _, c := range dead {
			n += c
		}
		deadMu.Unlock()
		if s.User.Queued == 0 && s.User.Balanced() && uint64(n) == s.User.DeadLetteredAfterEnqueue() {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("node-b still holds %d envelopes 5s after its endpoint terminated", s.User.Queued)
		}
	}
	deadMu.Lock()
	fmt.Printf("node-b: dead letters by reason: %v\n", dead)
	deadMu.Unlock()
	fmt.Printf("node-b: enqueued %d = acked %d + dead-lettered %d + queued %d: %v\n",
		s.User.Enqueued, s.User.Acked, s.User.DeadLetteredAfterEnqueue(), s.User.Queued, s.User.Balanced())
	fmt.Printf("node-a: received %d in all\n", received.Load())

	// Unblock, then restart B: same system id, new incarnation.
	a.Unblock("node-b")
	fmt.Printf("node-a: Unblock(\"node-b\"); Blocked() = %v\n", a.Blocked())
	closeNode(b)
	b2, err := newB()
	if err != nil {
		return err
	}
	if err := b2.Start(ctx); err != nil {
		return err
	}
	defer closeNode(b2)
	if err := b2.Send(ctx, a.Addr(), &manager.Envelope{Target: "worker", Payload: []byte("hello again")}); err != nil {
		return err
	}
	select {
	case who := <-hello:
		fmt.Printf("node-a: got \"hello again\" from %s, old incarnation was %016x\n", who, b.Incarnation())
	case <-time.After(5 * time.Second):
		return errors.New("the restarted node-b did not get through within 5s")
	}
	return nil
}

// printEvents returns a subscriber that prints the events worth seeing here.
func printEvents(node string) func(manager.Event) {
	return func(e manager.Event) {
		switch e.Type {
		case manager.EventConnected:
			fmt.Printf("%s: event %s %s\n", node, e.Type, e.Address)
		case manager.EventTerminated:
			fmt.Printf("%s: event %s %s, reason %q: %v\n", node, e.Type, e.Address, e.Reason, e.Err)
		case manager.EventPeerRefused, manager.EventReconnecting, manager.EventStreamError:
			fmt.Printf("%s: event %s %s: %v\n", node, e.Type, e.Peer.SystemID, e.Err)
		}
	}
}

// closeNode flushes and stops m, giving it 5s.
func closeNode(m *manager.Manager) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := m.Close(ctx); err != nil {
		log.Printf("close %s: %v", m.SystemID(), err)
	}
}
