package manager

import (
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/courier-go/courier/internal/wire"
	"github.com/courier-go/courier/peer"
	courierv1 "github.com/courier-go/courier/proto/courier/v1"
	"github.com/courier-go/courier/reader"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Defaults of the limits against hostile peers. The handshake timeout
// (DefaultHandshakeTimeout) and the frame and dictionary limits
// (WithMaxFrameBytes, WithDictionaryLimits) are the others.
const (
	DefaultMaxInboundConnections = 1024
	DefaultMaxStreamsPerPeer     = 16
	DefaultIdleTimeout           = time.Minute
)

var (
	// ErrTooManyConnections: a connection beyond WithMaxInboundConnections
	// was closed as soon as it was accepted.
	ErrTooManyConnections = errors.New("manager: too many inbound connections")
	// ErrTooManyStreams: a peer's stream beyond WithMaxStreamsPerPeer was
	// refused (with reason "unavailable": the peer may try again later).
	ErrTooManyStreams = errors.New("manager: too many streams from one peer")
	// ErrIdle: a peer sent nothing on any of its streams for the idle
	// timeout, and they were closed; or a client-only peer had no stream
	// for that long, and its endpoint ended.
	ErrIdle = peer.ErrIdle
)

// WithMaxInboundConnections bounds the connections the node's listener
// keeps open at once. A connection beyond it is closed as soon as it is
// accepted, with an EventPeerRefused carrying ErrTooManyConnections.
// Every peer that sends to this node holds two connections, one per lane,
// and each diagnostics call one while it lasts. Default: DefaultMaxInboundConnections.
func WithMaxInboundConnections(n int) Option {
	return optionFunc(func(o *options) { o.maxConns = n })
}

// WithMaxStreamsPerPeer bounds the Connect streams one system (by system
// id) may have open at once, and the concurrent streams of any one
// connection. A peer uses two per connection; the headroom covers a
// reconnect that arrives before the node noticed the old connection died.
// A stream beyond it is refused with reason "unavailable" and
// ErrTooManyStreams. Default: DefaultMaxStreamsPerPeer; at least 2.
func WithMaxStreamsPerPeer(n int) Option {
	return optionFunc(func(o *options) { o.maxStreams = n })
}

// WithIdleTimeout closes every stream of a peer that has sent nothing on
// any of them, not even a heartbeat, for d; a connection with no stream
// for d; and ends the endpoint of a client-only peer that has had no
// stream for d (the client went away), dead-lettering what was queued for
// it and telling its watchers Terminated. Dialers send a heartbeat on
// their control stream every heartbeat interval, so d must be well above
// the peers' interval. A stream held up by this node's own slow handler is
// never idle. Default: DefaultIdleTimeout; at least 2 × the heartbeat
// interval.
func WithIdleTimeout(d time.Duration) Option {
	return optionFunc(func(o *options) { o.idleTimeout = d })
}

// liveStreams is the set of accepted streams, with a count per system id.
// It changes on handshakes and stream ends only, never per envelope.
type liveStreams struct {
	mu       sync.Mutex
	set      map[*liveStream]struct{}
	bySystem map[string]int
}

// liveStream is one accepted stream, which Block, the limits and the idle
// watchdog can end at once.
type liveStream struct {
	peer Peer
	rcv  *reader.Receive
	acc  *reader.Accepted
	once sync.Once
	ch   chan struct{}

	// The idle watchdog's last look, only touched by it.
	waits uint64
	since time.Time
}

// kill ends the stream with err; the first kill wins.
func (l *liveStream) kill(err error) {
	l.once.Do(func() {
		l.acc.KillErr = err
		close(l.ch)
	})
}

// count returns how many accepted streams the system has open.
func (ls *liveStreams) count(systemID string) int {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	return ls.bySystem[systemID]
}

// refuseTooManyStreams is the refusal of a stream beyond the limit.
func refuseTooManyStreams(systemID string, limit int) error {
	return fmt.Errorf("%w (%w)", wire.Refuse(courierv1.RefuseReason_REFUSE_REASON_UNAVAILABLE,
		"system %q has %d streams open, the limit", systemID, limit), ErrTooManyStreams)
}

// reserve takes a stream slot for the system, unless it is at limit. The
// slot is the stream's from its Welcome on: track takes it over, and
// release gives it back if the stream fails before.
func (ls *liveStreams) reserve(systemID string, limit int) bool {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	if ls.bySystem[systemID] >= limit {
		return false
	}
	if ls.set == nil {
		ls.set = make(map[*liveStream]struct{})
		ls.bySystem = make(map[string]int)
	}
	ls.bySystem[systemID]++
	return true
}

// release gives back a slot that reserve took.
func (ls *liveStreams) release(systemID string) {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	if ls.bySystem[systemID]--; ls.bySystem[systemID] <= 0 {
		delete(ls.bySystem, systemID)
	}
}

// track registers an accepted stream in the slot its handshake reserved,
// and sets acc up to end when it is killed. The returned function forgets
// it and frees the slot.
func (m *Manager) track(p Peer, acc *reader.Accepted) (forget func()) {
	l := &liveStream{peer: p, rcv: &acc.Receive, acc: acc, ch: make(chan struct{})}
	ls := &m.live
	ls.mu.Lock()
	ls.set[l] = struct{}{}
	ls.mu.Unlock()
	acc.Kill = l.ch
	if m.isBlocked(p.SystemID) { // blocked after its handshake passed
		l.kill(refuseBlocked(p.SystemID))
	}
	return func() {
		ls.mu.Lock()
		_, ok := ls.set[l]
		delete(ls.set, l)
		ls.mu.Unlock()
		if ok {
			ls.release(p.SystemID)
		}
	}
}

// streamsOf returns the accepted streams for which keep is true.
func (m *Manager) streamsOf(keep func(*liveStream) bool) []*liveStream {
	ls := &m.live
	ls.mu.Lock()
	defer ls.mu.Unlock()
	var out []*liveStream
	for l := range ls.set {
		if keep(l) {
			out = append(out, l)
		}
	}
	return out
}

// killStreams ends every accepted stream of the system at once.
func (m *Manager) killStreams(systemID string) {
	for _, l := range m.streamsOf(func(l *liveStream) bool { return l.peer.SystemID == systemID }) {
		l.kill(refuseBlocked(systemID))
	}
}

// watchIdle is the idle watchdog: every quarter of the idle timeout it
// closes the streams of peers that have sent nothing on any of them for the
// idle timeout. It returns when the node closes.
func (m *Manager) watchIdle() {
	tick := time.NewTicker(m.o.idleTimeout / 4)
	defer tick.Stop()
	for {
		select {
		case <-m.ctx.Done():
			return
		case now := <-tick.C:
			m.closeIdle(now)
		}
	}
}

// closeIdle is one round of the idle watchdog.
func (m *Manager) closeIdle(now time.Time) {
	all := m.streamsOf(func(*liveStream) bool { return true })
	busy := make(map[peerKey]bool)
	for _, l := range all {
		k := peerKey{l.peer.SystemID, l.peer.Incarnation}
		w := l.rcv.Waits()
		if w&1 == 0 || w != l.waits || l.since.IsZero() {
			// Receiving, held up by the handler, or new since the last look.
			l.waits, l.since = w, now
			busy[k] = true
			continue
		}
		if now.Sub(l.since) < m.o.idleTimeout {
			busy[k] = true
		} else if _, seen := busy[k]; !seen {
			busy[k] = false
		}
	}
	for _, l := range all {
		k := peerKey{l.peer.SystemID, l.peer.Incarnation}
		if !busy[k] {
			l.kill(codeError{codes.DeadlineExceeded, fmt.Errorf("%w: nothing received from %s for %v", ErrIdle, l.peer.SystemID, m.o.idleTimeout)})
		}
	}
}

// codeError is an error that ends a stream with a given gRPC status code.
type codeError struct {
	code codes.Code
	err  error
}

func (e codeError) Error() string              { return e.err.Error() }
func (e codeError) Unwrap() error              { return e.err }
func (e codeError) GRPCStatus() *status.Status { return status.New(e.code, e.err.Error()) }

// limitListener closes the connections it accepts beyond a limit.
type limitListener struct {
	net.Listener
	limit   int64
	open    atomic.Int64
	refused func(addr net.Addr)
}

func (l *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if l.open.Add(1) > l.limit {
			l.open.Add(-1)
			_ = c.Close()
			l.refused(c.RemoteAddr())
			continue
		}
		return &limitConn{Conn: c, l: l}, nil
	}
}

// limitConn gives its slot back when it is closed.
type limitConn struct {
	net.Conn
	l    *limitListener
	once sync.Once
}

func (c *limitConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { c.l.open.Add(-1) })
	return err
}
