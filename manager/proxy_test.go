package manager

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

const (
	proxyQueueLen    = 256             // chunks buffered per direction
	proxyReadBuf     = 32 << 10        // read buffer size per direction
	proxyDialTimeout = 2 * time.Second // timeout for dialing the target
	midFrameMinBytes = 64              // smallest chunk ResetMidFrame acts on
	acceptRetryPause = 10 * time.Millisecond
)

// faultProxy forwards TCP connections from its own 127.0.0.1 listener to a
// target address, and injects faults on command. It is safe for concurrent
// use. Every accepted connection is dialed through to the target and becomes
// a "pair"; each direction of a pair has a reader goroutine and a writer
// goroutine joined by a bounded queue, so a delay never stalls the reader.
type faultProxy struct {
	ln     net.Listener
	ctx    context.Context // cancelled by Close; bounds target dials
	cancel context.CancelFunc
	wg     sync.WaitGroup // every goroutine the proxy starts

	delay    atomic.Int64 // time.Duration added to every chunk
	refuse   atomic.Bool  // close new connections at once
	midFrame atomic.Bool  // one-shot ResetMidFrame fault is armed

	mu        sync.Mutex
	target    string
	blackHole bool
	closed    bool
	pairs     map[*proxyPair]struct{}

	closeOnce sync.Once
}

// proxyPair is one accepted client connection and its target connection.
type proxyPair struct {
	p          *faultProxy
	client     net.Conn
	server     net.Conn
	done       chan struct{} // closed when the pair is torn down
	blackHoled atomic.Bool   // traffic is discarded; closed by BlackHole(false)
	eofs       atomic.Int32  // directions that ended with a clean EOF
	closeOnce  sync.Once
}

// chunk is one read from a connection, queued for forwarding.
type chunk struct {
	data  []byte
	due   time.Time // not forwarded before this instant
	reset bool      // reset the pair after writing data (ResetMidFrame)
}

// newFaultProxy listens on 127.0.0.1:0 and forwards every accepted
// connection to target. It registers t.Cleanup(p.Close).
func newFaultProxy(t testing.TB, target string) *faultProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("faultProxy: listen: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	p := &faultProxy{ln: ln, ctx: ctx, cancel: cancel, target: target, pairs: make(map[*proxyPair]struct{})}
	p.wg.Go(p.acceptLoop)
	t.Cleanup(p.Close)
	return p
}

// Addr returns the proxy's listen address.
func (p *faultProxy) Addr() string { return p.ln.Addr().String() }

// SetTarget makes connections accepted from now on go to addr.
func (p *faultProxy) SetTarget(addr string) {
	p.mu.Lock()
	p.target = addr
	p.mu.Unlock()
}

// Cut closes every open pair (both sides, orderly close). New connections
// are still accepted and forwarded normally.
func (p *faultProxy) Cut() {
	for _, pr := range p.snapshot() {
		pr.close(false)
	}
}

// Reset is like Cut but abortive: both sockets are closed with SetLinger(0)
// so the peers see a TCP RST.
func (p *faultProxy) Reset() {
	for _, pr := range p.snapshot() {
		pr.close(true)
	}
}

// BlackHole(true) keeps existing and new connections open but forwards no
// byte in either direction; bytes read meanwhile are discarded.
// BlackHole(false) resumes forwarding for connections opened afterwards and
// closes every connection that was black-holed.
func (p *faultProxy) BlackHole(on bool) {
	var victims []*proxyPair
	p.mu.Lock()
	p.blackHole = on
	for pr := range p.pairs {
		if on {
			pr.blackHoled.Store(true)
		} else if pr.blackHoled.Load() {
			victims = append(victims, pr)
		}
	}
	p.mu.Unlock()
	for _, pr := range victims {
		pr.close(false)
	}
}

// SetDelay forwards every chunk only once d has passed since it was read,
// preserving order per direction. 0 means no delay.
func (p *faultProxy) SetDelay(d time.Duration) { p.delay.Store(int64(d)) }

// ResetMidFrame arms a one-shot fault: the next chunk of at least 64 bytes
// read from either direction of any pair is forwarded only in part (its
// first half), then both connections of that pair are reset.
func (p *faultProxy) ResetMidFrame() { p.midFrame.Store(true) }

// Refuse(true) makes the proxy accept new connections and close them at
// once, so the peer looks down.
func (p *faultProxy) Refuse(on bool) { p.refuse.Store(on) }

// Conns returns the number of open connection pairs.
func (p *faultProxy) Conns() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.pairs)
}

