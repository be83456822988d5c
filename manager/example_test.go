package manager_test

import (
	"context"
	"fmt"
	"time"

	"github.com/courier-go/courier/batch"
	"github.com/courier-go/courier/manager"
)

// Two nodes on loopback: one listens, the other sends it a message and gets
// the answer back.
func Example() {
	ctx := context.Background()
	answers := make(chan string, 1)

	var server *manager.Manager
	server, err := manager.New(
		manager.WithListenAddress("127.0.0.1:0"),
		manager.WithSystemID("server"),
		manager.WithHandler(manager.HandlerFunc(func(from manager.Peer, env *manager.Envelope) {
			reply := &manager.Envelope{Target: env.SenderID, Payload: append([]byte("pong to "), env.Payload...)}
			_ = server.Send(ctx, from.Address, reply) // Send copies the envelope
		})),
	)
	if err != nil {
		panic(err)
	}
	if err := server.Start(ctx); err != nil {
		panic(err)
	}

	// A client-only node: no listener; the server answers over the
	// connection the client opens.
	client, err := manager.New(
		manager.WithSystemID("client"),
		manager.WithHandler(manager.HandlerFunc(func(_ manager.Peer, env *manager.Envelope) {
			answers <- string(env.Payload) // copy: env is valid only during Deliver
		})),
	)
	if err != nil {
		panic(err)
	}

	ping := &manager.Envelope{Target: "pinger", SenderID: "client/main", TypeName: "example.Ping", Payload: []byte("ping")}
	if err := client.Send(ctx, server.Addr(), ping); err != nil {
		panic(err)
	}
	fmt.Println(<-answers)

	closeCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	_ = client.Close(closeCtx)
	_ = server.Close(closeCtx)
	// Output: pong to ping
}

// New validates every option at once and reports each mistake.
func ExampleNew_invalidOptions() {
	_, err := manager.New(
		manager.WithUserQueue(1000), // not a power of two
		manager.WithThrottleWatermarks(0.5, 0.9),
	)
	fmt.Println(err)
	// Output:
	// manager: invalid option: WithUserQueue(1000): want a power of two in [2, 1<<24]
	// WithThrottleWatermarks(0.5, 0.9): want 0 < low < high <= 1
	// WithHandler: a handler is required
}

// Events tell what happens to endpoints: here, the connection coming up.
func ExampleManager_Subscribe() {
	ctx := context.Background()
	server, _ := manager.New(manager.WithListenAddress("127.0.0.1:0"),
		manager.WithHandler(manager.HandlerFunc(func(manager.Peer, *manager.Envelope) {})))
	_ = server.Start(ctx)
	client, _ := manager.New(manager.WithHandler(manager.HandlerFunc(func(manager.Peer, *manager.Envelope) {})))

	connected := make(chan manager.Event, 1)
	unsubscribe := client.Subscribe(func(e manager.Event) {
		if e.Type == manager.EventConnected {
			connected <- e
		}
	})
	defer unsubscribe()
	_ = client.Send(ctx, server.Addr(), &manager.Envelope{Target: "someone"})
	e := <-connected
	fmt.Println(e.Type, e.Address == server.Addr())

	_ = client.Close(ctx)
	_ = server.Close(ctx)
	// Output: connected true
}

// A watch: the watcher hears Terminated once when the watched process
// stops; here the watched node's embedder stops it as soon as it is
// watched.
func ExampleManager_Watch() {
	ctx := context.Background()
	var watched *manager.Manager
	watched, err := manager.New(
		manager.WithListenAddress("127.0.0.1:0"),
		manager.WithHandler(manager.HandlerFunc(func(from manager.Peer, env *manager.Envelope) {
			if env.Kind == batch.KindWatch { // the embedder's process registry would keep it
				_ = watched.Send(ctx, from.Address, &manager.Envelope{
					Target: env.SenderID, SenderID: env.Target, Lane: batch.LaneSystem, Kind: batch.KindTerminated,
				})
			}
		})),
	)
	if err != nil {
		panic(err)
	}
	if err := watched.Start(ctx); err != nil {
		panic(err)
	}
	told := make(chan string, 1)
	watcher, err := manager.New(
		manager.WithListenAddress("127.0.0.1:0"),
		manager.WithHandler(manager.HandlerFunc(func(_ manager.Peer, env *manager.Envelope) {
			if env.Kind == batch.KindTerminated {
				told <- env.Target + " told: " + env.SenderID + " terminated"
			}
		})),
	)
	if err != nil {
		panic(err)
	}
	if err := watcher.Start(ctx); err != nil {
		panic(err)
	}
	if err := watcher.Watch(ctx, watched.Addr(), "supervisor", "worker/7"); err != nil {
		panic(err)
	}
	fmt.Println(<-told)

	closeCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	_ = watcher.Close(closeCtx)
	_ = watched.Close(closeCtx)
	// Output: supervisor told: worker/7 terminated
}

// Blocking a system: its handshakes are refused, and a node that was
// connected is cut off at once.
func ExampleManager_Block() {
	node, err := manager.New(
		manager.WithListenAddress("127.0.0.1:0"),
		manager.WithBlockList("intruder"),
		manager.WithHandler(manager.HandlerFunc(func(manager.Peer, *manager.Envelope) {})),
	)
	if err != nil {
		panic(err)
	}
	node.Block("flaky")
	fmt.Println(node.Blocked())
	node.Unblock("flaky")
	fmt.Println(node.Blocked())
	_ = node.Close(context.Background())
	// Output:
	// [flaky intruder]
	// [intruder]
}
