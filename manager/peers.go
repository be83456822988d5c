package manager

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"

	"github.com/courier-go/courier/batch"
	"github.com/courier-go/courier/internal/wire"
	"github.com/courier-go/courier/peer"
	"github.com/courier-go/courier/reader"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/experimental"
)

// Send queues env for the process env.Target on the node at address. It
// never takes a global lock: the endpoint for the address is looked up
// without one, and created, dialing lazily, on first use.
//
// A user envelope (env.Lane LaneUser) goes to the peer's user queue; when
// that is full the overflow policy decides: DropNewest dead-letters it and
// returns nil, Block waits for room until ctx ends, Fail returns
// ErrQueueFull. A system envelope goes to the system queue, which is never
// dropped: when it is full Send waits for room, until ctx ends or the system
// queue timeout passes, when the peer is treated as failed.
//
// Send copies env; env's Payload and header values must not change until
// the envelope is delivered or dead-lettered. Send returns an error, and
// the envelope is not queued, when:
//   - env is nil, has no Target, an unknown Lane, a Kind other than
//     KindNone on the user lane, or an unknown Kind: ErrInvalidEnvelope;
//   - env can never fit in a frame under the node's limits: a string
//     (Target, SenderAddress, SenderID, TypeName, a header key) longer than
//     1024 bytes, distinct strings of more bytes than WithDictionaryLimits
//     allows, or an encoding larger than WithMaxFrameBytes: ErrTooLarge;
//     more than 64 header entries, or more distinct strings than
//     WithDictionaryLimits allows: ErrInvalidEnvelope (see batch.Limits).
//     The check is a few length checks. A peer that negotiated smaller
//     limits can still make the writer dead-letter env as too large;
//   - address is not host:port with a host and a port in [1, 65535], nor a
//     ClientAddressPrefix address: ErrInvalidAddress, naming it (a client
//     address that is not connected is ErrUnknownClient);
//   - the node has a listen address and has not started: ErrNotStarted (its
//     peers would otherwise take it for a client-only node);
//   - the manager is closed: ErrClosed; the endpoint for address has
//     terminated: ErrEndpointTerminated, until the reconnect policy's Max
//     delay (Backoff.Max) has passed since, when the next Send makes a new
//     endpoint that dials afresh;
//   - the Manager was not made by New: ErrNotInitialized.
func (m *Manager) Send(ctx context.Context, address string, env *Envelope) error {
	if !m.initialized() {
		return ErrNotInitialized
	}
	if env == nil {
		return fmt.Errorf("%w: nil envelope", ErrInvalidEnvelope)
	}
	if env.Target == "" || env.Lane > batch.LaneSystem {
		return fmt.Errorf("%w: target %q lane %d", ErrInvalidEnvelope, env.Target, env.Lane)
	}
	if env.Lane == batch.LaneUser && env.Kind != batch.KindNone {
		return fmt.Errorf("%w: kind %v on the user lane (system kinds travel on batch.LaneSystem)", ErrInvalidEnvelope, env.Kind)
	}
	if env.Kind > batch.KindStop {
		// The peer refuses a kind it does not know; the system lane would
		// resend it after every reconnect.
		return fmt.Errorf("%w: unknown system kind %d", ErrInvalidEnvelope, env.Kind)
	}
	if err := checkEnvelope(&m.o.limits, env); err != nil {
		return err
	}
	if m.o.listen != "" && !m.listening.Load() {
		// Its peers would record it as client-only, and keep it so.
		if m.closed.Load() {
			return ErrClosed
		}
		return fmt.Errorf("%w: a node with a listen address sends once it has started", ErrNotStarted)
	}
	ep, err := m.endpoint(address)
	if err != nil {
		return err
	}
	if env.Lane == batch.LaneSystem && env.Kind != batch.KindNone {
		return m.sendSystem(ctx, ep, address, env)
	}
	return send(ctx, ep, env)
}

// send queues env on ep. An endpoint that refuses it because the node is
// closing says so with its own sentinel.
func send(ctx context.Context, ep *peer.Endpoint, env *Envelope) error {
	err := ep.Send(ctx, env)
	if err != nil && errors.Is(err, peer.ErrClosed) {
		return ErrClosed
	}
	return err
}

