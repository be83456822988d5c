package courierremote

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/asynkron/protoactor-go/remote"
	"github.com/courier-go/courier/manager"
)

func TestRemoteSpawnAndDiagnostics(t *testing.T) {
	a := startNode(t, nil)
	b := startNode(t, Configure("127.0.0.1", 0, WithKinds(remote.NewKind("echo", actor.PropsFromFunc(echo)))))

	resp, err := a.r.SpawnNamed(b.r.Address(), "e1", "echo", 5*time.Second)
	if err != nil {
		t.Fatalf("SpawnNamed: %v", err)
	}
	if resp.StatusCode != remote.ResponseStatusCodeOK.ToInt32() || resp.Pid.GetAddress() != b.r.Address() || resp.Pid.GetId() != "e1" {
		t.Fatalf("SpawnNamed answered %v", resp)
	}
	if got := requestString(t, a, resp.Pid, "spawned"); !strings.HasPrefix(got, "SPAWNED") {
		t.Fatalf("the spawned echo answered %q", got)
	}

	// A kind registered at run time, spawned under a generated name.
	b.r.Register("echo2", actor.PropsFromFunc(echo))
	if kinds := b.r.GetKnownKinds(); !slices.Equal(kinds, []string{"echo", "echo2"}) {
		t.Fatalf("known kinds %v", kinds)
	}
	resp2, err := a.r.Spawn(b.r.Address(), "echo2", 5*time.Second)
	if err != nil {
		t.Fatalf("Spawn: %v", err)
	}
	if resp2.Pid.GetId() == "" || resp2.Pid.GetId() == "e1" || resp2.Pid.GetAddress() != b.r.Address() {
		t.Fatalf("Spawn answered %v", resp2)
	}
	if got := requestString(t, a, resp2.Pid, "unnamed"); !strings.HasPrefix(got, "UNNAMED") {
		t.Fatalf("the unnamed echo answered %q", got)
	}

	// Unknown kind.
	resp3, err := a.r.SpawnNamed(b.r.Address(), "x", "nope", 5*time.Second)
	var se *SpawnError
	if !errors.As(err, &se) || se.Code != remote.ResponseStatusCodeERROR ||
		!errors.Is(err, manager.ErrUnknownKind) || !errors.Is(err, remote.ErrUnknownError) {
		t.Fatalf("unknown kind: %v, want a SpawnError ERROR wrapping manager.ErrUnknownKind and remote.ErrUnknownError", err)
	}
	if resp3.StatusCode != remote.ResponseStatusCodeERROR.ToInt32() {
		t.Fatalf("unknown kind: status %d", resp3.StatusCode)
	}

	// Taken name.
	resp4, err := a.r.SpawnNamed(b.r.Address(), "e1", "echo", 5*time.Second)
	if !errors.As(err, &se) || se.Code != remote.ResponseStatusCodePROCESSNAMEALREADYEXIST ||
		!errors.Is(err, remote.ErrProcessNameAlreadyExist) || !errors.Is(err, manager.ErrNameTaken) {
		t.Fatalf("taken name: %v, want a SpawnError PROCESSNAMEALREADYEXIST wrapping remote.ErrProcessNameAlreadyExist and manager.ErrNameTaken", err)
	}
	if resp4.StatusCode != remote.ResponseStatusCodePROCESSNAMEALREADYEXIST.ToInt32() || resp4.Pid.GetId() != "e1" {
		t.Fatalf("taken name answered %v", resp4)
	}

	// Listing and diagnostics.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	procs, err := a.r.ListProcesses(ctx, b.r.Address(), "e1")
	if err != nil {
		t.Fatalf("ListProcesses: %v", err)
	}
	i := slices.IndexFunc(procs, func(p ProcessInfo) bool { return p.PID.GetId() == "e1" })
	if i < 0 || procs[i].Kind != "echo" || procs[i].PID.GetAddress() != b.r.Address() {
		t.Fatalf("ListProcesses(e1) = %v, want e1 of kind echo on %s", procs, b.r.Address())
	}
	all, err := a.r.ListProcesses(ctx, b.r.Address(), "")
	if err != nil || !slices.ContainsFunc(all, func(p ProcessInfo) bool { return p.PID.GetId() == resp2.Pid.GetId() && p.Kind == "echo2" }) {
		t.Fatalf("ListProcesses() = %v, %v: want %s of kind echo2", all, err, resp2.Pid.GetId())
	}
	diag, err := a.r.ProcessDiagnostics(ctx, resp.Pid)
	if err != nil || !strings.Contains(diag, "id: e1") || !strings.Contains(diag, "kind: echo") {
		t.Fatalf("ProcessDiagnostics(e1) = %q, %v", diag, err)
	}
	if _, err := a.r.ProcessDiagnostics(ctx, b.remotePID("nobody")); !errors.Is(err, manager.ErrProcessNotFound) {
		t.Fatalf("ProcessDiagnostics(nobody): %v, want manager.ErrProcessNotFound", err)
	}

	// Both come from the process registry: an actor b spawned itself is
	// listed (of no kind) and diagnosed, and gone once it has stopped.
	local := b.spawn("local-one", idle)
	listed := func() bool {
		procs, err := a.r.ListProcesses(ctx, b.r.Address(), "local-one")
		return err == nil && slices.ContainsFunc(procs, func(p ProcessInfo) bool { return p.PID.GetId() == "local-one" && p.Kind == "" })
	}
	if !listed() {
		t.Fatal("ListProcesses does not list an actor the node spawned itself")
	}
	if diag, err := a.r.ProcessDiagnostics(ctx, b.remotePID("local-one")); err != nil || !strings.Contains(diag, "id: local-one") {
		t.Fatalf("ProcessDiagnostics(local-one) = %q, %v", diag, err)
	}
	if err := b.system.Root.StopFuture(local).Wait(); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the stopped actor unlisted", 5*time.Second, func() bool { return !listed() })
	if _, err := a.r.ProcessDiagnostics(ctx, b.remotePID("local-one")); !errors.Is(err, manager.ErrProcessNotFound) {
		t.Fatalf("ProcessDiagnostics of a stopped actor: %v, want manager.ErrProcessNotFound", err)
	}
}

