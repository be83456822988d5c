package manager_test

import (
	"context"
	"fmt"
	"time"

	"github.com/courier-go/courier/manager"
)

// The statistics of an endpoint account for every envelope: enqueued ones
// are acknowledged, dead-lettered or still queued. Close flushes first, so
// here every one was acknowledged.
func ExampleManager_Stats() {
	ctx := context.Background()
	server, err := manager.New(
		manager.WithListenAddress("127.0.0.1:0"),
		manager.WithHandler(manager.HandlerFunc(func(manager.Peer, *manager.Envelope) {})),
	)
	if err != nil {
		panic(err)
	}
	if err := server.Start(ctx); err != nil {
		panic(err)
	}
	client, err := manager.New(manager.WithHandler(manager.HandlerFunc(func(manager.Peer, *manager.Envelope) {})))
	if err != nil {
		panic(err)
	}
	for i := range 100 {
		if err := client.Send(ctx, server.Addr(), &manager.Envelope{Target: "sink", Payload: fmt.Appendf(nil, "%d", i)}); err != nil {
			panic(err)
		}
	}
	closeCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	_ = client.Close(closeCtx)
	_ = server.Close(closeCtx)

	s, _ := client.Stats(server.Addr())
	u := s.User
	fmt.Printf("enqueued %d, acked %d, dead-lettered %d, queued %d\n", u.Enqueued, u.Acked, u.DeadLetteredAfterEnqueue(), u.Queued)
	// Output: enqueued 100, acked 100, dead-lettered 0, queued 0
}