// Close stops listening, closes all connections and returns once every
// goroutine the proxy started has exited. It is idempotent.
func (p *faultProxy) Close() {
	p.closeOnce.Do(func() {
		p.mu.Lock()
		p.closed = true
		p.mu.Unlock()
		p.cancel()
		p.ln.Close()
		p.Cut()
		p.wg.Wait()
	})
}

// snapshot returns the open pairs, so they can be closed without p.mu held.
func (p *faultProxy) snapshot() []*proxyPair {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]*proxyPair, 0, len(p.pairs))
	for pr := range p.pairs {
		out = append(out, pr)
	}
	return out
}

// acceptLoop accepts connections until the listener is closed.
func (p *faultProxy) acceptLoop() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) || p.ctx.Err() != nil {
				return
			}
			select { // transient error (e.g. EMFILE): pause, then retry
			case <-time.After(acceptRetryPause):
			case <-p.ctx.Done():
				return
			}
			continue
		}
		if p.refuse.Load() {
			c.Close()
			continue
		}
		p.wg.Go(func() { p.serve(c) })
	}
}

// serve dials the target for client and starts forwarding between them.
func (p *faultProxy) serve(client net.Conn) {
	p.mu.Lock()
	target := p.target
	p.mu.Unlock()
	d := net.Dialer{Timeout: proxyDialTimeout}
	server, err := d.DialContext(p.ctx, "tcp", target)
	if err != nil {
		client.Close()
		return
	}
	pr := &proxyPair{p: p, client: client, server: server, done: make(chan struct{})}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		client.Close()
		server.Close()
		return
	}
	pr.blackHoled.Store(p.blackHole)
	p.pairs[pr] = struct{}{}
	p.mu.Unlock()
	pr.pipe(client, server)
	pr.pipe(server, client)
}

// pipe starts the reader and writer goroutines for one direction.
func (pr *proxyPair) pipe(src, dst net.Conn) {
	q := make(chan chunk, proxyQueueLen)
	pr.p.wg.Go(func() { pr.read(src, q) })
	pr.p.wg.Go(func() { pr.write(dst, q) })
}

// read copies chunks from src into q until src fails or the pair closes.
// A clean EOF closes q so the writer can flush and half-close; any other
// error ends the pair.
func (pr *proxyPair) read(src net.Conn, q chan<- chunk) {
	defer close(q)
	buf := make([]byte, proxyReadBuf)
	for {
		n, err := src.Read(buf)
		if n > 0 && !pr.blackHoled.Load() {
			c := chunk{data: bytes.Clone(buf[:n]), due: time.Now().Add(time.Duration(pr.p.delay.Load()))}
			if n >= midFrameMinBytes && pr.p.midFrame.CompareAndSwap(true, false) {
				c.data, c.reset = c.data[:n/2], true
			}
			select {
			case q <- c:
			case <-pr.done:
				return
			}
			if c.reset {
				return // the writer resets the pair after the half chunk
			}
		}
		if err != nil {
			if !errors.Is(err, io.EOF) {
				pr.close(false)
			}
			return
		}
	}
}

// write forwards queued chunks to dst, each no earlier than its due time.
func (pr *proxyPair) write(dst net.Conn, q <-chan chunk) {
	for {
		var c chunk
		var ok bool
		select {
		case c, ok = <-q:
		case <-pr.done:
			return
		}
		if !ok {
			pr.halfClose(dst)
			return
		}
		if wait := time.Until(c.due); wait > 0 {
			t := time.NewTimer(wait)
			select {
			case <-t.C:
			case <-pr.done:
				t.Stop()
				return
			}
		}
		if pr.blackHoled.Load() {
			continue // discard
		}
		if _, err := dst.Write(c.data); err != nil {
			pr.close(false)
			return
		}
		if c.reset {
			pr.close(true)
			return
		}
	}
}

// halfClose passes a clean EOF on to dst; the pair closes once both
// directions have seen EOF. Black-holed pairs are left for BlackHole(false).
func (pr *proxyPair) halfClose(dst net.Conn) {
	if pr.blackHoled.Load() {
		return
	}
	if tc, ok := dst.(*net.TCPConn); ok {
		tc.CloseWrite()
	}
	if pr.eofs.Add(1) == 2 {
		pr.close(false)
	}
}

// close tears the pair down once; abort closes with SetLinger(0) (TCP RST).
func (pr *proxyPair) close(abort bool) {
	pr.closeOnce.Do(func() {
		close(pr.done)
		for _, c := range []net.Conn{pr.client, pr.server} {
			if tc, ok := c.(*net.TCPConn); ok && abort {
				tc.SetLinger(0)
			}
			c.Close()
		}
		pr.p.mu.Lock()
		delete(pr.p.pairs, pr)
		pr.p.mu.Unlock()
	})
}
