// Command protoactor runs two protoactor-go actor systems in one process
// with courier as their remote layer: a request/response across nodes, a
// remote watch that ends in Terminated when the watched actor stops, and a
// remote spawn by kind, with the typed error of a taken name.
//
//	cd contrib/protoactor && go run ./examples/protoactor
package main

import (
	"context"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"os"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/asynkron/protoactor-go/remote"
	"github.com/courier-go/courier/contrib/protoactor/courierremote"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

func main() {
	if err := run(); err != nil {
		log.Fatal(err)
	}
}

// greeter answers a StringValue with a greeting.
func greeter(ctx actor.Context) {
	if m, ok := ctx.Message().(*wrapperspb.StringValue); ok {
		ctx.Respond(wrapperspb.String("hello, " + m.Value))
	}
}

func newSystem() *actor.ActorSystem {
	return actor.NewActorSystem(actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger {
		return slog.New(slog.DiscardHandler)
	}))
}

func run() error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	// Node b can spawn greeters for its peers.
	sysA, sysB := newSystem(), newSystem()
	a, err := courierremote.Start(ctx, sysA, courierremote.Configure("127.0.0.1", 0))
	if err != nil {
		return err
	}
	defer a.Shutdown(ctx)
	b, err := courierremote.Start(ctx, sysB, courierremote.Configure("127.0.0.1", 0,
		courierremote.WithKinds(remote.NewKind("greeter", actor.PropsFromFunc(greeter)))))
	if err != nil {
		return err
	}
	defer b.Shutdown(ctx)
	fmt.Printf("node a at %s, node b at %s\n", a.Address(), b.Address())

	// Request/response: a PID on b, asked from a, as if it were local.
	if _, err := sysB.Root.SpawnNamed(actor.PropsFromFunc(greeter), "greeter"); err != nil {
		return err
	}
	res, err := sysA.Root.RequestFuture(actor.NewPID(b.Address(), "greeter"), wrapperspb.String("a"), 5*time.Second).Result()
	if err != nil {
		return fmt.Errorf("request: %w", err)
	}
	fmt.Println("request/response:", res.(*wrapperspb.StringValue).Value)

	// Watch: an actor on a watches one on b, which is then stopped.
	victim, err := sysB.Root.SpawnNamed(actor.PropsFromFunc(func(actor.Context) {}), "victim")
	if err != nil {
		return err
	}
	terminated := make(chan *actor.Terminated, 1)
	watched := make(chan struct{})
	remoteVictim := actor.NewPID(b.Address(), victim.Id)
	sysA.Root.Spawn(actor.PropsFromFunc(func(c actor.Context) {
		switch m := c.Message().(type) {
		case *actor.Started:
			c.Watch(remoteVictim)
			close(watched)
		case *actor.Terminated:
			terminated <- m
		}
	}))
	<-watched
	// The watch and the stop travel on courier's system lane, in order: the
	// watch is on record at b before the victim stops.
	sysA.Root.Stop(remoteVictim)
	select {
	case t := <-terminated:
		fmt.Printf("watch: %s terminated (%s)\n", t.Who.Id, t.Why)
	case <-ctx.Done():
		return errors.New("no Terminated")
	}

	// Remote spawn by kind, and the typed error of a taken name.
	resp, err := a.SpawnNamed(b.Address(), "greeter-2", "greeter", 5*time.Second)
	if err != nil {
		return fmt.Errorf("spawn: %w", err)
	}
	res, err = sysA.Root.RequestFuture(resp.Pid, wrapperspb.String("spawned"), 5*time.Second).Result()
	if err != nil {
		return fmt.Errorf("request to the spawned greeter: %w", err)
	}
	fmt.Printf("remote spawn: %s answered %q\n", resp.Pid.Id, res.(*wrapperspb.StringValue).Value)
	_, err = a.SpawnNamed(b.Address(), "greeter-2", "greeter", 5*time.Second)
	if !errors.Is(err, remote.ErrProcessNameAlreadyExist) {
		return fmt.Errorf("second spawn under the same name: %v, want ErrProcessNameAlreadyExist", err)
	}
	fmt.Println("remote spawn of a taken name:", err)

	if err := a.Shutdown(ctx); err != nil {
		return err
	}
	if err := b.Shutdown(ctx); err != nil {
		return err
	}
	sysA.Shutdown()
	sysB.Shutdown()
	fmt.Fprintln(os.Stdout, "both nodes shut down")
	return nil
}