// endpoint returns the endpoint for address, creating it on first use.
func (m *Manager) endpoint(address string) (*peer.Endpoint, error) {
	if ep := m.lastEndpoint.Load(); ep != nil && ep.Address() == address && ep.State() != peer.StateTerminated {
		return ep, nil // a sender to one peer, the common case: no map lookup
	}
	if v, ok := m.endpoints.Load(address); ok {
		ep := v.(*peer.Endpoint)
		if !ep.Replaceable(m.o.reconnect.Max) {
			m.lastEndpoint.Store(ep)
			return ep, nil
		}
	}
	if strings.HasPrefix(address, ClientAddressPrefix) {
		return nil, fmt.Errorf("%w: %s", ErrUnknownClient, address)
	}
	if err := checkAddress(address); err != nil {
		return nil, err
	}
	return m.newEndpoint(address, false)
}

// newEndpoint creates and starts the endpoint for address, unless another
// goroutine got there first or the manager is closing.
func (m *Manager) newEndpoint(address string, clientOnly bool) (*peer.Endpoint, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed.Load() {
		return nil, ErrClosed
	}
	if v, ok := m.endpoints.Load(address); ok {
		ep := v.(*peer.Endpoint)
		if !ep.Replaceable(m.o.reconnect.Max) {
			return ep, nil
		}
		m.endpoints.CompareAndDelete(address, ep)
	}
	return m.startEndpoint(address, clientOnly)
}

// startEndpoint makes the endpoint for address, the node handed to it as
// callbacks, and starts it. The caller holds m.mu.
func (m *Manager) startEndpoint(address string, clientOnly bool) (*peer.Endpoint, error) {
	o := &m.o
	var ep *peer.Endpoint
	cfg := peer.Config{
		Address:           address,
		ClientOnly:        clientOnly,
		Self:              m.self(),
		UserQueue:         o.userQueue,
		SystemQueue:       o.systemQueue,
		MaxEnvelopes:      o.batchEnvelopes,
		MaxBytes:          o.batchBytes,
		Linger:            o.linger,
		Compress:          o.compress,
		CompressThreshold: o.compressThreshold,
		Overflow:          overflows[o.overflow],
		HighWater:         max(1, int(math.Ceil(o.highWater*float64(o.userQueue)))),
		LowWater:          int(o.lowWater * float64(o.userQueue)),
		Heartbeat:         o.heartbeat,
		IdleRelease:       o.idleRelease,
		HeartbeatTimeout:  o.heartbeatTimeout,
		HandshakeTimeout:  o.handshakeTimeout,
		SystemTimeout:     o.systemTimeout,
		IdleTimeout:       o.idleTimeout,
		Reconnect: peer.Reconnect{
			Delay:         o.reconnect.Delay,
			MaxAttempts:   o.reconnect.MaxAttempts,
			MaxElapsed:    o.reconnect.MaxElapsed,
			ShutdownGrace: PeerShutdownGrace,
		},
		Context: m.ctx,
		Logger:  m.log,
		Node: peer.Node{
			DeadLetter:  func(env *Envelope, reason peer.Reason) { m.deadLetter(address, env, reason) },
			Emit:        m.peerEvent,
			Closing:     m.closed.Load,
			Blocked:     m.isBlocked,
			Quarantined: m.quarantined,
			Bind:        m.bindOwn,
			Settled: func(old *Peer, blocked bool) {
				p := Peer{Address: address}
				if old != nil {
					p = *old
					if blocked {
						m.quarantineBlocked(p)
					} else {
						m.quarantine(p)
					}
				}
				m.settleWatches(address, p)
			},
			Forget: func() { m.endpoints.CompareAndDelete(address, ep) },
		},
	}
	if !clientOnly {
		cfg.Dialer = peer.GRPCDialer{Options: m.dialOptions(), Metadata: o.metadata}
	}
	ep, err := peer.New(cfg)
	if err != nil {
		return nil, err
	}
	m.endpoints.Store(address, ep)
	m.epWG.Go(ep.Run)
	return ep, nil
}

