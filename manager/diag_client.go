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
	"github.com/courier-go/courier/proto/courier/v1/transportv1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// The client side of the diagnostics and spawn calls; the serving side is
// in diag.go.

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
	// The peer's text names the sentinel too when the peer is a courier
	// node: say it once.
	text := errs[0].Error()
	switch msg := st.Message(); {
	case strings.Contains(msg, text):
		text = msg
	case msg != "":
		text += ": " + msg
	}
	return &callError{text: prefix + text, errs: errs, st: st}
}
