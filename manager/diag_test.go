package manager

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/courier-go/courier/internal/testutil"
	courierv1 "github.com/courier-go/courier/proto/courier/v1"
	"github.com/courier-go/courier/proto/courier/v1/transportv1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
)

// registryFuncs is a ProcessRegistry made of functions.
type registryFuncs struct {
	list func(ctx context.Context, filter string) ([]ProcessInfo, error)
	diag func(ctx context.Context, id string) (string, error)
}

func (r registryFuncs) ListProcesses(ctx context.Context, filter string) ([]ProcessInfo, error) {
	return r.list(ctx, filter)
}

func (r registryFuncs) ProcessDiagnostics(ctx context.Context, id string) (string, error) {
	return r.diag(ctx, id)
}

// spawnFunc is a Spawner made of a function.
type spawnFunc func(ctx context.Context, kind, name string) (string, error)

func (f spawnFunc) Spawn(ctx context.Context, kind, name string) (string, error) {
	return f(ctx, kind, name)
}

// fakeRegistry lists fixed processes, filtered by a substring of the name,
// and knows the diagnostics of each.
func fakeRegistry(procs ...ProcessInfo) registryFuncs {
	return registryFuncs{
		list: func(_ context.Context, filter string) ([]ProcessInfo, error) {
			var out []ProcessInfo
			for _, p := range procs {
				if strings.Contains(p.Name, filter) {
					out = append(out, p)
				}
			}
			return out, nil
		},
		diag: func(_ context.Context, id string) (string, error) {
			for _, p := range procs {
				if p.ID == id {
					return fmt.Sprintf("%s (%s): mailbox 0, running", p.ID, p.Kind), nil
				}
			}
			return "", fmt.Errorf("no process %q: %w", id, ErrProcessNotFound)
		},
	}
}

// fakeSpawner knows kind "worker", refuses kind "secret", and counts its
// calls.
type fakeSpawner struct {
	mu    sync.Mutex
	names map[string]bool
	n     int
	calls atomic.Int32
	// deadline is how long the context of the last call had to run.
	deadline time.Duration
}

func (s *fakeSpawner) lastDeadline() time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.deadline
}

func (s *fakeSpawner) Spawn(ctx context.Context, kind, name string) (string, error) {
	s.calls.Add(1)
	s.mu.Lock()
	defer s.mu.Unlock()
	if d, ok := ctx.Deadline(); ok {
		s.deadline = time.Until(d)
	}
	switch kind {
	case "worker":
	case "secret":
		return "", fmt.Errorf("%w: kind %q is not spawned remotely", ErrSpawnRefused, kind)
	default:
		return "", fmt.Errorf("%w: %q", ErrUnknownKind, kind)
	}
	if name == "" {
		s.n++
		return fmt.Sprintf("worker/%d", s.n), nil
	}
	if s.names[name] {
		return "", fmt.Errorf("%q: %w", name, ErrNameTaken)
	}
	if s.names == nil {
		s.names = map[string]bool{}
	}
	s.names[name] = true
	return name, nil
}

// blocker blocks embedder calls, whatever their context, until it is
// released.
type blocker struct {
	release chan struct{}
	once    sync.Once
	active  atomic.Int32
}

func newBlocker() *blocker { return &blocker{release: make(chan struct{})} }

func (b *blocker) block() {
	b.active.Add(1)
	defer b.active.Add(-1)
	<-b.release
}

func (b *blocker) unblock() { b.once.Do(func() { close(b.release) }) }

// releaseAtEnd releases the blocked calls when the test ends, before the
// cleanups registered earlier (the nodes' Close), and waits for them.
func (b *blocker) releaseAtEnd(t *testing.T) {
	t.Cleanup(func() {
		b.unblock()
		testutil.Eventually(t, "the blocked embedder calls to return", patience, func() bool { return b.active.Load() == 0 })
	})
}

