package manager

import (
	"context"
	"errors"
	"io"
	"strconv"
	"sync"

	"github.com/courier-go/courier/batch"
	"github.com/courier-go/courier/internal/wire"
	"github.com/courier-go/courier/peer"
	courierv1 "github.com/courier-go/courier/proto/courier/v1"
	"github.com/courier-go/courier/reader"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// clientAddress is the address this node gives a client-only peer.
func clientAddress(h *courierv1.Hello) string {
	return ClientAddressPrefix + h.GetSystemId() + ":" + strconv.FormatUint(h.GetIncarnation(), 16)
}

// checkHello decides on a Hello that passed the generic checks.
func (m *Manager) checkHello(ctx context.Context, h *courierv1.Hello) (*courierv1.Welcome, error) {
	if m.closed.Load() {
		// Not final: the node may come back on its address.
		return nil, wire.Refuse(courierv1.RefuseReason_REFUSE_REASON_UNAVAILABLE, "node is shutting down")
	}
	if m.isBlocked(h.GetSystemId()) {
		return nil, refuseBlocked(h.GetSystemId())
	}
	if m.live.count(h.GetSystemId()) >= m.o.maxStreams {
		return nil, refuseTooManyStreams(h.GetSystemId(), m.o.maxStreams)
	}
	if err := m.authorize(ctx, h); err != nil {
		return nil, err
	}
	if m.quarantined(Peer{SystemID: h.GetSystemId(), Incarnation: h.GetIncarnation()}) {
		// Final: the dialer's endpoint gives up instead of retrying.
		return nil, wire.Refuse(courierv1.RefuseReason_REFUSE_REASON_QUARANTINED, "incarnation %x of %s is quarantined", h.GetIncarnation(), h.GetSystemId())
	}
	// The stream's slot is taken before the Welcome goes out, so that a
	// peer welcomed is never then refused for the limit; acceptStream
	// takes the slot over, or the handshake's failure gives it back.
	if !m.live.reserve(h.GetSystemId(), m.o.maxStreams) {
		return nil, refuseTooManyStreams(h.GetSystemId(), m.o.maxStreams)
	}
	return wire.NewWelcome(m.self(), h), nil
}

// self is what this node states about itself in a handshake.
func (m *Manager) self() wire.Node {
	return wire.Node{SystemID: m.o.systemID, Incarnation: m.incarnation, Address: m.advertised(), Limits: m.o.limits}
}

// refusedStream reports a refused or failed handshake.
func (m *Manager) refusedStream(h *courierv1.Hello, err error) {
	ev := Event{Type: EventPeerRefused, Err: err}
	if h != nil {
		ev.Peer = Peer{SystemID: h.GetSystemId(), Address: h.GetAddress(), Incarnation: h.GetIncarnation()}
		ev.Address = h.GetAddress()
	}
	m.events.emit(ev)
}

// abandonedStream gives back the slot checkHello reserved for a stream that
// failed before acceptStream took it over.
func (m *Manager) abandonedStream(h *courierv1.Hello) { m.live.release(h.GetSystemId()) }

// acceptStream sets up the receive side of an accepted stream. A peer with
// an address is answered on the stream with acks only, sent by the receive
// loop itself; traffic to it goes over this node's own connection. A
// client-only peer's stream also carries this node's traffic to it, sent by
// the writer of its endpoint.
func (m *Manager) acceptStream(_ context.Context, h *courierv1.Hello, w *courierv1.Welcome, s wire.Stream) (*reader.Accepted, error) {
	lane, _ := wire.LaneFromProto(h.GetLane())
	peer := Peer{SystemID: h.GetSystemId(), Address: h.GetAddress(), Incarnation: h.GetIncarnation()}
	acc := &reader.Accepted{Receive: reader.Receive{Peer: peer, Lane: lane, Logger: m.log}}
	forget := m.track(peer, acc)
	if peer.Address != "" {
		in := m.bindReceive(&acc.Receive, peer, lane)
		acc.Receive.Counters = &in.counters
		is := &inboundStream{s: s, state: &in.state}
		m.streams.Store(is, struct{}{})
		acc.Receive.Ack = is.ack
		acc.Receive.Heartbeat = is.heartbeat
		report := m.streamDone(peer)
		acc.Done = func(err error) {
			forget()
			m.streams.Delete(is)
			report(err)
		}
		return acc, nil
	}

	// A client-only peer: its endpoint sends over this stream.
	peer.Address = clientAddress(h)
	acc.Receive.Peer = peer
	in := m.bindReceive(&acc.Receive, peer, lane)
	acc.Receive.Counters = &in.counters
	ep, err := m.clientEndpoint(peer.Address)
	if err != nil {
		forget()
		return nil, err
	}
	detach, err := ep.Attach(&acc.Receive, s, batch.LimitsFromProto(w.GetLimits(), m.o.limits))
	if err != nil {
		forget()
		return nil, err
	}
	report := m.streamDone(peer)
	acc.Done = func(err error) {
		forget()
		detach()
		report(err)
	}
	return acc, nil
}

// inboundStream is an accepted stream whose only traffic this way is acks,
// sent by its receive loop, and the goodbye Close sends: the mutex keeps them
// from sending at once.
type inboundStream struct {
	mu     sync.Mutex
	s      wire.Stream
	state  *reader.LaneState // the peer lane's delivery state
	closed bool
}

func (is *inboundStream) ack(pos uint64) error {
	is.mu.Lock()
	defer is.mu.Unlock()
	if is.closed {
		return nil
	}
	return reader.AckInline(is.s)(pos)
}

// heartbeat answers the peer's heartbeat.
func (is *inboundStream) heartbeat(nanos uint64) error {
	is.mu.Lock()
	defer is.mu.Unlock()
	if is.closed {
		return nil
	}
	return reader.HeartbeatInline(is.s)(nanos)
}

// goodbye tells the peer this node is closing; nothing is sent after. The
// lane delivers nothing more, and what it delivered is acknowledged first,
// so that the peer does not dead-letter envelopes that arrived.
func (is *inboundStream) goodbye() {
	last := is.state.Close() // waits for a batch in progress
	is.mu.Lock()
	defer is.mu.Unlock()
	if !is.closed {
		is.closed = true
		if last > 0 {
			_ = reader.AckInline(is.s)(last)
		}
		_ = wire.Goodbye(is.s, "node shutting down")
	}
}

// clientEndpoint returns the endpoint of a client-only peer, creating it.
func (m *Manager) clientEndpoint(address string) (*peer.Endpoint, error) {
	if v, ok := m.endpoints.Load(address); ok {
		return v.(*peer.Endpoint), nil
	}
	return m.newEndpoint(address, true)
}

// streamDone returns the function that reports how an inbound stream ended.
func (m *Manager) streamDone(p Peer) func(error) {
	return func(err error) {
		if err == nil || isQuietEnd(err) {
			return
		}
		m.events.emit(Event{Type: EventStreamError, Address: p.Address, Peer: p, Err: err})
	}
}

// isQuietEnd reports whether an inbound stream ended the ordinary way: the
// peer said goodbye or went away, or this node is closing.
func isQuietEnd(err error) bool {
	if errors.Is(err, reader.ErrGoodbye) || errors.Is(err, io.EOF) || errors.Is(err, context.Canceled) ||
		errors.Is(err, reader.ErrSuperseded) || errors.Is(err, reader.ErrQuarantined) {
		return true
	}
	switch status.Code(err) {
	case codes.Canceled, codes.Unavailable:
		return true
	}
	return false
}
