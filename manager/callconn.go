package manager

import (
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/status"
)

// Bounds of the connections cached for the diagnostics and spawn calls.
const (
	// maxCallConns is the most peers a node keeps a call connection to;
	// beyond it the least recently used one that no call is using is
	// closed.
	maxCallConns = 64
	// callConnIdle is how long a call connection is kept without a call.
	callConnIdle = time.Minute
)

// callConns caches the connections of the diagnostics and spawn calls (see
// Manager.unary), one per peer address, so that a node that asks a peer
// again does not dial again and pay a TCP and TLS handshake per call. The
// streams' connections are not shared: their lifecycle is the endpoint's.
//
// Invariants: conns holds at most maxCallConns entries, except while more
// calls to distinct peers are in flight than that; an entry in conns is
// open; an entry out of it that calls still use is in stale, and is closed
// when the last of them returns. After closeAll every connection is
// closed, and get refuses with ErrClosed.
//
// Concurrency: safe for concurrent use. Connections are closed outside mu;
// closing counts each such close, so that closeAll returns after them.
type callConns struct {
	mu      sync.Mutex
	conns   map[string]*callConn   // address → its connection
	stale   map[*callConn]struct{} // out of conns, still used by calls
	closed  bool
	tick    uint64         // counts uses: the LRU clock
	closing sync.WaitGroup // closes in progress outside mu
	// afterFunc starts the idle timer; time.AfterFunc unless a test
	// drives the clock.
	afterFunc func(time.Duration, func()) interface{ Stop() bool }
}

// callConn is one cached connection.
type callConn struct {
	address string
	conn    *grpc.ClientConn
	users   int    // calls in flight on it
	used    uint64 // the tick of its last use
	// idle closes it after callConnIdle without a call; nil while a call
	// uses it.
	idle   interface{ Stop() bool }
	cached bool // in conns
	done   bool // closed, or being closed
}

// get returns the connection to address, in use by the caller until it
// calls put: the cached one, or one made by dial.
func (c *callConns) get(address string, dial func() (*grpc.ClientConn, error)) (*callConn, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, ErrClosed
	}
	e := c.conns[address]
	if e == nil {
		conn, err := dial() // grpc.NewClient: no I/O until the first call
		if err != nil {
			return nil, err
		}
		if c.conns == nil {
			c.conns = make(map[string]*callConn)
		}
		e = &callConn{address: address, conn: conn, cached: true}
		c.conns[address] = e
	}
	if e.idle != nil {
		e.idle.Stop()
		e.idle = nil
	}
	e.users++
	c.tick++
	e.used = c.tick
	c.evictLocked()
	return e, nil
}

// put ends the caller's use of e, which returned err. A connection that
// failed with a transport error leaves the cache, so that the next call to
// its address dials again; one that no call uses is closed if it left the
// cache, and starts its idle timer otherwise.
func (c *callConns) put(e *callConn, err error) {
	failed := err != nil && transportFailed(err, e.conn)
	c.mu.Lock()
	defer c.mu.Unlock()
	e.users--
	if failed && e.cached {
		c.uncacheLocked(e)
	}
	switch {
	case e.users > 0 || e.done:
	case !e.cached:
		delete(c.stale, e)
		c.closeLocked(e)
	case !c.closed:
		used := e.used // a later use makes this timer stale
		e.idle = c.startTimer(func() { c.expire(e, used) })
		c.evictLocked()
	}
}

// expire closes e, idle since its use at tick used, unless it was used
// again since.
func (c *callConns) expire(e *callConn, used uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed || e.done || !e.cached || e.users > 0 || e.used != used {
		return
	}
	c.uncacheLocked(e)
	c.closeLocked(e)
}

// evictLocked closes the least recently used connections that no call
// uses while the cache holds more than maxCallConns.
func (c *callConns) evictLocked() {
	for len(c.conns) > maxCallConns {
		var lru *callConn
		for _, e := range c.conns {
			if e.users == 0 && (lru == nil || e.used < lru.used) {
				lru = e
			}
		}
		if lru == nil {
			return // all in use: put evicts when one is free
		}
		c.uncacheLocked(lru)
		c.closeLocked(lru)
	}
}

// uncacheLocked takes e out of conns; while calls use it, it is stale.
func (c *callConns) uncacheLocked(e *callConn) {
	delete(c.conns, e.address)
	e.cached = false
	if e.idle != nil {
		e.idle.Stop()
		e.idle = nil
	}
	if e.users > 0 {
		if c.stale == nil {
			c.stale = make(map[*callConn]struct{})
		}
		c.stale[e] = struct{}{}
	}
}

// closeLocked closes e's connection, outside mu.
func (c *callConns) closeLocked(e *callConn) {
	e.done = true
	c.closing.Add(1)
	go func() {
		defer c.closing.Done()
		_ = e.conn.Close()
	}()
}

// closeAll closes every connection, those that calls still use included
// (their calls fail), and returns once they are closed. Later gets refuse
// with ErrClosed.
func (c *callConns) closeAll() {
	c.mu.Lock()
	c.closed = true
	for _, e := range c.conns {
		c.uncacheLocked(e) // stale if in use
		if e.users == 0 {
			c.closeLocked(e)
		}
	}
	for e := range c.stale {
		delete(c.stale, e)
		if !e.done {
			c.closeLocked(e)
		}
	}
	c.mu.Unlock()
	c.closing.Wait()
}

// startTimer runs f after callConnIdle.
func (c *callConns) startTimer(f func()) interface{ Stop() bool } {
	if c.afterFunc != nil {
		return c.afterFunc(callConnIdle, f)
	}
	return time.AfterFunc(callConnIdle, f)
}

// transportFailed reports whether a call's error says that its connection
// failed: the call was unavailable, or the connection is not up (still
// connecting at the call's deadline, failing, or shut down). A peer's
// answer, its refusal or its embedder's error included, leaves the
// connection cached; so does one that went idle (gRPC dials it again).
func transportFailed(err error, conn *grpc.ClientConn) bool {
	if status.Code(err) == codes.Unavailable {
		return true
	}
	switch conn.GetState() {
	case connectivity.Ready, connectivity.Idle:
		return false
	}
	return true
}