// newCaller returns a client-only node, closed at the end of the test.
func newCaller(t *testing.T, opts ...Option) *Manager {
	t.Helper()
	m, err := New(append([]Option{WithHandler(newCollector())}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = m.Close(ctx)
	})
	return m
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

var testProcs = []ProcessInfo{
	{ID: "p/1", Name: "worker-a", Kind: "worker"},
	{ID: "p/2", Name: "cache", Kind: "cache"},
	{ID: "p/3", Name: "worker-b", Kind: "worker"},
}

// TestDiagListProcesses lists a peer's processes, all of them and by name.
func TestDiagListProcesses(t *testing.T) {
	t.Parallel()
	server := newNode(t, newCollector(), WithProcessRegistry(fakeRegistry(testProcs...)))
	caller := newCaller(t)
	ctx := testCtx(t)
	for _, tc := range []struct {
		filter string
		want   []ProcessInfo
	}{
		{"", testProcs},
		{"worker", []ProcessInfo{testProcs[0], testProcs[2]}},
		{"nobody", []ProcessInfo{}},
	} {
		got, err := caller.ListProcesses(ctx, server.Addr(), tc.filter)
		if err != nil {
			t.Fatalf("filter %q: %v", tc.filter, err)
		}
		if !slices.Equal(got, tc.want) {
			t.Errorf("filter %q: got %v, want %v", tc.filter, got, tc.want)
		}
	}
}

// TestDiagProcessDiagnostics reads a process's diagnostics, and asks for
// one that does not exist.
func TestDiagProcessDiagnostics(t *testing.T) {
	t.Parallel()
	server := newNode(t, newCollector(), WithProcessRegistry(fakeRegistry(testProcs...)))
	caller := newCaller(t)
	ctx := testCtx(t)
	text, err := caller.ProcessDiagnostics(ctx, server.Addr(), "p/2")
	if err != nil || text != "p/2 (cache): mailbox 0, running" {
		t.Fatalf("diagnostics of p/2: %q, %v", text, err)
	}
	_, err = caller.ProcessDiagnostics(ctx, server.Addr(), "p/9")
	if !errors.Is(err, ErrProcessNotFound) || status.Code(err) != codes.NotFound {
		t.Fatalf("unknown process: %v (code %v), want ErrProcessNotFound (NotFound)", err, status.Code(err))
	}
	if !strings.Contains(err.Error(), `no process "p/9"`) {
		t.Errorf("error %q lacks the registry's message", err)
	}
	if _, err := caller.ProcessDiagnostics(ctx, server.Addr(), ""); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("empty id: %v, want ErrInvalidArgument", err)
	}
}

// TestSpawn spawns processes, named and not, and checks that each failure
// of the spawner reaches the caller as its sentinel.
func TestSpawn(t *testing.T) {
	t.Parallel()
	sp := &fakeSpawner{}
	server := newNode(t, newCollector(), WithSpawner(sp))
	caller := newCaller(t)
	ctx := testCtx(t)
	addr := server.Addr()

	if id, err := caller.Spawn(ctx, addr, "worker"); err != nil || id != "worker/1" {
		t.Fatalf("Spawn: %q, %v", id, err)
	}
	if id, err := caller.SpawnNamed(ctx, addr, "worker", "alice"); err != nil || id != "alice" {
		t.Fatalf("SpawnNamed: %q, %v", id, err)
	}
	for _, tc := range []struct {
		kind, name string
		want       error
		code       codes.Code
	}{
		{"worker", "alice", ErrNameTaken, codes.AlreadyExists},
		{"dragon", "", ErrUnknownKind, codes.NotFound},
		{"secret", "", ErrSpawnRefused, codes.PermissionDenied},
	} {
		id, err := caller.SpawnNamed(ctx, addr, tc.kind, tc.name)
		if !errors.Is(err, tc.want) || status.Code(err) != tc.code || id != "" {
			t.Errorf("SpawnNamed(%q, %q) = %q, %v (code %v); want %v (%v)", tc.kind, tc.name, id, err, status.Code(err), tc.want, tc.code)
		}
		if errors.Is(err, ErrProcessNotFound) || errors.Is(err, ErrUnauthorized) {
			t.Errorf("SpawnNamed(%q, %q): %v matches another sentinel", tc.kind, tc.name, err)
		}
		if n := strings.Count(err.Error(), tc.want.Error()); n != 1 {
			t.Errorf("SpawnNamed(%q, %q): %q names %q %d times, want once", tc.kind, tc.name, err, tc.want, n)
		}
	}
	if _, err := caller.Spawn(ctx, addr, ""); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("empty kind: %v, want ErrInvalidArgument", err)
	}

	// The caller's deadline bounds the spawner's context; without one,
	// DefaultSpawnTimeout does.
	short, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	if _, err := caller.Spawn(short, addr, "worker"); err != nil {
		t.Fatal(err)
	}
	if d := sp.lastDeadline(); d <= 0 || d > 3*time.Second {
		t.Errorf("the spawner had %v with a caller's deadline of 3s", d)
	}
	if _, err := caller.Spawn(context.Background(), addr, "worker"); err != nil {
		t.Fatal(err)
	}
	if d := sp.lastDeadline(); d <= 3*time.Second || d > DefaultSpawnTimeout {
		t.Errorf("the spawner had %v without a caller's deadline, want about %v", d, DefaultSpawnTimeout)
	}
}

