package manager

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/courier-go/courier/batch"
	"github.com/courier-go/courier/internal/wire"
	"github.com/courier-go/courier/peer"
	"github.com/courier-go/courier/proto/courier/v1/transportv1"
	"github.com/courier-go/courier/reader"
	"google.golang.org/grpc"
	"google.golang.org/grpc/experimental"
	"google.golang.org/grpc/keepalive"
)

// Errors returned by the Manager. Compare with errors.Is.
var (
	// ErrInvalidOption: New was given options out of range; the error
	// lists every one.
	ErrInvalidOption = errors.New("manager: invalid option")
	// ErrClosed: the manager is closed, or closing.
	ErrClosed = errors.New("manager: closed")
	// ErrNotStarted: the call needs Start first: Start, or a Send from a
	// node with a listen address before its Start.
	ErrNotStarted = errors.New("manager: not started")
	// ErrAlreadyStarted: Start was called twice.
	ErrAlreadyStarted = errors.New("manager: already started")
	// ErrQueueFull: the user queue is full and the overflow policy is Fail.
	ErrQueueFull = peer.ErrQueueFull
	// ErrTooLarge: the envelope can never fit in a frame.
	ErrTooLarge = peer.ErrTooLarge
	// ErrInvalidEnvelope: the envelope is nil, has no target, an unknown
	// lane, a system kind on the user lane, or more header entries or
	// distinct strings than a frame's limits allow.
	ErrInvalidEnvelope = errors.New("manager: invalid envelope")
	// ErrInvalidAddress: Send was given an address that is not host:port
	// with a host and a port in [1, 65535], nor a client-only peer's
	// address (ClientAddressPrefix).
	ErrInvalidAddress = errors.New("manager: invalid address")
	// ErrNotInitialized: the Manager was not made by New (a zero value, or
	// nil); every method but those that return no error reports it.
	ErrNotInitialized = errors.New("manager: not initialized (create the Manager with New)")
	// ErrEndpointTerminated: the endpoint for the address gave up; sends
	// are refused until it is replaced (see Send).
	ErrEndpointTerminated = peer.ErrEndpointTerminated
	// ErrSystemQueueFull: the peer left the system queue full; it is
	// treated as failed.
	ErrSystemQueueFull = peer.ErrSystemQueueFull
	// ErrPeerSilent: nothing came back on the control stream, not even a
	// heartbeat reply, for the heartbeat timeout; the connection is
	// dropped and dialed again.
	ErrPeerSilent = peer.ErrPeerSilent
	// ErrUnknownClient: the address names a client-only peer that is not
	// connected.
	ErrUnknownClient = errors.New("manager: unknown client-only peer")
)

// Re-exported errors of the packages below, so that a user matches them
// without importing those. The handshake's: a dialer sees ErrRefused and its
// reason, wrapped, in EventPeerRefused and EventTerminated; a listening node
// reports ErrHandshake in EventPeerRefused for a peer that sent no valid
// Hello within the handshake timeout. The frames': a peer whose frame breaks
// the node's limits (WithMaxFrameBytes, WithDictionaryLimits) loses the
// stream, and the EventStreamError carries ErrFrameTooLarge or
// ErrDictionaryOverflow, wrapped.
var (
	ErrRefused            = wire.ErrRefused
	ErrVersion            = wire.ErrVersion
	ErrBlocked            = wire.ErrBlocked
	ErrUnauthorized       = wire.ErrUnauthorized
	ErrHandshake          = wire.ErrHandshake
	ErrFrameTooLarge      = batch.ErrFrameTooLarge
	ErrDictionaryOverflow = batch.ErrDictionaryOverflow
)

// Envelope is the message envelope; see batch.Envelope.
type Envelope = batch.Envelope

// Peer identifies a remote node; see reader.Peer.
type Peer = reader.Peer

// Handler receives inbound envelopes.
//
// Deliver is called from several goroutines at once: one per inbound
// stream, so one per lane per peer. Envelopes of one lane from one peer
// arrive in order, from one goroutine at a time. env and everything it
// refers to are valid until Deliver returns; use env.Clone to keep them.
// A slow Deliver on the user lane holds back that peer's user lane, never
// its system lane; one that waits on purpose (for room downstream) should
// return once Manager.LaneWanted reports true, since the node cannot block
// the peer, give up on it, or hand the lane to a new stream before it does.
type Handler interface {
	Deliver(peer Peer, env *Envelope)
}

