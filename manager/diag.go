package manager

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/courier-go/courier/internal/wire"
	courierv1 "github.com/courier-go/courier/proto/courier/v1"
	"github.com/courier-go/courier/proto/courier/v1/transportv1"
	"github.com/courier-go/courier/reader"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Diagnostics and remote spawn: unary calls of the Transport service that a
// node serves for its embedder's process registry and spawner, and makes to
// its peers with ListProcesses, ProcessDiagnostics, Spawn and SpawnNamed.

// Bounds and defaults of the diagnostics and spawn calls.
const (
	// DefaultSpawnTimeout bounds a Spawn or SpawnNamed whose context has no
	// deadline, and a spawn request that states no timeout.
	DefaultSpawnTimeout = 10 * time.Second
	// DefaultQueryTimeout bounds a ListProcesses or ProcessDiagnostics whose
	// context has no deadline, on both sides of the call.
	DefaultQueryTimeout = 10 * time.Second
	// MaxListedProcesses is the most processes a node lists in answer to
	// one ListProcesses; it lists fewer when their encoding would pass
	// 1 MiB or the node's maximum frame size.
	MaxListedProcesses = 1000
	// MaxDiagnosticsBytes is the longest diagnostics text a node answers
	// with; a longer one is cut at a character boundary.
	MaxDiagnosticsBytes = 64 << 10
	// MaxCallStringBytes bounds every string of a diagnostics or spawn
	// call: a kind, name, process id or name filter in a request (a longer
	// one is refused with ErrInvalidArgument), each field of a listed
	// ProcessInfo and the text of an error (cut at a character boundary).
	MaxCallStringBytes = 1024
)

const (
	// maxSpawnTimeout caps the time a node gives its spawner, whatever the
	// request asks for.
	maxSpawnTimeout = 10 * time.Minute
	// maxResponseBytes bounds a response's encoding, so that a listing of
	// long names stays far below gRPC's message limits.
	maxResponseBytes = 1 << 20
)

// Errors of the diagnostics and spawn calls. A ProcessRegistry or Spawner
// returns them, wrapped as it likes, to say what went wrong; the calling
// node's ListProcesses, ProcessDiagnostics, Spawn and SpawnNamed return
// them, wrapped with the peer's message. Compare with errors.Is; a call
// the peer answered with a gRPC status also gives that status to
// status.FromError.
var (
	// ErrNotSupported: the peer serves no such call (gRPC Unimplemented): it
	// has no process registry or spawner, or is a client-only node.
	ErrNotSupported = errors.New("manager: not supported by the peer")
	// ErrUnknownKind: the spawner knows no process kind of that name.
	ErrUnknownKind = errors.New("manager: unknown process kind")
	// ErrNameTaken: a process is registered under the name already.
	ErrNameTaken = errors.New("manager: process name taken")
	// ErrProcessNotFound: the registry has no process of that id.
	ErrProcessNotFound = errors.New("manager: process not found")
	// ErrSpawnRefused: the spawner refused to spawn, for reasons of its own
	// (a caller refused at the node's gates sees ErrBlocked or
	// ErrUnauthorized instead).
	ErrSpawnRefused = errors.New("manager: spawn refused")
	// ErrSpawnTimeout: the process did not start within the timeout. The
	// error also matches context.DeadlineExceeded.
	ErrSpawnTimeout = errors.New("manager: spawn timed out")
	// ErrPeerFailed: the peer failed the call (gRPC Internal): its
	// registry or spawner returned an error that is none of the above, or
	// panicked.
	ErrPeerFailed = errors.New("manager: call failed at the peer")
	// ErrInvalidArgument: a request string is empty where one is needed,
	// longer than MaxCallStringBytes, or not valid UTF-8.
	ErrInvalidArgument = errors.New("manager: invalid argument")
	// ErrTruncated: the peer cut its answer to its bounds
	// (MaxListedProcesses, MaxDiagnosticsBytes); the call returns what it
	// got along with this error.
	ErrTruncated = errors.New("manager: answer truncated")
)

// ProcessInfo describes a process, as a ProcessRegistry lists it.
type ProcessInfo struct {
	// ID is the process id: the Target of envelopes for it.
	ID string
	// Name is the name it is registered under; empty when it has none.
	Name string
	// Kind is the kind it was spawned as (see Spawner).
	Kind string
}