// TestSpawnTimeout: a spawner that ignores its context and blocks. The
// caller sees ErrSpawnTimeout and context.DeadlineExceeded at its deadline;
// the server answers at the request's timeout by itself, and can close
// while the spawner still blocks.
func TestSpawnTimeout(t *testing.T) {
	t.Parallel()
	b := newBlocker()
	server := newNode(t, newCollector(), WithSpawner(spawnFunc(func(context.Context, string, string) (string, error) {
		b.block() // ignores ctx
		return "late", nil
	})))
	b.releaseAtEnd(t)
	caller := newCaller(t)

	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	id, err := caller.Spawn(ctx, server.Addr(), "worker")
	if !errors.Is(err, ErrSpawnTimeout) || !errors.Is(err, context.DeadlineExceeded) || id != "" {
		t.Fatalf("Spawn with a blocking spawner: %q, %v; want ErrSpawnTimeout and context.DeadlineExceeded", id, err)
	}

	// A call without a gRPC deadline, whose request states 200ms: the
	// server's handler answers DeadlineExceeded itself.
	conn, err := grpc.NewClient(server.Addr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	guard := testCtx(t)
	_, err = transportv1.NewTransportClient(conn).Spawn(guard, &transportv1.SpawnRequest{
		Caller: &transportv1.Caller{SystemId: "raw", Incarnation: 1}, Kind: "worker", TimeoutMillis: 200,
	})
	if status.Code(err) != codes.DeadlineExceeded || guard.Err() != nil {
		t.Fatalf("raw Spawn with a 200ms timeout: %v, want the server's DeadlineExceeded", err)
	}

	// No handler is left waiting for the spawner: Close, which waits for
	// the handlers, does not wait for it.
	closed := make(chan error, 1)
	go func() { closed <- server.Close(context.Background()) }()
	timer := time.NewTimer(30 * time.Second) // a hang, not a timing
	defer timer.Stop()
	select {
	case err := <-closed:
		if err != nil {
			t.Fatal(err)
		}
	case <-timer.C:
		t.Error("Close waits for the blocked spawner")
		b.unblock()
		<-closed
	}
	if b.active.Load() == 0 {
		t.Error("the spawner was not called, or not blocked")
	}
}

// TestDiagRegistryIgnoresDeadline: a registry that blocks, ignoring its
// context, holds neither the caller nor the server past the deadline.
func TestDiagRegistryIgnoresDeadline(t *testing.T) {
	t.Parallel()
	b := newBlocker()
	server := newNode(t, newCollector(), WithProcessRegistry(registryFuncs{
		list: func(context.Context, string) ([]ProcessInfo, error) { b.block(); return nil, nil },
		diag: func(context.Context, string) (string, error) { b.block(); return "", nil },
	}))
	b.releaseAtEnd(t)
	caller := newCaller(t)

	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if _, err := caller.ListProcesses(ctx, server.Addr(), ""); !errors.Is(err, context.DeadlineExceeded) || errors.Is(err, ErrSpawnTimeout) {
		t.Errorf("ListProcesses: %v, want context.DeadlineExceeded only", err)
	}
	ctx2, cancel2 := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel2()
	if _, err := caller.ProcessDiagnostics(ctx2, server.Addr(), "p/1"); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("ProcessDiagnostics: %v, want context.DeadlineExceeded", err)
	}
}

