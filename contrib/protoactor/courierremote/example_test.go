package courierremote_test

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/courier-go/courier/contrib/protoactor/courierremote"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

func quiet() *actor.ActorSystem {
	return actor.NewActorSystem(actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger {
		return slog.New(slog.DiscardHandler)
	}))
}

// twoNodes starts two actor systems with courier as their remote, b with
// cfgB; stop shuts both down.
func twoNodes(ctx context.Context, cfgB *courierremote.Config) (sysA, sysB *actor.ActorSystem, b *courierremote.Remote, stop func(), err error) {
	sysA, sysB = quiet(), quiet()
	a, err := courierremote.Start(ctx, sysA, courierremote.Configure("127.0.0.1", 0))
	if err == nil {
		b, err = courierremote.Start(ctx, sysB, cfgB)
		if err != nil {
			_ = a.Shutdown(ctx)
		}
	}
	if err != nil {
		sysA.Shutdown()
		sysB.Shutdown()
		return nil, nil, nil, nil, err
	}
	return sysA, sysB, b, func() {
		_ = b.Shutdown(ctx)
		_ = a.Shutdown(ctx)
		sysB.Shutdown()
		sysA.Shutdown()
	}, nil
}

// Two actor systems with courier as their remote: a request to an actor on
// the other node, answered as if it were local.
func ExampleStart() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	sysA, sysB, b, stop, err := twoNodes(ctx, courierremote.Configure("127.0.0.1", 0))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer stop()

	_, _ = sysB.Root.SpawnNamed(actor.PropsFromFunc(func(c actor.Context) {
		if m, ok := c.Message().(*wrapperspb.StringValue); ok {
			c.Respond(wrapperspb.String("hello, " + m.Value))
		}
	}), "greeter")
	res, err := sysA.Root.RequestFuture(actor.NewPID(b.Address(), "greeter"), wrapperspb.String("a"), 5*time.Second).Result()
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(res.(*wrapperspb.StringValue).Value)
	// Output: hello, a
}

// A slow actor on node b: once its mailbox holds the limit, b stops taking
// a's user messages until it has drained a quarter, so the flood waits in
// a's queue instead of b's heap, and nothing is lost.
func ExampleWithMailboxLimit() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	sysA, sysB, b, stop, err := twoNodes(ctx, courierremote.Configure("127.0.0.1", 0, courierremote.WithMailboxLimit(16)))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer stop()

	full := make(chan *courierremote.MailboxFullEvent, 1)
	sub := sysB.EventStream.Subscribe(func(e any) {
		if f, ok := e.(*courierremote.MailboxFullEvent); ok && f.Waiting {
			select {
			case full <- f:
			default:
			}
		}
	})
	defer sysB.EventStream.Unsubscribe(sub)
	gate, took, done := make(chan struct{}), 0, make(chan struct{})
	_, _ = sysB.Root.SpawnNamed(actor.PropsFromFunc(func(c actor.Context) {
		if _, ok := c.Message().(*wrapperspb.Int64Value); ok {
			<-gate // slow: held until the mailbox is full
			if took++; took == 100 {
				close(done)
			}
		}
	}), "slow")
	slow := actor.NewPID(b.Address(), "slow")
	for i := range 100 {
		sysA.Root.Send(slow, wrapperspb.Int64(int64(i)))
	}
	select {
	case f := <-full:
		fmt.Printf("%s's mailbox holds %d: deliveries from node a wait\n", f.PID.Id, f.Messages)
	case <-ctx.Done():
		fmt.Println("no wait:", ctx.Err())
	}
	close(gate)
	select {
	case <-done:
		fmt.Println("slow took", took, "messages")
	case <-ctx.Done():
		fmt.Println("not all delivered:", ctx.Err())
	}
	// Output:
	// slow's mailbox holds 16: deliveries from node a wait
	// slow took 100 messages
}