// ProcessRegistry is the embedder's view of its processes, which peers ask
// for with ListProcesses and ProcessDiagnostics. Its methods are called
// from the node's gRPC handlers, many at once, after the caller passed the
// node's block list and authoriser; each runs on a goroutine of its own, so
// that one that ignores ctx delays nobody but itself (the call answers when
// ctx ends). A panic is recovered and answered as an internal error.
type ProcessRegistry interface {
	// ListProcesses returns the processes whose name matches nameFilter, or
	// all of them when it is empty; what matching means is the registry's
	// (a substring of the name, typically). The node passes on the first
	// MaxListedProcesses.
	ListProcesses(ctx context.Context, nameFilter string) ([]ProcessInfo, error)
	// ProcessDiagnostics returns free text about the process id, for
	// people, or an error wrapping ErrProcessNotFound. The node passes on
	// the first MaxDiagnosticsBytes.
	ProcessDiagnostics(ctx context.Context, id string) (string, error)
}

// Spawner starts processes at a peer's request (see Manager.Spawn). It is
// called as a ProcessRegistry is: concurrently, after the caller passed the
// node's gates, on a goroutine of its own, panics recovered.
type Spawner interface {
	// Spawn starts a process of the kind, registered under name unless
	// name is empty, and returns its id. ctx ends at the caller's timeout.
	// Errors wrapping ErrUnknownKind, ErrNameTaken, ErrSpawnRefused,
	// ErrNotSupported and context.DeadlineExceeded (or ErrSpawnTimeout)
	// reach the caller as such; any other error reaches it as
	// ErrPeerFailed, with the error's text.
	Spawn(ctx context.Context, kind, name string) (id string, err error)
}

// WithProcessRegistry lets peers list this node's processes and read their
// diagnostics through r (see Manager.ListProcesses). Default: none; the
// calls are answered ErrNotSupported (gRPC Unimplemented). The authoriser
// (WithAuthorizer) judges each call as it judges a stream; it can tell them
// apart with grpc.Method(ctx). Close does not wait for a registry call that
// is still running after its call was answered.
func WithProcessRegistry(r ProcessRegistry) Option {
	return optionFunc(func(o *options) { o.registry = r })
}

// WithSpawner lets peers spawn processes on this node through s (see
// Manager.Spawn). Default: none; spawns are answered ErrNotSupported (gRPC
// Unimplemented). Callers pass the block list and the authoriser first, as
// for WithProcessRegistry; an authoriser that lets peers send but not
// spawn checks grpc.Method(ctx) against
// transportv1.Transport_Spawn_FullMethodName.
func WithSpawner(s Spawner) Option {
	return optionFunc(func(o *options) { o.spawner = s })
}

// transportServer is the Transport service: the streams of reader.Server
// and the unary calls served for the embedder.
type transportServer struct {
	*reader.Server
	m *Manager
}

// ListProcesses serves the call of the same name.
func (s *transportServer) ListProcesses(ctx context.Context, req *transportv1.ListProcessesRequest) (*transportv1.ListProcessesResponse, error) {
	m := s.m
	ctx, cancel := withDefaultTimeout(ctx, DefaultQueryTimeout)
	defer cancel()
	if err := m.admit(ctx, req.GetCaller()); err != nil {
		return nil, err
	}
	r := m.o.registry
	if r == nil {
		return nil, status.Error(codes.Unimplemented, "manager: this node has no process registry")
	}
	filter := req.GetNameFilter()
	if len(filter) > MaxCallStringBytes {
		return nil, status.Errorf(codes.InvalidArgument, "manager: name filter longer than %d bytes", MaxCallStringBytes)
	}
	procs, err := embedded(ctx, m, "process registry", func(ctx context.Context) ([]ProcessInfo, error) {
		return r.ListProcesses(ctx, filter)
	})
	if err != nil {
		return nil, embedderStatus(err)
	}
	resp := &transportv1.ListProcessesResponse{}
	budget, size := m.responseBudget(), 2 // 2: the truncated flag
	for _, p := range procs {
		if len(resp.Processes) == MaxListedProcesses {
			resp.Truncated = true
			break
		}
		e := &transportv1.ProcessInfo{
			Id:   clip(p.ID, MaxCallStringBytes),
			Name: clip(p.Name, MaxCallStringBytes),
			Kind: clip(p.Kind, MaxCallStringBytes),
		}
		n := 4 + e.SizeVT() // 4: the field's tag and length, at most
		if size+n > budget {
			resp.Truncated = true
			break
		}
		size += n
		resp.Processes = append(resp.Processes, e)
	}
	return resp, nil
}