// TestSpawnPanic: a spawner and a registry that panic. The caller gets
// ErrPeerFailed, without the panic's text; the node goes on serving calls
// and streams.
func TestSpawnPanic(t *testing.T) {
	t.Parallel()
	recv := newCollector()
	sp := &fakeSpawner{}
	server := newNode(t, recv,
		WithSpawner(spawnFunc(func(ctx context.Context, kind, name string) (string, error) {
			if kind == "boom" {
				panic("secret panic value")
			}
			return sp.Spawn(ctx, kind, name)
		})),
		WithProcessRegistry(registryFuncs{
			list: func(context.Context, string) ([]ProcessInfo, error) { panic("list panic") },
			diag: func(context.Context, string) (string, error) { panic(errors.New("diag panic")) },
		}))
	caller := newCaller(t)
	ctx := testCtx(t)

	_, err := caller.Spawn(ctx, server.Addr(), "boom")
	if !errors.Is(err, ErrPeerFailed) || status.Code(err) != codes.Internal {
		t.Fatalf("panicking spawner: %v, want ErrPeerFailed (Internal)", err)
	}
	if strings.Contains(err.Error(), "secret") {
		t.Errorf("the panic's value reached the caller: %v", err)
	}
	if _, err := caller.ListProcesses(ctx, server.Addr(), ""); !errors.Is(err, ErrPeerFailed) {
		t.Errorf("panicking registry: %v, want ErrPeerFailed", err)
	}
	if _, err := caller.ProcessDiagnostics(ctx, server.Addr(), "x"); !errors.Is(err, ErrPeerFailed) {
		t.Errorf("panicking registry: %v, want ErrPeerFailed", err)
	}
	if id, err := caller.Spawn(ctx, server.Addr(), "worker"); err != nil || id != "worker/1" {
		t.Fatalf("Spawn after the panics: %q, %v", id, err)
	}
	if err := caller.Send(ctx, server.Addr(), &Envelope{Target: "x", Payload: []byte("still here")}); err != nil {
		t.Fatal(err)
	}
	if got := recv.wait(t, 1, 20*time.Second); string(got[0].Payload) != "still here" {
		t.Fatalf("delivered %q", got[0].Payload)
	}
}

// TestDiagNotSupported: a node without a registry or a spawner answers
// Unimplemented, which the caller sees as ErrNotSupported; so does a
// client-only address, without a call.
func TestDiagNotSupported(t *testing.T) {
	t.Parallel()
	bare := newNode(t, newCollector())
	spawnOnly := newNode(t, newCollector(), WithSpawner(&fakeSpawner{}))
	caller := newCaller(t)
	ctx := testCtx(t)
	check := func(what string, err error, code codes.Code) {
		t.Helper()
		if !errors.Is(err, ErrNotSupported) || status.Code(err) != code {
			t.Errorf("%s: %v (code %v), want ErrNotSupported (%v)", what, err, status.Code(err), code)
		}
	}
	_, err := caller.ListProcesses(ctx, bare.Addr(), "")
	check("ListProcesses", err, codes.Unimplemented)
	_, err = caller.ProcessDiagnostics(ctx, bare.Addr(), "p/1")
	check("ProcessDiagnostics", err, codes.Unimplemented)
	_, err = caller.Spawn(ctx, bare.Addr(), "worker")
	check("Spawn", err, codes.Unimplemented)
	_, err = caller.ListProcesses(ctx, spawnOnly.Addr(), "")
	check("ListProcesses from a node with a spawner only", err, codes.Unimplemented)
	_, err = caller.Spawn(ctx, ClientAddressPrefix+"cli:1", "worker")
	check("Spawn at a client-only address", err, codes.Unknown)
}

