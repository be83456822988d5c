package manager

import (
	"math"

	"github.com/courier-go/courier/internal/wire"
	"github.com/courier-go/courier/peer"
	"github.com/courier-go/courier/reader"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/experimental"
)

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
	if m.o.streamWindow > 0 {
		opts = append(opts, grpc.WithInitialWindowSize(m.o.streamWindow), grpc.WithInitialConnWindowSize(m.o.connWindow))
	}
	if m.o.readBuffer > 0 {
		opts = append(opts, grpc.WithReadBufferSize(m.o.readBuffer))
	}
	if m.o.writeBuffer > 0 {
		opts = append(opts, grpc.WithWriteBufferSize(m.o.writeBuffer))
	}
	return append(opts, m.o.dialOptions...)
}
