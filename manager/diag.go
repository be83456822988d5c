package manager

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/courier-go/courier/internal/wire"
	courierv1 "github.com/courier-go/courier/proto/courier/v1"
	"github.com/courier-go/courier/proto/courier/v1/transportv1"
	"github.com/courier-go/courier/reader"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/metadata"
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

// The client side.

// ListProcesses asks the node at address for its processes whose name
// matches nameFilter (all of them when it is empty; what matching means is
// the peer's registry's). A list cut to the peer's bounds (at most
// MaxListedProcesses) comes with an error wrapping ErrTruncated. Without a
// deadline, ctx is bounded by DefaultQueryTimeout.
//
// Like every diagnostics and spawn call, it goes over the node's call
// connection to the peer: one per address, dialed on first use with the
// node's dial options and TLS configuration, reused by later calls, closed
// after a minute without one, when it fails, or by Close (the node keeps
// at most 64; a call in flight at Close fails with ErrClosed). Each call
// carries the node's system id, incarnation, advertised address and
// handshake metadata (WithHandshakeMetadata), for the peer's block list and
// authoriser. A refusal by them is an error wrapping ErrRefused and
// ErrBlocked or ErrUnauthorized; a peer without a process registry answers
// ErrNotSupported; its registry's failures come as ErrPeerFailed.
func (m *Manager) ListProcesses(ctx context.Context, address, nameFilter string) ([]ProcessInfo, error) {
	if !m.initialized() {
		return nil, ErrNotInitialized
	}
	const op = "list processes"
	if err := checkArg(op, "name filter", nameFilter, true); err != nil {
		return nil, err
	}
	ctx, cancel := withDefaultTimeout(ctx, DefaultQueryTimeout)
	defer cancel()
	var resp *transportv1.ListProcessesResponse
	err := m.unary(ctx, op, address, func(ctx context.Context, c transportv1.TransportClient, caller *transportv1.Caller, opts ...grpc.CallOption) (err error) {
		resp, err = c.ListProcesses(ctx, &transportv1.ListProcessesRequest{Caller: caller, NameFilter: nameFilter}, opts...)
		return err
	})
	if err != nil {
		return nil, err
	}
	procs := make([]ProcessInfo, 0, len(resp.GetProcesses()))
	for _, p := range resp.GetProcesses() {
		procs = append(procs, ProcessInfo{ID: p.GetId(), Name: p.GetName(), Kind: p.GetKind()})
	}
	if resp.GetTruncated() {
		return procs, fmt.Errorf("manager: %s at %s: %w after %d processes", op, address, ErrTruncated, len(procs))
	}
	return procs, nil
}

// ProcessDiagnostics asks the node at address for its diagnostics of the
// process id: free text, for people. An unknown process is an error
// wrapping ErrProcessNotFound; a text cut to MaxDiagnosticsBytes comes
// with an error wrapping ErrTruncated. Without a deadline, ctx is bounded
// by DefaultQueryTimeout. See ListProcesses for what every such call
// carries and the other errors.
func (m *Manager) ProcessDiagnostics(ctx context.Context, address, id string) (string, error) {
	if !m.initialized() {
		return "", ErrNotInitialized
	}
	const op = "process diagnostics"
	if err := checkArg(op, "process id", id, false); err != nil {
		return "", err
	}
	ctx, cancel := withDefaultTimeout(ctx, DefaultQueryTimeout)
	defer cancel()
	var resp *transportv1.ProcessDiagnosticsResponse
	err := m.unary(ctx, op, address, func(ctx context.Context, c transportv1.TransportClient, caller *transportv1.Caller, opts ...grpc.CallOption) (err error) {
		resp, err = c.ProcessDiagnostics(ctx, &transportv1.ProcessDiagnosticsRequest{Caller: caller, ProcessId: id}, opts...)
		return err
	})
	if err != nil {
		return "", err
	}
	if resp.GetTruncated() {
		return resp.GetDiagnostics(), fmt.Errorf("manager: %s at %s: %w at %d bytes", op, address, ErrTruncated, len(resp.GetDiagnostics()))
	}
	return resp.GetDiagnostics(), nil
}

// Spawn asks the node at address to start a process of the kind and
// returns its id. See SpawnNamed.
func (m *Manager) Spawn(ctx context.Context, address, kind string) (string, error) {
	return m.SpawnNamed(ctx, address, kind, "")
}

// SpawnNamed asks the node at address to start a process of the kind,
// registered under name (none when it is empty), and returns its id.
//
// The peer's spawner has until ctx's deadline (DefaultSpawnTimeout when ctx
// has none; the peer allows at most 10 minutes): the request states it, so
// the spawner's context ends when the caller gives up. The errors wrap
// ErrUnknownKind, ErrNameTaken, ErrSpawnRefused (the spawner refused),
// ErrSpawnTimeout together with context.DeadlineExceeded, or, for a
// spawner that failed otherwise or panicked, ErrPeerFailed. See
// ListProcesses for what every such call carries and the other errors.
func (m *Manager) SpawnNamed(ctx context.Context, address, kind, name string) (string, error) {
	if !m.initialized() {
		return "", ErrNotInitialized
	}
	const op = "spawn"
	if err := checkArg(op, "kind", kind, false); err != nil {
		return "", err
	}
	if err := checkArg(op, "name", name, true); err != nil {
		return "", err
	}
	ctx, cancel := withDefaultTimeout(ctx, DefaultSpawnTimeout)
	defer cancel()
	deadline, _ := ctx.Deadline()
	ms := max(1, math.Ceil(float64(time.Until(deadline))/float64(time.Millisecond)))
	req := &transportv1.SpawnRequest{Kind: kind, Name: name, TimeoutMillis: uint32(min(ms, math.MaxUint32))}
	var resp *transportv1.SpawnResponse
	err := m.unary(ctx, op, address, func(ctx context.Context, c transportv1.TransportClient, caller *transportv1.Caller, opts ...grpc.CallOption) (err error) {
		req.Caller = caller
		resp, err = c.Spawn(ctx, req, opts...)
		return err
	})
	if err != nil {
		return "", err
	}
	return resp.GetProcessId(), nil
}