// ProcessDiagnostics serves the call of the same name.
func (s *transportServer) ProcessDiagnostics(ctx context.Context, req *transportv1.ProcessDiagnosticsRequest) (*transportv1.ProcessDiagnosticsResponse, error) {
	m := s.m
	ctx, cancel := withDefaultTimeout(ctx, DefaultQueryTimeout)
	defer cancel()
	if err := m.admit(ctx, req.GetCaller()); err != nil {
		return nil, err
	}
	r := m.o.registry
	if r == nil {
		return nil, status.Error(codes.Unimplemented, "manager: this node has no process registry")
	}
	id := req.GetProcessId()
	if id == "" || len(id) > MaxCallStringBytes {
		return nil, status.Errorf(codes.InvalidArgument, "manager: process id empty or longer than %d bytes", MaxCallStringBytes)
	}
	text, err := embedded(ctx, m, "process registry", func(ctx context.Context) (string, error) {
		return r.ProcessDiagnostics(ctx, id)
	})
	if err != nil {
		return nil, embedderStatus(err)
	}
	limit := min(MaxDiagnosticsBytes, m.responseBudget()-16) // 16: tags, length, flag
	out := clip(text, limit)
	return &transportv1.ProcessDiagnosticsResponse{Diagnostics: out, Truncated: len(out) < len(text)}, nil
}

// Spawn serves the call of the same name.
func (s *transportServer) Spawn(ctx context.Context, req *transportv1.SpawnRequest) (*transportv1.SpawnResponse, error) {
	m := s.m
	timeout := time.Duration(req.GetTimeoutMillis()) * time.Millisecond
	if timeout == 0 {
		timeout = DefaultSpawnTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, min(timeout, maxSpawnTimeout))
	defer cancel()
	if err := m.admit(ctx, req.GetCaller()); err != nil {
		return nil, err
	}
	sp := m.o.spawner
	if sp == nil {
		return nil, status.Error(codes.Unimplemented, "manager: this node has no spawner")
	}
	kind, name := req.GetKind(), req.GetName()
	if kind == "" || len(kind) > MaxCallStringBytes || len(name) > MaxCallStringBytes {
		return nil, status.Errorf(codes.InvalidArgument, "manager: kind empty, or kind or name longer than %d bytes", MaxCallStringBytes)
	}
	id, err := embedded(ctx, m, "spawner", func(ctx context.Context) (string, error) {
		return sp.Spawn(ctx, kind, name)
	})
	switch {
	case err != nil:
		return nil, embedderStatus(err)
	case id == "" || len(id) > MaxCallStringBytes || !utf8.ValidString(id):
		// The id addresses the process: one cut or mended would be wrong.
		return nil, status.Errorf(codes.Internal, "manager: the spawner returned a process id that is empty, longer than %d bytes or not UTF-8", MaxCallStringBytes)
	}
	return &transportv1.SpawnResponse{ProcessId: id}, nil
}