// TestDiagBlockedCaller: a blocked system is refused before the embedder
// is asked, with ErrBlocked, not with the spawner's own refusal; Unblock
// lets it in again. A request without a caller is refused as invalid.
func TestDiagBlockedCaller(t *testing.T) {
	t.Parallel()
	sp := &fakeSpawner{}
	server := newNode(t, newCollector(), WithBlockList("intruder"),
		WithSpawner(sp), WithProcessRegistry(fakeRegistry(testProcs...)))
	refusals := watch(server)
	intruder := newCaller(t, WithSystemID("intruder"))
	ctx := testCtx(t)

	_, err := intruder.Spawn(ctx, server.Addr(), "worker")
	if !errors.Is(err, ErrBlocked) || !errors.Is(err, ErrRefused) || status.Code(err) != codes.PermissionDenied {
		t.Fatalf("blocked Spawn: %v (code %v), want ErrBlocked (PermissionDenied)", err, status.Code(err))
	}
	if errors.Is(err, ErrSpawnRefused) {
		t.Errorf("blocked Spawn: %v is also ErrSpawnRefused", err)
	}
	if _, err := intruder.ListProcesses(ctx, server.Addr(), ""); !errors.Is(err, ErrBlocked) {
		t.Errorf("blocked ListProcesses: %v, want ErrBlocked", err)
	}
	if _, err := intruder.ProcessDiagnostics(ctx, server.Addr(), "p/1"); !errors.Is(err, ErrBlocked) {
		t.Errorf("blocked ProcessDiagnostics: %v, want ErrBlocked", err)
	}
	if n := sp.calls.Load(); n != 0 {
		t.Errorf("the spawner was called %d times for a blocked caller", n)
	}
	refusals.waitFor(t, "a refusal event", 5*time.Second, func(e Event) bool {
		return e.Type == EventPeerRefused && e.Peer.SystemID == "intruder" && errors.Is(e.Err, ErrBlocked)
	})

	server.Unblock("intruder")
	if _, err := intruder.Spawn(ctx, server.Addr(), "worker"); err != nil {
		t.Fatalf("Spawn after Unblock: %v", err)
	}
	server.Block("intruder")
	if _, err := intruder.Spawn(ctx, server.Addr(), "worker"); !errors.Is(err, ErrBlocked) {
		t.Fatalf("Spawn after Block: %v, want ErrBlocked", err)
	}

	// A caller that does not say who it is is refused too.
	conn, err := grpc.NewClient(server.Addr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_, err = transportv1.NewTransportClient(conn).Spawn(ctx, &transportv1.SpawnRequest{Kind: "worker"})
	st, _ := status.FromError(err)
	if d := st.Details(); st.Code() != codes.InvalidArgument || len(d) != 1 ||
		d[0].(*transportv1.CallRefused).GetReason() != courierv1.RefuseReason_REFUSE_REASON_INVALID {
		t.Errorf("Spawn without a caller: %v, details %v; want InvalidArgument, refused as invalid", err, st.Details())
	}
	if n := sp.calls.Load(); n != 1 {
		t.Errorf("the spawner was called %d times, want once (after Unblock)", n)
	}
}

// TestDiagAuthorizer: the authoriser judges each call with the caller's
// identity, its handshake metadata and the method; a refusal (or a panic)
// is ErrUnauthorized, and the embedder is not asked. Streams still pass
// the same authoriser.
func TestDiagAuthorizer(t *testing.T) {
	t.Parallel()
	type seen struct {
		creds  PeerCredentials
		method string
	}
	var mu sync.Mutex
	var last seen
	authorize := func(ctx context.Context, c PeerCredentials) error {
		method, _ := grpc.Method(ctx)
		mu.Lock()
		last = seen{c, method}
		mu.Unlock()
		switch tok := c.Metadata.Get("courier-token"); {
		case len(tok) == 1 && tok[0] == "panic":
			panic("authoriser bug")
		case len(tok) != 1 || tok[0] != "s3cret":
			return errors.New("bad token")
		case c.Peer.SystemID == "reader" && method == transportv1.Transport_Spawn_FullMethodName:
			return errors.New("readers may not spawn")
		}
		return nil
	}
	sp := &fakeSpawner{}
	recv := newCollector()
	server := newNode(t, recv, WithAuthorizer(authorize), WithSpawner(sp), WithProcessRegistry(fakeRegistry(testProcs...)))
	ctx := testCtx(t)

	ops := newNode(t, newCollector(), WithSystemID("ops"), WithHandshakeMetadata("courier-token", "s3cret"))
	if _, err := ops.Spawn(ctx, server.Addr(), "worker"); err != nil {
		t.Fatalf("authorised Spawn: %v", err)
	}
	mu.Lock()
	got := last
	mu.Unlock()
	if want := (Peer{SystemID: "ops", Address: ops.Addr(), Incarnation: ops.Incarnation()}); got.creds.Peer != want {
		t.Errorf("the authoriser saw %+v, want %+v", got.creds.Peer, want)
	}
	if got.method != transportv1.Transport_Spawn_FullMethodName {
		t.Errorf("the authoriser saw method %q", got.method)
	}

	calls := sp.calls.Load()
	for _, tc := range []struct {
		name, system, token, want string
	}{
		{"bad token", "ops", "wrong", "bad token"},
		{"no token", "ops", "", "bad token"},
		{"reader spawns", "reader", "s3cret", "readers may not spawn"},
		{"authoriser panics", "ops", "panic", "authoriser panicked"},
	} {
		opts := []Option{WithSystemID(tc.system)}
		if tc.token != "" {
			opts = append(opts, WithHandshakeMetadata("courier-token", tc.token))
		}
		c := newCaller(t, opts...)
		_, err := c.Spawn(ctx, server.Addr(), "worker")
		if !errors.Is(err, ErrUnauthorized) || status.Code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v (code %v), want ErrUnauthorized (PermissionDenied) with %q", tc.name, err, status.Code(err), tc.want)
		}
	}
	if n := sp.calls.Load(); n != calls {
		t.Errorf("the spawner was called %d times for refused callers", n-calls)
	}
	reader := newCaller(t, WithSystemID("reader"), WithHandshakeMetadata("courier-token", "s3cret"))
	if procs, err := reader.ListProcesses(ctx, server.Addr(), "cache"); err != nil || len(procs) != 1 {
		t.Errorf("a reader's ListProcesses: %v, %v", procs, err)
	}

	// The stream handshake goes through the same authoriser.
	if err := ops.Send(ctx, server.Addr(), &Envelope{Target: "x", Payload: []byte("hi")}); err != nil {
		t.Fatal(err)
	}
	recv.wait(t, 1, 20*time.Second)
	mu.Lock()
	method := last.method
	mu.Unlock()
	if method != transportv1.Transport_Connect_FullMethodName {
		t.Errorf("the stream's authorisation saw method %q", method)
	}
}

