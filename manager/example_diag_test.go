package manager_test

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/courier-go/courier/manager"
)

// greeters is an embedder's spawner: it knows one kind of process.
type greeters struct{ n atomic.Int32 }

func (g *greeters) Spawn(_ context.Context, kind, name string) (string, error) {
	if kind != "greeter" {
		return "", fmt.Errorf("%w: %q", manager.ErrUnknownKind, kind)
	}
	if name == "" {
		name = fmt.Sprintf("greeter-%d", g.n.Add(1))
	}
	return "greeters/" + name, nil
}

// One node spawns processes on another, which lets it through its spawner.
func ExampleManager_Spawn() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	noop := manager.HandlerFunc(func(manager.Peer, *manager.Envelope) {})

	host, err := manager.New(
		manager.WithListenAddress("127.0.0.1:0"),
		manager.WithHandler(noop),
		manager.WithSpawner(&greeters{}),
	)
	if err != nil {
		panic(err)
	}
	if err := host.Start(ctx); err != nil {
		panic(err)
	}
	caller, err := manager.New(manager.WithHandler(noop))
	if err != nil {
		panic(err)
	}

	// ctx's deadline is the spawner's: it gives up when the caller does.
	id, err := caller.Spawn(ctx, host.Addr(), "greeter")
	fmt.Println(id, err)
	id, err = caller.SpawnNamed(ctx, host.Addr(), "greeter", "alice")
	fmt.Println(id, err)
	_, err = caller.Spawn(ctx, host.Addr(), "dragon")
	fmt.Println(errors.Is(err, manager.ErrUnknownKind))
	_, err = caller.ListProcesses(ctx, host.Addr(), "")
	fmt.Println(errors.Is(err, manager.ErrNotSupported)) // the host has no process registry

	_ = caller.Close(ctx)
	_ = host.Close(ctx)
	// Output:
	// greeters/greeter-1 <nil>
	// greeters/alice <nil>
	// true
	// true
}