// HandlerFunc adapts a function to Handler.
type HandlerFunc func(peer Peer, env *Envelope)

// Deliver calls f.
func (f HandlerFunc) Deliver(peer Peer, env *Envelope) { f(peer, env) }

// closeGrace bounds how long Close waits for peers to let go of their
// connections after it said goodbye.
const closeGrace = time.Second

// ClientAddressPrefix starts the address a listening node gives a
// client-only peer (one without a listener): "client:" + system id + ":" +
// incarnation in hex. Envelopes sent to that address travel back over the
// streams the client opened.
const ClientAddressPrefix = "client:"

// Manager is a courier node: it listens for peers, keeps an endpoint per
// peer it sends to, and delivers inbound envelopes to its Handler. Create
// it with New; it is safe for concurrent use.
type Manager struct {
	o           options
	incarnation uint64
	log         *slog.Logger

	endpoints sync.Map // address → *peer.Endpoint
	// lastEndpoint is the endpoint a Send found last, tried before the map.
	lastEndpoint atomic.Pointer[peer.Endpoint]
	inbound      sync.Map // peerKey → *inboundPeer
	watched      watches
	live         liveStreams // accepted streams, for Block, the limits and the idle watchdog
	blockMu      sync.Mutex
	blocked      atomic.Pointer[map[string]struct{}]
	streams      sync.Map // *inboundStream → struct{}: accepted streams to say goodbye on
	events       *events

	mu      sync.Mutex // serializes endpoint creation with Close
	closed  atomic.Bool
	started atomic.Bool
	addr    string
	lis     net.Listener
	server  *grpc.Server
	rserver *reader.Server
	serveWG sync.WaitGroup
	ctx     context.Context // canceled by Close, after flushing
	cancel  context.CancelFunc
	epWG    sync.WaitGroup // endpoint goroutines
	calls   callConns      // connections of the diagnostics and spawn calls

	deadLetters     atomic.Uint64
	staleTerminated atomic.Uint64 // Terminated envelopes that answered no watch

	// listening is set once Start has its listener and addr; Send reads it
	// to refuse a listening node's sends before, and to see addr after.
	listening atomic.Bool
}

// New returns a manager configured by opts, validated all at once: an
// error wrapping ErrInvalidOption lists every invalid option, a nil one
// included. It does not listen until Start; a client-only node (no
// WithListenAddress) can send at once, a listening node once it has
// started.
func New(opts ...Option) (*Manager, error) {
	o := defaults()
	for i, opt := range opts {
		if opt == nil {
			o.nilOptions = append(o.nilOptions, i)
			continue
		}
		opt.apply(&o)
	}
	if err := o.validate(); err != nil {
		return nil, err
	}
	if !o.systemIDSet {
		o.systemID = randomID()
	}
	if o.logger == nil {
		o.logger = slog.New(slog.DiscardHandler)
	}
	var inc [8]byte
	for binary.LittleEndian.Uint64(inc[:]) == 0 {
		_, _ = rand.Read(inc[:])
	}
	ctx, cancel := context.WithCancel(context.Background())
	m := &Manager{
		o:           o,
		incarnation: binary.LittleEndian.Uint64(inc[:]),
		log:         o.logger,
		events:      newEvents(),
		ctx:         ctx,
		cancel:      cancel,
	}
	blocked := make(map[string]struct{}, len(o.blocked))
	for _, id := range o.blocked {
		blocked[id] = struct{}{}
	}
	m.blocked.Store(&blocked)
	return m, nil
}

// SystemID returns the node's system id.
func (m *Manager) SystemID() string {
	if !m.initialized() {
		return ""
	}
	return m.o.systemID
}

// Incarnation returns the random number this node picked at New; a node
// that restarts comes back with another.
func (m *Manager) Incarnation() uint64 {
	if !m.initialized() {
		return 0
	}
	return m.incarnation
}

