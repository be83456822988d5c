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
	"fmt"
	"log"
	"sync"
	"sync/atomic"
	"time"

	"github.com/courier-go/courier/manager"
)

// patience bounds each wait: generous, since a loaded machine can be slow.
const patience = 30 * time.Second

func main() {
	if err := run(); err != nil {
		log.Fatal(err)
	}
}

func run() error {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()

	var received atomic.Int64
	hello := make(chan manager.Peer, 1)
	a, err := manager.New(
		manager.WithListenAddress("127.0.0.1:0"),
		manager.WithSystemID("node-a"),
		manager.WithHandler(manager.HandlerFunc(func(from manager.Peer, env *manager.Envelope) {
			if string(env.Payload) == "hello again" {
				hello <- from
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
	aRefused := make(chan manager.Event, 16)
	a.Subscribe(printEvents("node-a", manager.EventPeerRefused, aRefused))

	var deadMu sync.Mutex
	dead := map[manager.DeadLetterReason]uint64{}
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
	terminated := make(chan manager.Event, 16)
	b.Subscribe(printEvents("node-b", manager.EventTerminated, terminated))

	// B floods A until Send refuses; A blocks B once traffic flows.
	sendErr := make(chan error, 1)
	go func() {
		for {
			if err := b.Send(ctx, a.Addr(), &manager.Envelope{Target: "worker", Payload: []byte("work")}); err != nil {
				sendErr <- err
				return
			}
		}
	}()
	if err := poll("node-a: 10000 envelopes", func() bool { return received.Load() >= 10000 }); err != nil {
		return err
	}
	fmt.Printf("node-a: blocking node-b after %d envelopes\n", received.Load())
	a.Block(b.SystemID())
	fmt.Printf("node-a: Blocked() = %v\n", a.Blocked())

	// B's connection is cut; it dials again, is refused and gives up.
	if _, err := wait(terminated, "node-b: termination"); err != nil {
		return err
	}
	if _, err := wait(aRefused, "node-a: refusal"); err != nil {
		return err
	}
	err, werr := wait(sendErr, "node-b: Send error")
	if werr != nil {
		return werr
	}
	fmt.Printf("node-b: Send now fails: %v\n", err)
	// The terminated endpoint dead-letters what it held in its own
	// goroutine: wait until that is done and the counters add up.
	var s manager.EndpointStats
	if err := poll("node-b: dead letters", func() bool {
		s, _ = b.Stats(a.Addr())
		deadMu.Lock()
		defer deadMu.Unlock()
		return s.User.Queued == 0 && s.User.Balanced() && dead[manager.ReasonBlocked] == s.User.DeadLetteredAfterEnqueue()
	}); err != nil {
		return err
	}
	fmt.Printf("node-b: dead letters by reason: %v\n", dead)
	fmt.Printf("node-b: enqueued %d = acked %d + dead-lettered %d + queued %d: %v; node-a received %d\n",
		s.User.Enqueued, s.User.Acked, s.User.DeadLetteredAfterEnqueue(), s.User.Queued, s.User.Balanced(), received.Load())

	// Unblock, then restart B: the same system id, a new incarnation.
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
	from, err := wait(hello, "node-a: hello from the new node-b")
	if err != nil {
		return err
	}
	fmt.Printf("node-a: \"hello again\" from %s incarnation %016x (the blocked one was %016x)\n",
		from.SystemID, from.Incarnation, b.Incarnation())
	return nil
}

// printEvents returns a subscriber that prints the events worth seeing
// here, and passes those of type t on to ch.
func printEvents(node string, t manager.EventType, ch chan<- manager.Event) func(manager.Event) {
	return func(e manager.Event) {
		switch e.Type {
		case manager.EventConnected:
			fmt.Printf("%s: event %s %s\n", node, e.Type, e.Address)
		case manager.EventTerminated:
			fmt.Printf("%s: event %s %s, reason %q: %v\n", node, e.Type, e.Address, e.Reason, e.Err)
		case manager.EventPeerRefused, manager.EventReconnecting, manager.EventStreamError:
			fmt.Printf("%s: event %s %s: %v\n", node, e.Type, e.Peer.SystemID, e.Err)
		}
		if e.Type == t {
			select {
			case ch <- e:
			default:
			}
		}
	}
}

// wait returns the next value from ch, or an error after patience.
func wait[T any](ch <-chan T, what string) (T, error) {
	select {
	case v := <-ch:
		return v, nil
	case <-time.After(patience):
		var zero T
		return zero, fmt.Errorf("%s: nothing within %v", what, patience)
	}
}

// poll waits up to patience for cond to hold.
func poll(what string, cond func() bool) error {
	for deadline := time.Now().Add(patience); !cond(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: not within %v", what, patience)
		}
	}
	return nil
}

// closeNode flushes and stops m, giving it 5s.
func closeNode(m *manager.Manager) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := m.Close(ctx); err != nil {
		log.Printf("close %s: %v", m.SystemID(), err)
	}
}