// admit runs a unary call's caller through the gates of a stream's
// handshake (see checkHello): a node shutting down, a caller without a
// system id, a blocked system, the authoriser, a quarantined incarnation.
// A refusal is a status with a CallRefused detail.
func (m *Manager) admit(ctx context.Context, c *transportv1.Caller) error {
	p := Peer{SystemID: c.GetSystemId(), Address: c.GetAddress(), Incarnation: c.GetIncarnation()}
	var refusal *wire.RefusedError
	switch {
	case m.closed.Load():
		refusal = wire.Refuse(courierv1.RefuseReason_REFUSE_REASON_UNAVAILABLE, "node is shutting down")
	case p.SystemID == "" || len(p.SystemID) > MaxCallStringBytes || len(p.Address) > MaxCallStringBytes:
		refusal = wire.Refuse(courierv1.RefuseReason_REFUSE_REASON_INVALID, "caller's system id empty, or system id or address longer than %d bytes", MaxCallStringBytes)
	case m.isBlocked(p.SystemID):
		refusal = wire.Refuse(courierv1.RefuseReason_REFUSE_REASON_BLOCKED, "system %q is blocked", p.SystemID)
	case m.o.authorize != nil:
		// The authoriser is the embedder's code too: it may block or
		// panic.
		_, err := embedded(ctx, m, "authoriser", func(ctx context.Context) (struct{}, error) {
			return struct{}{}, m.authorizePeer(ctx, p)
		})
		switch {
		case errors.As(err, &refusal):
		case err != nil: // ctx ended first
			return status.Error(status.FromContextError(err).Code(), "manager: the authoriser did not answer in time")
		}
	}
	if refusal == nil && p.Incarnation != 0 && m.quarantined(p) {
		refusal = wire.Refuse(courierv1.RefuseReason_REFUSE_REASON_QUARANTINED, "incarnation %x of %s is quarantined", p.Incarnation, p.SystemID)
	}
	if refusal == nil {
		return nil
	}
	code := codes.PermissionDenied
	switch refusal.Reason {
	case courierv1.RefuseReason_REFUSE_REASON_UNAVAILABLE:
		code = codes.Unavailable
	case courierv1.RefuseReason_REFUSE_REASON_INVALID:
		code = codes.InvalidArgument
	case courierv1.RefuseReason_REFUSE_REASON_QUARANTINED:
		code = codes.Aborted
	}
	if code == codes.PermissionDenied {
		m.events.emit(Event{Type: EventPeerRefused, Peer: p, Address: p.Address, Err: refusal})
	}
	st := status.New(code, clip(refusal.Message, MaxCallStringBytes))
	if detailed, err := st.WithDetails(&transportv1.CallRefused{Reason: refusal.Reason}); err == nil {
		st = detailed
	}
	return st.Err()
}

// errEmbedderPanic is what embedded returns for a panic.
var errEmbedderPanic = errors.New("panicked")

// embedded runs f, the embedder's code, on a goroutine of its own and waits
// for it until ctx ends. An embedder that ignores ctx holds its goroutine,
// not the call: the call answers at ctx's end, and the goroutine exits
// whenever f returns. A panic in f is recovered and logged, and returned as
// an error wrapping errEmbedderPanic.
func embedded[T any](ctx context.Context, m *Manager, what string, f func(context.Context) (T, error)) (T, error) {
	type result struct {
		v   T
		err error
	}
	done := make(chan result, 1) // f's goroutine never waits for the call
	go func() {
		var r result
		defer func() {
			if p := recover(); p != nil {
				m.log.Error("courier: embedder panicked", "in", what, "panic", p)
				r = result{err: fmt.Errorf("manager: %s %w", what, errEmbedderPanic)}
			}
			done <- r
		}()
		r.v, r.err = f(ctx)
	}()
	select {
	case r := <-done:
		return r.v, r.err
	case <-ctx.Done():
		var zero T
		return zero, fmt.Errorf("manager: %s did not answer in time: %w", what, ctx.Err())
	}
}

// embedderStatus is the status of an error from the embedder (or from
// embedded): its sentinel's code, Internal for anything else, with the
// error's text, cut to MaxCallStringBytes. The text of a panic is not
// passed on.
func embedderStatus(err error) error {
	code := codes.Internal
	switch {
	case errors.Is(err, errEmbedderPanic):
	case errors.Is(err, ErrUnknownKind), errors.Is(err, ErrProcessNotFound):
		code = codes.NotFound
	case errors.Is(err, ErrNameTaken):
		code = codes.AlreadyExists
	case errors.Is(err, ErrSpawnRefused):
		code = codes.PermissionDenied
	case errors.Is(err, ErrNotSupported):
		code = codes.Unimplemented
	case errors.Is(err, ErrSpawnTimeout), errors.Is(err, context.DeadlineExceeded):
		code = codes.DeadlineExceeded
	case errors.Is(err, context.Canceled):
		code = codes.Canceled
	}
	return status.Error(code, clip(err.Error(), MaxCallStringBytes))
}

// responseBudget is the most bytes a response may take: maxResponseBytes,
// or less when the node's frames are smaller.
func (m *Manager) responseBudget() int {
	return min(maxResponseBytes, m.o.limits.MaxFrameBytes)
}

// withDefaultTimeout bounds ctx by d unless it has a deadline already.
func withDefaultTimeout(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, d)
}

// clip makes s valid UTF-8, bad bytes replaced by U+FFFD, and cuts it to at
// most n bytes at a character boundary.
func clip(s string, n int) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}