// TestDiagOverTLS: the calls dial with the node's TLS configuration; a
// mutual-TLS server's authoriser sees the caller's certificate, and a
// caller without TLS does not get through.
func TestDiagOverTLS(t *testing.T) {
	t.Parallel()
	ca := newTestCA(t, "test CA")
	server := newNode(t, newCollector(),
		WithServerTLS(&tls.Config{
			Certificates: []tls.Certificate{ca.issue(t, "server")},
			ClientAuth:   tls.RequireAndVerifyClientCert,
			ClientCAs:    ca.pool,
			MinVersion:   tls.VersionTLS13,
		}),
		WithAuthorizer(func(_ context.Context, c PeerCredentials) error {
			if len(c.Certificates) == 0 || c.Certificates[0].Subject.CommonName != "alpha" {
				return errors.New("unknown client")
			}
			return nil
		}),
		WithSpawner(&fakeSpawner{}))
	ctx := testCtx(t)

	alpha := newCaller(t, WithClientTLS(&tls.Config{
		RootCAs: ca.pool, Certificates: []tls.Certificate{ca.issue(t, "alpha")}, MinVersion: tls.VersionTLS13,
	}))
	if id, err := alpha.Spawn(ctx, server.Addr(), "worker"); err != nil || id != "worker/1" {
		t.Fatalf("Spawn over mutual TLS: %q, %v", id, err)
	}
	beta := newCaller(t, WithClientTLS(&tls.Config{
		RootCAs: ca.pool, Certificates: []tls.Certificate{ca.issue(t, "beta")}, MinVersion: tls.VersionTLS13,
	}))
	if _, err := beta.Spawn(ctx, server.Addr(), "worker"); !errors.Is(err, ErrUnauthorized) || !strings.Contains(err.Error(), "unknown client") {
		t.Errorf("Spawn with another certificate: %v, want ErrUnauthorized", err)
	}
	plain := newCaller(t)
	if id, err := plain.Spawn(ctx, server.Addr(), "worker"); err == nil {
		t.Errorf("Spawn in plain text to a TLS server: %q", id)
	}
}

