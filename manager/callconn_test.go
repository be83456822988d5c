package manager

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
)

// dialCounter counts the TCP connections a node dials, per address.
type dialCounter struct {
	mu sync.Mutex
	n  map[string]int
}

func (d *dialCounter) dial(ctx context.Context, addr string) (net.Conn, error) {
	d.mu.Lock()
	if d.n == nil {
		d.n = map[string]int{}
	}
	d.n[addr]++
	d.mu.Unlock()
	var nd net.Dialer
	return nd.DialContext(ctx, "tcp", addr)
}

func (d *dialCounter) count(addr string) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.n[addr]
}

// cachedConn returns m's cached call connection to addr, or nil.
func cachedConn(m *Manager, addr string) *grpc.ClientConn {
	m.calls.mu.Lock()
	defer m.calls.mu.Unlock()
	if e := m.calls.conns[addr]; e != nil {
		return e.conn
	}
	return nil
}

// TestCallConnReused: the diagnostics and spawn calls to one peer share
// one connection, dialed once; another peer gets its own; Close closes
// them, and later calls are refused with ErrClosed.
func TestCallConnReused(t *testing.T) {
	t.Parallel()
	a := newNode(t, newCollector(), WithSpawner(&fakeSpawner{}), WithProcessRegistry(fakeRegistry(testProcs...)))
	b := newNode(t, newCollector(), WithSpawner(&fakeSpawner{}))
	dials := &dialCounter{}
	caller, err := New(WithHandler(newCollector()), WithDialOptions(grpc.WithContextDialer(dials.dial)))
	if err != nil {
		t.Fatal(err)
	}
	closed := false
	t.Cleanup(func() {
		if !closed {
			_ = caller.Close(context.Background())
		}
	})
	ctx := testCtx(t)

	if _, err := caller.ListProcesses(ctx, a.Addr(), ""); err != nil {
		t.Fatal(err)
	}
	if _, err := caller.ProcessDiagnostics(ctx, a.Addr(), "p/1"); err != nil {
		t.Fatal(err)
	}
	if _, err := caller.ProcessDiagnostics(ctx, a.Addr(), "p/9"); !errors.Is(err, ErrProcessNotFound) {
		t.Fatalf("unknown process: %v", err) // an answer, not a transport failure
	}
	for range 3 {
		if _, err := caller.Spawn(ctx, a.Addr(), "worker"); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := caller.Spawn(ctx, b.Addr(), "worker"); err != nil {
		t.Fatal(err)
	}
	if n := dials.count(a.Addr()); n != 1 {
		t.Errorf("six calls to one peer dialed %d connections, want 1", n)
	}
	if n := dials.count(b.Addr()); n != 1 {
		t.Errorf("one call to another peer dialed %d connections, want 1", n)
	}
	conns := []*grpc.ClientConn{cachedConn(caller, a.Addr()), cachedConn(caller, b.Addr())}
	if conns[0] == nil || conns[1] == nil || conns[0] == conns[1] {
		t.Fatalf("cached connections %v, want one per peer", conns)
	}

	closed = true
	if err := caller.Close(ctx); err != nil {
		t.Fatal(err)
	}
	for i, c := range conns {
		if s := c.GetState(); s != connectivity.Shutdown {
			t.Errorf("connection %d is %v after Close, want Shutdown", i, s)
		}
	}
	if c := cachedConn(caller, a.Addr()); c != nil {
		t.Error("a connection is still cached after Close")
	}
	if _, err := caller.Spawn(ctx, a.Addr(), "worker"); !errors.Is(err, ErrClosed) {
		t.Errorf("Spawn after Close: %v, want ErrClosed", err)
	}
}

// TestCallConnClosedUnderCall: Close closes a connection a call is still
// using; the call returns ErrClosed at once, not at its deadline.
func TestCallConnClosedUnderCall(t *testing.T) {
	t.Parallel()
	started, release := make(chan struct{}), make(chan struct{})
	server := newNode(t, newCollector(), WithSpawner(spawnFunc(func(ctx context.Context, _, _ string) (string, error) {
		close(started)
		select {
		case <-release:
		case <-ctx.Done():
		}
		return "late", nil
	})))
	t.Cleanup(func() { close(release) }) // before the server's Close
	caller, err := New(WithHandler(newCollector()))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := caller.Spawn(context.Background(), server.Addr(), "worker") // DefaultSpawnTimeout: 10 s
		done <- err
	}()
	<-started
	if err := caller.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := <-done; !errors.Is(err, ErrClosed) {
		t.Errorf("a Spawn in flight at Close: %v, want ErrClosed", err)
	}
}

// TestCallConnDroppedOnFailure: a connection whose call fails with a
// transport error leaves the cache, so that the next call dials again.
func TestCallConnDroppedOnFailure(t *testing.T) {
	t.Parallel()
	server := newNode(t, newCollector(), WithSpawner(&fakeSpawner{}))
	caller := newCaller(t)
	ctx := testCtx(t)
	addr := server.Addr()
	if _, err := caller.Spawn(ctx, addr, "worker"); err != nil {
		t.Fatal(err)
	}
	if cachedConn(caller, addr) == nil {
		t.Fatal("no connection cached after a call")
	}
	if err := server.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := caller.Spawn(ctx, addr, "worker"); err == nil {
		t.Fatal("Spawn at a closed node succeeded")
	}
	if cachedConn(caller, addr) != nil {
		t.Error("the failed connection is still cached")
	}
}

