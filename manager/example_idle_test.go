package manager_test

import (
	"context"
	"fmt"
	"time"

	"github.com/courier-go/courier/manager"
)

// A lane that has been idle for the idle-release period gives its queue's
// memory back; the next envelope allocates it again, and the queue's
// capacity never changes.
func ExampleWithIdleRelease() {
	ctx := context.Background()
	got := make(chan struct{}, 2)
	server, err := manager.New(
		manager.WithListenAddress("127.0.0.1:0"),
		manager.WithHandler(manager.HandlerFunc(func(manager.Peer, *manager.Envelope) { got <- struct{}{} })),
	)
	if err != nil {
		panic(err)
	}
	if err := server.Start(ctx); err != nil {
		panic(err)
	}
	client, err := manager.New(
		manager.WithHandler(manager.HandlerFunc(func(manager.Peer, *manager.Envelope) {})),
		manager.WithIdleRelease(100*time.Millisecond),
	)
	if err != nil {
		panic(err)
	}
	defer func() {
		closeCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		_ = client.Close(closeCtx)
		_ = server.Close(closeCtx)
	}()
	shed := func() bool {
		s, _ := client.Stats(server.Addr())
		return s.User.Shed
	}
	waitShed := func() {
		for deadline := time.Now().Add(10 * time.Second); !shed() && time.Now().Before(deadline); {
			time.Sleep(10 * time.Millisecond)
		}
	}

	if err := client.Send(ctx, server.Addr(), &manager.Envelope{Target: "sink"}); err != nil {
		panic(err)
	}
	<-got
	waitShed()
	s, _ := client.Stats(server.Addr())
	fmt.Printf("idle: shed %v, %d time(s), capacity %d\n", s.User.Shed, s.User.Sheds, s.User.Capacity)

	if err := client.Send(ctx, server.Addr(), &manager.Envelope{Target: "sink"}); err != nil {
		panic(err)
	}
	<-got
	waitShed()
	s, _ = client.Stats(server.Addr())
	fmt.Printf("idle again: shed %v, %d time(s), capacity %d, acked %d\n", s.User.Shed, s.User.Sheds, s.User.Capacity, s.User.Acked)
	// Output:
	// idle: shed true, 1 time(s), capacity 4096
	// idle again: shed true, 2 time(s), capacity 4096, acked 2
}