// TestDiagBoundedAnswers: what the embedder returns is cut to the bounds:
// the list to MaxListedProcesses entries and to the response size, the
// diagnostics to MaxDiagnosticsBytes and valid UTF-8, an error's text to
// MaxCallStringBytes; the caller is told with ErrTruncated.
func TestDiagBoundedAnswers(t *testing.T) {
	t.Parallel()
	many := make([]ProcessInfo, 1500)
	for i := range many {
		many[i] = ProcessInfo{ID: fmt.Sprintf("p/%d", i), Name: fmt.Sprintf("n%d", i), Kind: "worker"}
	}
	long := strings.Repeat("x", 5000)
	big := make([]ProcessInfo, 1000)
	for i := range big {
		big[i] = ProcessInfo{ID: fmt.Sprint(i), Name: long, Kind: long}
	}
	diag := strings.Repeat("é", MaxDiagnosticsBytes) + "\xff" // 2 bytes each, and a bad byte
	server := newNode(t, newCollector(),
		WithProcessRegistry(registryFuncs{
			list: func(_ context.Context, filter string) ([]ProcessInfo, error) {
				if filter == "big" {
					return big, nil
				}
				return many, nil
			},
			diag: func(_ context.Context, id string) (string, error) {
				if id == "bad" {
					return "ok \xff\xfe", nil
				}
				return diag, nil
			},
		}),
		WithSpawner(spawnFunc(func(context.Context, string, string) (string, error) {
			return "", errors.New(strings.Repeat("long failure ", 1000))
		})))
	caller := newCaller(t)
	ctx := testCtx(t)

	procs, err := caller.ListProcesses(ctx, server.Addr(), "")
	if !errors.Is(err, ErrTruncated) || len(procs) != MaxListedProcesses || procs[999] != many[999] {
		t.Errorf("1500 processes: got %d, %v; want the first %d and ErrTruncated", len(procs), err, MaxListedProcesses)
	}
	procs, err = caller.ListProcesses(ctx, server.Addr(), "big")
	if !errors.Is(err, ErrTruncated) || len(procs) == 0 || len(procs) >= len(big) {
		t.Errorf("1000 long entries: got %d, %v; want fewer and ErrTruncated", len(procs), err)
	}
	size := 0
	for _, p := range procs {
		if len(p.Name) > MaxCallStringBytes || len(p.Kind) > MaxCallStringBytes {
			t.Fatalf("a field of %d bytes", max(len(p.Name), len(p.Kind)))
		}
		size += len(p.ID) + len(p.Name) + len(p.Kind)
	}
	if size > maxResponseBytes {
		t.Errorf("listed %d bytes, bound %d", size, maxResponseBytes)
	}

	text, err := caller.ProcessDiagnostics(ctx, server.Addr(), "p/1")
	if !errors.Is(err, ErrTruncated) || len(text) > MaxDiagnosticsBytes || len(text) < MaxDiagnosticsBytes-1 || !utf8.ValidString(text) {
		t.Errorf("long diagnostics: %d bytes (valid UTF-8: %v), %v", len(text), utf8.ValidString(text), err)
	}
	if text, err := caller.ProcessDiagnostics(ctx, server.Addr(), "bad"); err != nil || text != "ok \uFFFD" {
		t.Errorf("diagnostics with bad bytes: %q, %v", text, err)
	}

	_, err = caller.Spawn(ctx, server.Addr(), "worker")
	st, _ := status.FromError(err)
	if !errors.Is(err, ErrPeerFailed) || st.Code() != codes.Internal || len(st.Message()) > MaxCallStringBytes {
		t.Errorf("a long error: %d bytes, code %v, %v", len(st.Message()), st.Code(), errors.Is(err, ErrPeerFailed))
	}
}