func TestRemoteSpawnTimeout(t *testing.T) {
	release := make(chan struct{})
	spawned := make(chan struct{})
	slowProps := actor.PropsFromFunc(echo, actor.WithSpawnFunc(
		func(system *actor.ActorSystem, id string, props *actor.Props, parent actor.SpawnerContext) (*actor.PID, error) {
			defer close(spawned)
			<-release
			return actor.DefaultSpawner(system, id, props, parent)
		}))
	a := startNode(t, nil)
	b := startNode(t, Configure("127.0.0.1", 0, WithKinds(remote.NewKind("slow", slowProps))))
	releaseOnce := func() {
		select {
		case <-release:
		default:
			close(release)
		}
	}
	t.Cleanup(func() { // before the nodes stop
		releaseOnce()
		select {
		case <-spawned:
		case <-time.After(10 * time.Second):
			t.Error("the slow spawn never ran")
		}
	})

	resp, err := a.r.SpawnNamed(b.r.Address(), "slow1", "slow", 200*time.Millisecond)
	var se *SpawnError
	if !errors.As(err, &se) || se.Code != remote.ResponseStatusCodeTIMEOUT || !errors.Is(err, remote.ErrTimeout) {
		t.Fatalf("slow spawn: %v, want a SpawnError TIMEOUT wrapping remote.ErrTimeout", err)
	}
	if resp.StatusCode != remote.ResponseStatusCodeTIMEOUT.ToInt32() {
		t.Fatalf("slow spawn: status %d", resp.StatusCode)
	}
	// One more call to b, so that b's side of the spawn has seen its
	// deadline pass too; then the spawn may finish. The process it makes
	// so late is stopped: nobody will ever learn its PID.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := a.r.ListProcesses(ctx, b.r.Address(), "slow1"); err != nil {
		t.Fatalf("ListProcesses: %v", err)
	}
	releaseOnce()
	<-spawned
	eventually(t, "the late process stopped", 5*time.Second, func() bool {
		_, ok := b.system.ProcessRegistry.GetLocal("slow1")
		return !ok
	})
	// The node goes on spawning.
	b.r.Register("echo", actor.PropsFromFunc(echo))
	if _, err := a.r.SpawnNamed(b.r.Address(), "after", "echo", 5*time.Second); err != nil {
		t.Fatalf("spawn after the timeout: %v", err)
	}
}