// overflows are the endpoint's policies by OverflowPolicy.
var overflows = [...]peer.Overflow{DropNewest: peer.DropNewest, Block: peer.Block, Fail: peer.Fail}

// bindOwn sets up delivery on a receive loop of one of this node's own
// streams. A client-only node is sent to over them; a listening node is
// sent to over the peer's own connection, whose streams own the lane's
// state, and these carry acks and heartbeat replies only.
func (m *Manager) bindOwn(rcv *reader.Receive) {
	if m.addr == "" {
		m.bindReceive(rcv, rcv.Peer, rcv.Lane)
		return
	}
	rcv.State = new(reader.LaneState)
	rcv.Generation = rcv.State.Claim()
	rcv.Deliver = m.deliver
}

// eventTypes are the event types by peer.EventKind.
var eventTypes = [...]EventType{
	peer.EventConnected:     EventConnected,
	peer.EventThrottled:     EventThrottled,
	peer.EventReconnecting:  EventReconnecting,
	peer.EventReconnected:   EventReconnected,
	peer.EventTerminated:    EventTerminated,
	peer.EventPeerRefused:   EventPeerRefused,
	peer.EventPeerRestarted: EventPeerRestarted,
}

// peerEvent reports an endpoint's event.
func (m *Manager) peerEvent(e peer.Event) {
	ev := Event{
		Type:     eventTypes[e.Kind],
		Address:  e.Address,
		Peer:     e.Peer,
		Level:    e.Level,
		QueueLen: e.QueueLen,
		QueueCap: e.QueueCap,
		Attempt:  e.Attempt,
		Delay:    e.Delay,
		Count:    e.Count,
		Err:      e.Err,
	}
	if e.Kind == peer.EventTerminated || e.Kind == peer.EventPeerRestarted {
		ev.Reason = e.Reason.String()
	}
	m.events.emit(ev)
}

// states are the states by peer.State.
var states = [...]State{
	peer.StateConnecting:   StateConnecting,
	peer.StateConnected:    StateConnected,
	peer.StateReconnecting: StateReconnecting,
	peer.StateTerminated:   StateTerminated,
	peer.StateWaiting:      StateWaiting,
}

// endpointStats returns a snapshot of an endpoint's statistics.
func endpointStats(ep *peer.Endpoint) EndpointStats {
	ps := ep.Stats()
	s := EndpointStats{
		Address:    ps.Address,
		Peer:       ps.Peer,
		State:      states[ps.State],
		BytesIn:    ps.BytesIn,
		Throttled:  ps.Throttled,
		Reconnects: ps.Reconnects,
	}
	for i, ls := range []*LaneStats{&s.User, &s.System} {
		pl := &ps.Lanes[i]
		*ls = LaneStats{
			Enqueued:     pl.Enqueued,
			Sent:         pl.Sent,
			Acked:        pl.Acked,
			Resent:       pl.Resent,
			Refused:      pl.Refused,
			DeadLettered: DeadLetterCounts(pl.DeadLettered),
			Queued:       pl.Queued,
			Capacity:     pl.Capacity,
			Batches:      pl.Batches,
			BytesOut:     pl.BytesOut,
			Shed:         pl.Shed,
			Sheds:        pl.Sheds,
		}
	}
	return s
}

// dialOptions are the options of every connection this node dials: the
// endpoints' and the calls'.
func (m *Manager) dialOptions() []grpc.DialOption {
	var creds credentials.TransportCredentials = insecure.NewCredentials()
	if m.o.clientCreds != nil {
		creds = m.o.clientCreds
	}
	opts := []grpc.DialOption{
		grpc.WithTransportCredentials(creds),
		grpc.WithDisableRetry(),
		experimental.WithBufferPool(wire.Pool()),
		grpc.WithDefaultCallOptions(
			grpc.MaxCallRecvMsgSize(m.o.limits.MaxFrameBytes+1024),
			grpc.MaxCallSendMsgSize(m.o.limits.MaxFrameBytes+1024),
		),
	}
	opts = append(opts, transportOptions(&m.o, grpc.WithInitialWindowSize, grpc.WithInitialConnWindowSize,
		grpc.WithReadBufferSize, grpc.WithWriteBufferSize)...)
	return append(opts, m.o.dialOptions...)
}
