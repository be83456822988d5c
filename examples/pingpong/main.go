// Command pingpong shows two courier nodes talking to each other: node A
// sends "ping" to the process "ponger" on node B a thousand times, one round
// trip at a time, and B's handler answers each with "pong", sent to the
// address its handler is given in from.Address. Both nodes listen, so each
// advertises its listen address and replies travel over B's own connection
// to A. At the end it prints the round trips, the time they took, and the
// statistics of each node's endpoint for the other.
//
// Run it with:
//
//	go run ./examples/pingpong
package main

import (
	"context"
	"fmt"
	"log"
	"time"

	"github.com/courier-go/courier/manager"
)

// patience bounds each wait: generous, since a loaded machine can be slow.
const patience = 30 * time.Second

const rounds = 1000

func main() {
	if err := run(); err != nil {
		log.Fatal(err)
	}
}

func run() error {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()

	// Node B answers every ping with a pong to the sender's node.
	var b *manager.Manager
	b, err := manager.New(
		manager.WithListenAddress("127.0.0.1:0"),
		manager.WithSystemID("node-b"),
		manager.WithHandler(manager.HandlerFunc(func(from manager.Peer, env *manager.Envelope) {
			pong := &manager.Envelope{
				Target:    env.SenderID,
				SenderID:  env.Target,
				RequestID: env.RequestID,
				TypeName:  "example.Pong",
				Payload:   []byte("pong"),
			}
			if err := b.Send(ctx, from.Address, pong); err != nil { // Send copies pong
				log.Printf("node-b: reply to %s: %v", from.Address, err)
			}
		})),
	)
	if err != nil {
		return err
	}
	if err := b.Start(ctx); err != nil {
		return err
	}
	defer closeNode(b)

	// Node A hands the request id of every pong to the main goroutine; env
	// itself is only valid during the call.
	pongs := make(chan uint64, rounds)
	a, err := manager.New(
		manager.WithListenAddress("127.0.0.1:0"),
		manager.WithSystemID("node-a"),
		manager.WithHandler(manager.HandlerFunc(func(_ manager.Peer, env *manager.Envelope) {
			if string(env.Payload) == "pong" {
				pongs <- env.RequestID
			}
		})),
	)
	if err != nil {
		return err
	}
	if err := a.Start(ctx); err != nil {
		return err
	}
	defer closeNode(a)
	fmt.Printf("node-a listens on %s, node-b on %s\n", a.Addr(), b.Addr())

	ping := &manager.Envelope{Target: "ponger", SenderID: "pinger", TypeName: "example.Ping", Payload: []byte("ping")}
	// One timer for every round's wait, not a new one per round.
	timeout := time.NewTimer(patience)
	defer timeout.Stop()
	start := time.Now()
	var first time.Duration
	for i := uint64(1); i <= rounds; i++ {
		ping.RequestID = i
		if err := a.Send(ctx, b.Addr(), ping); err != nil {
			return fmt.Errorf("ping %d: %w", i, err)
		}
		if !timeout.Stop() {
			// Fired unread: drop the tick, so that this round does not see
			// the last round's (before Go 1.23's timers, Stop left it).
			select {
			case <-timeout.C:
			default:
			}
		}
		timeout.Reset(patience)
		select {
		case id := <-pongs:
			if id != i {
				return fmt.Errorf("pong %d arrived for ping %d", id, i)
			}
		case <-timeout.C:
			return fmt.Errorf("no pong for ping %d within %v", i, patience)
		}
		if i == 1 {
			first = time.Since(start) // includes dialing and both handshakes
		}
	}
	elapsed := time.Since(start)
	fmt.Printf("%d round trips in %v (first, with connection set-up: %v; then %v per round trip)\n",
		rounds, elapsed.Round(time.Microsecond), first.Round(time.Microsecond),
		((elapsed - first) / (rounds - 1)).Round(time.Microsecond))

	// Let the last acknowledgements arrive so that the counters settle.
	settle(a, b.Addr())
	settle(b, a.Addr())
	for _, n := range []struct {
		m    *manager.Manager
		peer string
	}{{a, b.Addr()}, {b, a.Addr()}} {
		s, ok := n.m.Stats(n.peer)
		if !ok {
			return fmt.Errorf("%s has no endpoint for %s", n.m.SystemID(), n.peer)
		}
		fmt.Printf("%s -> %s: %s\n", n.m.SystemID(), s.Peer.SystemID, summary(s))
	}
	return nil
}

// settle waits, up to patience, until every envelope m sent to peer is
// acknowledged.
func settle(m *manager.Manager, peer string) {
	deadline := time.Now().Add(patience)
	for time.Now().Before(deadline) {
		if s, ok := m.Stats(peer); ok && s.User.Queued == 0 && s.User.Balanced() {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func summary(s manager.EndpointStats) string {
	u := s.User
	return fmt.Sprintf("%s; user lane: enqueued %d, sent %d, acked %d, dead-lettered %d, queued %d; %d frames, %d bytes out",
		s.State, u.Enqueued, u.Sent, u.Acked, u.DeadLetteredAfterEnqueue()+u.DeadLettered[manager.ReasonQueueFull],
		u.Queued, u.Batches, u.BytesOut)
}

// closeNode flushes and stops m, giving it 5s.
func closeNode(m *manager.Manager) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := m.Close(ctx); err != nil {
		log.Printf("close %s: %v", m.SystemID(), err)
	}
}