// checkArg refuses a request string the peer would refuse, or that gRPC
// could not encode.
func checkArg(op, what, s string, mayBeEmpty bool) error {
	switch {
	case s == "" && !mayBeEmpty:
		return fmt.Errorf("manager: %s: %w: empty %s", op, ErrInvalidArgument, what)
	case len(s) > MaxCallStringBytes:
		return fmt.Errorf("manager: %s: %w: %s longer than %d bytes", op, ErrInvalidArgument, what, MaxCallStringBytes)
	case !utf8.ValidString(s):
		return fmt.Errorf("manager: %s: %w: %s is not valid UTF-8", op, ErrInvalidArgument, what)
	}
	return nil
}

// unary makes one diagnostics or spawn call to address, on the cached call
// connection to it (see callConns), and turns a failure into the package's
// errors.
func (m *Manager) unary(ctx context.Context, op, address string, call func(context.Context, transportv1.TransportClient, *transportv1.Caller, ...grpc.CallOption) error) error {
	if m.closed.Load() {
		return ErrClosed
	}
	if strings.HasPrefix(address, ClientAddressPrefix) {
		return fmt.Errorf("manager: %s at %s: %w: a client-only node serves no calls", op, address, ErrNotSupported)
	}
	cc, err := m.calls.get(address, func() (*grpc.ClientConn, error) {
		return grpc.NewClient(address, m.dialOptions()...)
	})
	switch {
	case errors.Is(err, ErrClosed):
		return ErrClosed
	case err != nil:
		return fmt.Errorf("manager: %s at %s: %w", op, address, err)
	}
	if len(m.o.metadata) > 0 {
		ctx = metadata.AppendToOutgoingContext(ctx, m.o.metadata...)
	}
	caller := &transportv1.Caller{SystemId: m.o.systemID, Incarnation: m.incarnation, Address: m.advertised()}
	err = call(ctx, transportv1.NewTransportClient(cc.conn), caller, grpc.MaxCallRecvMsgSize(maxResponseBytes+64<<10))
	m.calls.put(cc, err)
	switch {
	case err == nil:
		return nil
	case m.closed.Load() && ctx.Err() == nil && cc.conn.GetState() == connectivity.Shutdown &&
		(status.Code(err) == codes.Canceled || status.Code(err) == codes.Unavailable):
		// Close closed the connection under the call.
		return fmt.Errorf("manager: %s at %s: %w", op, address, ErrClosed)
	}
	return newCallError(op, address, err)
}

// callError is a failed diagnostics or spawn call: it matches the
// package's sentinels with errors.Is and gives the peer's status to
// status.FromError.
type callError struct {
	text string
	errs []error // the sentinels it wraps
	st   *status.Status
}

func (e *callError) Error() string              { return e.text }
func (e *callError) Unwrap() []error            { return e.errs }
func (e *callError) GRPCStatus() *status.Status { return e.st }

// newCallError turns the error of a call into a callError: a refusal at
// the peer's gates (a CallRefused detail) into a *wire.RefusedError, the
// codes of the calls into their sentinels. NotFound and PermissionDenied
// mean one thing for Spawn and another for the others.
func newCallError(op, address string, err error) error {
	st, ok := status.FromError(err)
	if !ok {
		return fmt.Errorf("manager: %s at %s: %w", op, address, err)
	}
	prefix := fmt.Sprintf("manager: %s at %s: ", op, address)
	for _, d := range st.Details() {
		if r, ok := d.(*transportv1.CallRefused); ok {
			refusal := wire.Refuse(r.GetReason(), "%s", st.Message())
			return &callError{text: prefix + refusal.Error(), errs: []error{refusal}, st: st}
		}
	}
	spawn := op == "spawn"
	var errs []error
	switch st.Code() {
	case codes.Unimplemented:
		errs = []error{ErrNotSupported}
	case codes.NotFound:
		errs = []error{ErrProcessNotFound}
		if spawn {
			errs = []error{ErrUnknownKind}
		}
	case codes.AlreadyExists:
		errs = []error{ErrNameTaken}
	case codes.PermissionDenied:
		errs = []error{ErrRefused}
		if spawn {
			errs = []error{ErrSpawnRefused}
		}
	case codes.DeadlineExceeded:
		errs = []error{context.DeadlineExceeded}
		if spawn {
			errs = []error{ErrSpawnTimeout, context.DeadlineExceeded}
		}
	case codes.Canceled:
		errs = []error{context.Canceled}
	case codes.Internal:
		errs = []error{ErrPeerFailed}
	case codes.InvalidArgument:
		errs = []error{ErrInvalidArgument}
	default:
		return &callError{text: prefix + st.Code().String() + ": " + st.Message(), st: st}
	}
	return &callError{text: prefix + errs[0].Error() + ": " + st.Message(), errs: errs, st: st}
}