// Start listens on the address of WithListenAddress and serves the
// Transport service. A client-only node needs no Start. ctx bounds the
// call only.
func (m *Manager) Start(ctx context.Context) error {
	if !m.initialized() {
		return ErrNotInitialized
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if m.closed.Load() {
		return ErrClosed
	}
	if m.o.listen == "" {
		return fmt.Errorf("%w: no listen address (a client-only node needs no Start)", ErrInvalidOption)
	}
	if !m.started.CompareAndSwap(false, true) {
		return ErrAlreadyStarted
	}
	var lc net.ListenConfig
	lis, err := lc.Listen(ctx, "tcp", m.o.listen)
	if err != nil {
		return fmt.Errorf("manager: listen: %w", err)
	}
	lis = &limitListener{Listener: lis, limit: int64(m.o.maxConns), refused: func(addr net.Addr) {
		m.events.emit(Event{Type: EventPeerRefused, Address: addr.String(),
			Err: fmt.Errorf("%w: %s (limit %d)", ErrTooManyConnections, addr, m.o.maxConns)})
	}}
	m.lis = lis
	m.addr = lis.Addr().String()
	m.listening.Store(true)
	m.server = grpc.NewServer(m.serverOptions()...)
	m.rserver = reader.NewServer(reader.ServerConfig{
		HandshakeTimeout: m.o.handshakeTimeout,
		Check:            m.checkHello,
		Accept:           m.acceptStream,
		Refused:          m.refusedStream,
		Abandoned:        m.abandonedStream,
	})
	transportv1.RegisterTransportServer(m.server, &transportServer{Server: m.rserver, m: m})
	m.serveWG.Add(2)
	go func() {
		defer m.serveWG.Done()
		_ = m.server.Serve(lis)
	}()
	go func() {
		defer m.serveWG.Done()
		m.watchIdle()
	}()
	m.log.Info("courier: listening", "addr", m.addr, "system", m.o.systemID)
	return nil
}

// Addr returns the address the node listens on, with the real port when it
// was 0; empty before Start and for a client-only node.
func (m *Manager) Addr() string {
	if !m.initialized() {
		return ""
	}
	return m.addr
}

// AdvertisedAddress returns the address the node tells its peers to reach
// it at: WithAdvertiseAddress's, or else Addr. Peers match this node's
// Terminated envelopes to their watches by it, so an actor runtime names
// its processes' node by it. Empty before Start on a node that advertises
// nothing.
func (m *Manager) AdvertisedAddress() string {
	if !m.initialized() {
		return ""
	}
	return m.advertised()
}

// advertised is the address peers are told to reach this node at.
func (m *Manager) advertised() string {
	if m.o.advertise != "" {
		return m.o.advertise
	}
	return m.addr
}

// serverOptions are the options of the node's gRPC server.
func (m *Manager) serverOptions() []grpc.ServerOption {
	opts := []grpc.ServerOption{
		// Close returns only after every inbound stream's handler has
		// returned, so no delivery runs after it.
		grpc.WaitForHandlers(true),
		// A dialer that vanished without closing its connection (a
		// black-holed network) is found by gRPC's pings once its
		// heartbeats stop.
		// A connection with no stream for the idle timeout is closed.
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: m.o.heartbeatTimeout, Timeout: m.o.heartbeatTimeout,
			MaxConnectionIdle: m.o.idleTimeout}),
		grpc.MaxConcurrentStreams(uint32(m.o.maxStreams)),
		grpc.MaxRecvMsgSize(m.o.limits.MaxFrameBytes + 1024),
		grpc.MaxSendMsgSize(m.o.limits.MaxFrameBytes + 1024),
		experimental.BufferPool(wire.Pool()),
	}
	if m.o.serverCreds != nil {
		opts = append(opts, grpc.Creds(m.o.serverCreds))
	}
	opts = append(opts, transportOptions(&m.o, grpc.InitialWindowSize, grpc.InitialConnWindowSize,
		grpc.ReadBufferSize, grpc.WriteBufferSize)...)
	return append(opts, m.o.serverOptions...)
}

// transportOptions are the flow-control windows and socket buffers that
// are set, as server or dial options made by the given gRPC functions.
func transportOptions[T any](o *options, streamWindow, connWindow func(int32) T, readBuffer, writeBuffer func(int) T) []T {
	var opts []T
	if o.streamWindow > 0 {
		opts = append(opts, streamWindow(o.streamWindow), connWindow(o.connWindow))
	}
	if o.readBuffer > 0 {
		opts = append(opts, readBuffer(o.readBuffer))
	}
	if o.writeBuffer > 0 {
		opts = append(opts, writeBuffer(o.writeBuffer))
	}
	return opts
}