// fakeTimers is a clock the test drives: it keeps the callConns' idle
// timers, and fire runs those not stopped.
type fakeTimers struct {
	timers []*fakeTimer
}

type fakeTimer struct {
	f       func()
	stopped bool
}

func (t *fakeTimer) Stop() bool {
	was := !t.stopped
	t.stopped = true
	return was
}

func (ft *fakeTimers) afterFunc(_ time.Duration, f func()) interface{ Stop() bool } {
	t := &fakeTimer{f: f}
	ft.timers = append(ft.timers, t)
	return t
}

// fire runs every timer, the stopped ones too (a timer that fired as it
// was stopped), and forgets them.
func (ft *fakeTimers) fire() {
	timers := ft.timers
	ft.timers = nil
	for _, t := range timers {
		t.f()
	}
}

// newTestCallConns returns a cache on the fake clock, whose connections
// never dial (no call is made on them), closed at the end of the test.
func newTestCallConns(t *testing.T) (*callConns, *fakeTimers) {
	ft := &fakeTimers{}
	c := &callConns{afterFunc: ft.afterFunc}
	t.Cleanup(c.closeAll)
	return c, ft
}

func testDial(addr string) func() (*grpc.ClientConn, error) {
	return func() (*grpc.ClientConn, error) {
		return grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	}
}

func mustGet(t *testing.T, c *callConns, addr string) *callConn {
	t.Helper()
	e, err := c.get(addr, testDial(addr))
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// TestCallConnsBounded: beyond maxCallConns the least recently used
// connection that no call uses is closed; one in use stays.
func TestCallConnsBounded(t *testing.T) {
	t.Parallel()
	c, _ := newTestCallConns(t)
	addr := func(i int) string { return fmt.Sprintf("127.0.0.1:%d", 1000+i) }
	held := mustGet(t, c, addr(0)) // in use throughout
	var first *callConn
	for i := 1; i <= maxCallConns+1; i++ {
		e := mustGet(t, c, addr(i))
		if i == 1 {
			first = e
		}
		c.put(e, nil)
	}
	c.closing.Wait()
	if n := len(c.conns); n != maxCallConns {
		t.Errorf("%d connections cached, want %d", n, maxCallConns)
	}
	if c.conns[addr(0)] != held {
		t.Error("the connection in use was evicted")
	}
	if c.conns[addr(1)] != nil || first.conn.GetState() != connectivity.Shutdown {
		t.Errorf("the least recently used connection is cached or open (%v)", first.conn.GetState())
	}
	if again := mustGet(t, c, addr(2)); c.conns[addr(2)] != again {
		t.Error("a cached connection was not reused")
	} else {
		c.put(again, nil)
	}
	c.put(held, nil)
}

// TestCallConnsIdle: a connection unused for callConnIdle is closed; a
// timer of an earlier idle spell does not close one used since.
func TestCallConnsIdle(t *testing.T) {
	t.Parallel()
	c, clock := newTestCallConns(t)
	e := mustGet(t, c, "127.0.0.1:1001")
	c.put(e, nil)
	if again := mustGet(t, c, "127.0.0.1:1001"); again != e {
		t.Fatal("the connection was not reused")
	}
	clock.fire() // the first idle timer, stopped as the connection was used again
	if c.conns["127.0.0.1:1001"] != e {
		t.Fatal("a stale idle timer closed a connection in use")
	}
	c.put(e, nil)
	clock.fire()
	c.closing.Wait()
	if c.conns["127.0.0.1:1001"] != nil || e.conn.GetState() != connectivity.Shutdown {
		t.Errorf("an idle connection is still cached or open (%v)", e.conn.GetState())
	}
}

// TestCallConnsClose: closeAll closes the connections calls still use
// and those that left the cache while in use; later gets are refused.
func TestCallConnsClose(t *testing.T) {
	t.Parallel()
	c, _ := newTestCallConns(t)
	inUse := mustGet(t, c, "127.0.0.1:1001")
	failing := mustGet(t, c, "127.0.0.1:1002")
	other := mustGet(t, c, "127.0.0.1:1002") // a second call on it
	if other != failing {
		t.Fatal("two calls to one address got two connections")
	}
	c.put(failing, status.Error(codes.Unavailable, "connection refused"))
	if got := mustGet(t, c, "127.0.0.1:1002"); got == failing {
		t.Fatal("a connection whose call failed was reused")
	} else {
		c.put(got, nil)
	}
	c.closeAll()
	for _, e := range []*callConn{inUse, other} {
		if s := e.conn.GetState(); s != connectivity.Shutdown {
			t.Errorf("%s is %v after closeAll, want Shutdown", e.address, s)
		}
	}
	c.put(inUse, nil)
	c.put(other, nil)
	if _, err := c.get("127.0.0.1:1001", testDial("127.0.0.1:1001")); !errors.Is(err, ErrClosed) {
		t.Errorf("get after closeAll: %v, want ErrClosed", err)
	}
}
