package courierremote

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/asynkron/protoactor-go/remote"
	"github.com/courier-go/courier/manager"
)

// Register lets peers spawn props under the kind name, as protoactor-go's
// Remote.Register does. Safe at any time.
func (r *Remote) Register(kind string, props *actor.Props) { r.kinds.Store(kind, props) }

// GetKnownKinds returns the registered kind names, sorted.
func (r *Remote) GetKnownKinds() []string {
	var kinds []string
	r.kinds.Range(func(k, _ any) bool { kinds = append(kinds, k.(string)); return true })
	sort.Strings(kinds)
	return kinds
}

// SpawnError is the error of a remote spawn that failed: protoactor-go's
// response code, and courier's error. errors.Is matches courier's
// sentinel (manager.ErrUnknownKind, manager.ErrNameTaken,
// manager.ErrSpawnTimeout, ...) and protoactor-go's error for the code
// (remote.ErrUnknownError, remote.ErrProcessNameAlreadyExist,
// remote.ErrTimeout, remote.ErrUnAvailable).
type SpawnError struct {
	Code remote.ResponseStatusCode
	Err  error
}

func (e *SpawnError) Error() string { return fmt.Sprintf("%v: %v", e.Code, e.Err) }

// Unwrap returns courier's error and protoactor-go's error for the code.
func (e *SpawnError) Unwrap() []error { return []error{e.Err, e.Code.AsError()} }

// Spawn spawns a process of kind at address and returns its PID; see
// SpawnNamed.
func (r *Remote) Spawn(address, kind string, timeout time.Duration) (*remote.ActorPidResponse, error) {
	return r.SpawnNamed(address, "", kind, timeout)
}

// SpawnNamed asks the node at address to spawn a process of kind under
// name (a generated one when empty), within timeout, as protoactor-go's
// Remote.SpawnNamed does. The response carries the PID. A failure is a
// *SpawnError, also in the response's StatusCode: an unknown kind is
// ResponseStatusCodeERROR, a taken name PROCESSNAMEALREADYEXIST (with the
// existing process's PID), a timeout TIMEOUT, a node that cannot be
// reached or refuses UNAVAILABLE.
func (r *Remote) SpawnNamed(address, name, kind string, timeout time.Duration) (*remote.ActorPidResponse, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return r.SpawnNamedContext(ctx, address, name, kind)
}

// SpawnNamedContext is SpawnNamed with a context: its deadline is the
// spawn's timeout (manager.DefaultSpawnTimeout without one).
func (r *Remote) SpawnNamedContext(ctx context.Context, address, name, kind string) (*remote.ActorPidResponse, error) {
	id, err := r.m.SpawnNamed(ctx, address, kind, name)
	if err != nil {
		code := spawnCode(err)
		resp := &remote.ActorPidResponse{StatusCode: code.ToInt32()}
		if code == remote.ResponseStatusCodePROCESSNAMEALREADYEXIST {
			resp.Pid = actor.NewPID(address, name)
		}
		return resp, &SpawnError{Code: code, Err: err}
	}
	return &remote.ActorPidResponse{Pid: actor.NewPID(address, id)}, nil
}

func spawnCode(err error) remote.ResponseStatusCode {
	switch {
	case errors.Is(err, manager.ErrNameTaken):
		return remote.ResponseStatusCodePROCESSNAMEALREADYEXIST
	case errors.Is(err, manager.ErrSpawnTimeout), errors.Is(err, context.DeadlineExceeded):
		return remote.ResponseStatusCodeTIMEOUT
	case errors.Is(err, manager.ErrUnknownKind), errors.Is(err, manager.ErrPeerFailed),
		errors.Is(err, manager.ErrInvalidArgument):
		return remote.ResponseStatusCodeERROR
	}
	return remote.ResponseStatusCodeUNAVAILABLE
}

// spawner answers peers' spawn requests from the registered kinds.
type spawner struct{ r *Remote }

func (s spawner) Spawn(ctx context.Context, kind, name string) (string, error) {
	p, ok := s.r.kinds.Load(kind)
	if !ok {
		return "", fmt.Errorf("%w: %q", manager.ErrUnknownKind, kind)
	}
	if name == "" {
		name = s.r.system.ProcessRegistry.NextId()
	}
	pid, err := s.r.system.Root.SpawnNamed(p.(*actor.Props), name)
	if errors.Is(err, actor.ErrNameExists) {
		return "", fmt.Errorf("%w: %q", manager.ErrNameTaken, name)
	}
	if err != nil {
		return "", err
	}
	if ctx.Err() != nil {
		// The caller has given up and will never learn the PID.
		s.r.system.Root.Stop(pid)
		return "", fmt.Errorf("%w: %w", manager.ErrSpawnTimeout, ctx.Err())
	}
	s.r.spawned.Store(pid.Id, kind)
	return pid.Id, nil
}

// registry answers peers' process listings and diagnostics from the actor
// system's process registry.
type registry struct{ r *Remote }

func (g registry) ListProcesses(_ context.Context, nameFilter string) ([]manager.ProcessInfo, error) {
	var out []manager.ProcessInfo
	for _, shard := range g.r.system.ProcessRegistry.LocalPIDs.LocalPIDs {
		shard.IterCb(func(id string, _ any) {
			if strings.Contains(id, nameFilter) {
				out = append(out, manager.ProcessInfo{ID: id, Name: id, Kind: g.kind(id)})
			}
		})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

func (g registry) kind(id string) string {
	if k, ok := g.r.spawned.Load(id); ok {
		return k.(string)
	}
	return ""
}

func (g registry) ProcessDiagnostics(_ context.Context, id string) (string, error) {
	ref, ok := g.r.system.ProcessRegistry.GetLocal(id)
	if !ok {
		return "", fmt.Errorf("%w: %q", manager.ErrProcessNotFound, id)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "id: %s\naddress: %s\nprocess: %T\n", id, g.r.addr, ref)
	if k := g.kind(id); k != "" {
		fmt.Fprintf(&b, "kind: %s\n", k)
	}
	if d, ok := ref.(interface{ Diagnostics() string }); ok {
		b.WriteString(d.Diagnostics())
	}
	return b.String(), nil
}

// ProcessInfo describes a process of a peer, as ListProcesses returns it.
type ProcessInfo struct {
	PID *actor.PID
	// Kind is the kind it was spawned as by a peer; empty otherwise.
	Kind string
}

// ListProcesses lists the processes of the node at address whose id
// contains nameFilter (all when it is empty). Errors are courier's (see
// manager.Manager.ListProcesses).
func (r *Remote) ListProcesses(ctx context.Context, address, nameFilter string) ([]ProcessInfo, error) {
	infos, err := r.m.ListProcesses(ctx, address, nameFilter)
	out := make([]ProcessInfo, len(infos))
	for i, p := range infos {
		out[i] = ProcessInfo{PID: actor.NewPID(address, p.ID), Kind: p.Kind}
	}
	return out, err
}

// ProcessDiagnostics returns the diagnostics text of the remote process
// pid; an unknown process is an error wrapping manager.ErrProcessNotFound.
func (r *Remote) ProcessDiagnostics(ctx context.Context, pid *actor.PID) (string, error) {
	return r.m.ProcessDiagnostics(ctx, pid.Address, pid.Id)
}