// Subscribe calls f for every event from now on, from one goroutine, in
// order. f must not block for long: events that find 1024 others waiting
// are dropped (see DroppedEvents). The returned function unsubscribes.
func (m *Manager) Subscribe(f func(Event)) (unsubscribe func()) {
	if !m.initialized() {
		return func() {}
	}
	return m.events.subscribe(f)
}

// DroppedEvents returns how many events were dropped because subscribers
// fell behind.
func (m *Manager) DroppedEvents() uint64 {
	if !m.initialized() {
		return 0
	}
	return m.events.dropped.Load()
}

// DeadLetters returns how many envelopes have been dead-lettered in all.
func (m *Manager) DeadLetters() uint64 {
	if !m.initialized() {
		return 0
	}
	return m.deadLetters.Load()
}

// Stats returns a snapshot of the statistics of the endpoint for address.
func (m *Manager) Stats(address string) (EndpointStats, bool) {
	if !m.initialized() {
		return EndpointStats{}, false
	}
	v, ok := m.endpoints.Load(address)
	if !ok {
		return EndpointStats{}, false
	}
	return endpointStats(v.(*peer.Endpoint)), true
}

// AllStats returns a snapshot of every endpoint's statistics.
func (m *Manager) AllStats() []EndpointStats {
	if !m.initialized() {
		return nil
	}
	var all []EndpointStats
	m.endpoints.Range(func(_, v any) bool {
		all = append(all, endpointStats(v.(*peer.Endpoint)))
		return true
	})
	return all
}

// deadLetter reports an undelivered envelope to the handler, or logs it.
func (m *Manager) deadLetter(address string, env *Envelope, reason DeadLetterReason) {
	m.deadLetters.Add(1)
	if m.o.deadLetter != nil {
		m.o.deadLetter(DeadLetter{Address: address, Envelope: env.Clone(), Reason: reason})
		return
	}
	m.log.Debug("courier: dead letter", "address", address, "target", env.Target, "reason", reason.String())
}

// Close stops the node: Send fails from now on, queued envelopes are sent
// and their acknowledgements awaited until ctx ends, what remains is
// dead-lettered with reason shutdown, peers are told goodbye, streams and
// the listener close, and every goroutine the manager started has exited
// when Close returns. An endpoint without a connection (reconnecting, or
// whose first attempt failed) has nothing it can flush: it ends at once,
// dead-lettering its queue with reason shutdown, and a reconnect attempt in
// progress is abandoned; one whose first attempt is under way is given
// that attempt (up to the handshake timeout). So Close with a context that
// never ends returns once the reachable peers have acknowledged what was
// queued for them. A handler call in progress is waited for: Close does
// not return while a Deliver it started is still running. Close is
// idempotent; later calls wait for the first.
func (m *Manager) Close(ctx context.Context) error {
	if !m.initialized() {
		return ErrNotInitialized
	}
	m.mu.Lock()
	first := m.closed.CompareAndSwap(false, true)
	m.mu.Unlock()
	if !first {
		m.epWG.Wait()
		m.serveWG.Wait()
		return nil
	}
	// Flush every endpoint at once, within ctx.
	var wg sync.WaitGroup
	m.endpoints.Range(func(_, v any) bool {
		ep := v.(*peer.Endpoint)
		wg.Go(func() { ep.Close(ctx) })
		return true
	})
	wg.Wait()
	m.cancel()
	m.epWG.Wait()
	if m.server != nil {
		// Inbound streams last as long as their peers keep them: tell the
		// peers goodbye, with a last ack, and end the streams. A graceful
		// stop lets gRPC send what is queued on them before the connections
		// close; a peer that does not let go gets closeGrace.
		m.streams.Range(func(k, _ any) bool {
			k.(*inboundStream).goodbye()
			return true
		})
		for _, l := range m.streamsOf(func(*liveStream) bool { return true }) {
			l.kill(ErrClosed)
		}
		stopped := make(chan struct{})
		go func() {
			m.server.GracefulStop()
			close(stopped)
		}()
		grace := time.NewTimer(closeGrace)
		select {
		case <-stopped:
		case <-grace.C:
		case <-ctx.Done():
		}
		grace.Stop()
		m.server.Stop()
		<-stopped
		m.rserver.Wait()
	}
	m.serveWG.Wait()
	m.events.close()
	m.calls.closeAll()
	return nil
}
