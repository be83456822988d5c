package manager

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/courier-go/courier/batch"
	"github.com/courier-go/courier/peer"
	"github.com/courier-go/courier/reader"
)

// The header of a Terminated that the node delivers itself, because the
// watched process's node is gone: its key, and the value that says so.
const (
	ReasonHeader      = "courier-reason"
	AddressTerminated = "address terminated"
)

// ErrQuarantined: this node gave up on the peer incarnation (its endpoint
// terminated, or the peer came back as a new incarnation), and refuses it
// from then on, in both directions, as Artery quarantines. Only a restarted
// peer, with a new incarnation, is accepted again.
var ErrQuarantined = reader.ErrQuarantined

// Watch asks the node at address to tell watcher, a local process, when
// target, a process there, terminates. It sends a system envelope of kind
// Watch (Target target, SenderID watcher) and keeps the watch on record.
//
// The watcher receives, through the handler, exactly one system envelope of
// kind Terminated for the watch unless it unwatches first: the one the
// peer sends when target terminates, or, if the peer is lost (its endpoint
// terminates or it restarts as a new incarnation), one this node makes,
// with SenderAddress address and the header ReasonHeader set to
// AddressTerminated. A Terminated is delivered only after every user
// envelope the peer sent before it that is delivered at all.
//
// The peer must advertise address (see WithAdvertiseAddress): its
// Terminated is matched to the watch by the peer's advertised address.
// Sending a system envelope of kind Watch with Send is the same as Watch.
func (m *Manager) Watch(ctx context.Context, address, watcher, target string) error {
	return m.Send(ctx, address, &Envelope{Target: target, SenderID: watcher, Lane: batch.LaneSystem, Kind: batch.KindWatch})
}

// Unwatch ends a watch: it sends a system envelope of kind Unwatch and
// forgets the watch, so no Terminated is delivered for it from now on.
// Sending a system envelope of kind Unwatch with Send is the same.
func (m *Manager) Unwatch(ctx context.Context, address, watcher, target string) error {
	return m.Send(ctx, address, &Envelope{Target: target, SenderID: watcher, Lane: batch.LaneSystem, Kind: batch.KindUnwatch})
}

// Watches returns how many watches the node has on record for address.
func (m *Manager) Watches(address string) int {
	if !m.initialized() {
		return 0
	}
	return m.watched.count(address)
}

// sendSystem does the watch bookkeeping of a system envelope and queues it.
func (m *Manager) sendSystem(ctx context.Context, ep *peer.Endpoint, address string, env *Envelope) error {
	k := watchKey{watcher: env.SenderID, target: env.Target}
	switch env.Kind {
	case batch.KindWatch:
		if env.SenderID == "" {
			return fmt.Errorf("%w: a watch needs a watcher (SenderID)", ErrInvalidEnvelope)
		}
		m.watched.add(address, k)
		err := send(ctx, ep, env)
		if err != nil {
			m.watched.remove(address, k)
		}
		return err
	case batch.KindUnwatch:
		m.watched.remove(address, k)
	case batch.KindTerminated:
		// Stamp where the user lane stands, so that the peer holds this
		// back until it has delivered everything sent to it before.
		e := *env
		e.DataPosition = ep.DataPosition()
		return send(ctx, ep, &e)
	}
	return send(ctx, ep, env)
}

type watchKey struct{ watcher, target string }

// watches is the record of watches by the watched process's address.
type watches struct {
	mu sync.Mutex
	by map[string]map[watchKey]struct{}
}

func (w *watches) add(address string, k watchKey) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.by == nil {
		w.by = map[string]map[watchKey]struct{}{}
	}
	set := w.by[address]
	if set == nil {
		set = map[watchKey]struct{}{}
		w.by[address] = set
	}
	set[k] = struct{}{}
}

// remove forgets a watch and reports whether it was on record.
func (w *watches) remove(address string, k watchKey) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	set := w.by[address]
	if _, ok := set[k]; !ok {
		return false
	}
	delete(set, k)
	if len(set) == 0 {
		delete(w.by, address)
	}
	return true
}

// take forgets, and returns, every watch of address.
func (w *watches) take(address string) []watchKey {
	w.mu.Lock()
	defer w.mu.Unlock()
	set := w.by[address]
	delete(w.by, address)
	keys := make([]watchKey, 0, len(set))
	for k := range set {
		keys = append(keys, k)
	}
	return keys
}

func (w *watches) count(address string) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.by[address])
}

// peerKey names one peer incarnation.
type peerKey struct {
	systemID    string
	incarnation uint64
}

// inboundLane is what this node keeps for one lane from one peer
// incarnation: what has been delivered, and receive statistics.
type inboundLane struct {
	state    reader.LaneState
	counters reader.Counters
}

// inboundPeer is what this node keeps for one peer incarnation's inbound
// traffic: its lanes, and the Terminated envelopes that wait for its user
// lane.
type inboundPeer struct {
	lanes [2]inboundLane

	heldN       atomic.Int32 // len(held), for the user lane's fast path
	mu          sync.Mutex
	held        []heldTerminated
	quarantined bool
}

type heldTerminated struct {
	peer Peer
	env  Envelope // cloned
}

func (m *Manager) inboundPeer(p Peer) *inboundPeer {
	k := peerKey{p.SystemID, p.Incarnation}
	if v, ok := m.inbound.Load(k); ok {
		return v.(*inboundPeer)
	}
	v, _ := m.inbound.LoadOrStore(k, new(inboundPeer))
	return v.(*inboundPeer)
}

// LaneWanted reports whether the node waits for the batch that peer's lane
// is delivering to end: to give up on the peer (it was blocked, restarted
// or lost), or to hand the lane to a new stream of it. A Handler that holds
// a delivery back, waiting for room downstream, should check it while it
// waits and return promptly once it reports true; the node cannot close the
// lane, or tell watchers that the peer is gone, before it does.
func (m *Manager) LaneWanted(peer Peer, lane batch.Lane) bool {
	if !m.initialized() {
		return false
	}
	v, ok := m.inbound.Load(peerKey{peer.SystemID, peer.Incarnation})
	if !ok {
		return false
	}
	ip := v.(*inboundPeer)
	return int(lane) < len(ip.lanes) && ip.lanes[lane].state.Wanted()
}

// quarantined reports whether the node gave up on the peer incarnation.
func (m *Manager) quarantined(p Peer) bool {
	v, ok := m.inbound.Load(peerKey{p.SystemID, p.Incarnation})
	if !ok {
		return false
	}
	ip := v.(*inboundPeer)
	ip.mu.Lock()
	defer ip.mu.Unlock()
	return ip.quarantined
}

// bindReceive makes rcv deliver p's lane through the node: it shares the
// lane's state with every other stream of the peer incarnation, and holds
// Terminated envelopes back for the user lane.
func (m *Manager) bindReceive(rcv *reader.Receive, p Peer, lane batch.Lane) *inboundLane {
	ip := m.inboundPeer(p)
	in := &ip.lanes[lane]
	rcv.State = &in.state
	rcv.Generation = in.state.Claim()
	if lane == batch.LaneSystem {
		rcv.Deliver = func(p *Peer, env *Envelope) { m.deliverSystem(ip, p, env) }
	} else {
		rcv.Deliver = m.deliver
		rcv.Delivered = func(last uint64) { m.releaseHeld(ip, last) }
	}
	return in
}

// deliver hands an inbound user envelope to the handler.
func (m *Manager) deliver(p *Peer, env *Envelope) { m.o.handler.Deliver(*p, env) }

// deliverSystem hands an inbound system envelope to the handler, except a
// Terminated whose user-lane position the user lane has not delivered yet:
// that one waits for it.
func (m *Manager) deliverSystem(ip *inboundPeer, p *Peer, env *Envelope) {
	if env.Kind != batch.KindTerminated {
		m.o.handler.Deliver(*p, env)
		return
	}
	if env.DataPosition > 0 {
		ip.mu.Lock()
		// Checked under ip.mu, which releaseHeld takes after the user lane
		// has moved: either this sees the new position or releaseHeld sees
		// the held envelope.
		if !ip.quarantined && ip.lanes[batch.LaneUser].state.Last() < env.DataPosition {
			ip.held = append(ip.held, heldTerminated{peer: *p, env: env.Clone()})
			ip.heldN.Store(int32(len(ip.held)))
			ip.mu.Unlock()
			return
		}
		ip.mu.Unlock()
	}
	m.deliverTerminated(*p, env)
}

// releaseHeld delivers the held Terminated envelopes the user lane has
// caught up with. It runs after every user batch.
func (m *Manager) releaseHeld(ip *inboundPeer, last uint64) {
	if ip.heldN.Load() == 0 {
		return
	}
	ip.mu.Lock()
	var ready []heldTerminated
	keep := ip.held[:0]
	for _, h := range ip.held {
		if h.env.DataPosition <= last {
			ready = append(ready, h)
		} else {
			keep = append(keep, h)
		}
	}
	clear(ip.held[len(keep):])
	ip.held = keep
	ip.heldN.Store(int32(len(keep)))
	ip.mu.Unlock()
	for i := range ready {
		m.deliverTerminated(ready[i].peer, &ready[i].env)
	}
}

// deliverTerminated delivers a Terminated from the peer if it answers a
// watch on record, and forgets the watch: a watcher hears of each watch
// once, from the peer or from this node.
func (m *Manager) deliverTerminated(p Peer, env *Envelope) {
	if !m.watched.remove(p.Address, watchKey{watcher: env.Target, target: env.SenderID}) {
		m.staleTerminated.Add(1)
		return
	}
	m.deliverSafely(p, env)
}

// quarantine gives up on a peer incarnation: its lanes deliver nothing more
// (waiting for a batch in progress), its held Terminated envelopes are
// delivered, since the user data they wait for can no longer arrive, and
// its handshakes are refused from now on.
func (m *Manager) quarantine(p Peer) { m.quarantineHeld(p, true) }

// quarantineBlocked is quarantine for a blocked peer: its held Terminated
// envelopes are dropped, since nothing from it is delivered any more.
func (m *Manager) quarantineBlocked(p Peer) { m.quarantineHeld(p, false) }

func (m *Manager) quarantineHeld(p Peer, deliverHeld bool) {
	ip := m.inboundPeer(p)
	for i := range ip.lanes {
		ip.lanes[i].state.Close()
	}
	ip.mu.Lock()
	ip.quarantined = true
	held := ip.held
	ip.held = nil
	ip.heldN.Store(0)
	ip.mu.Unlock()
	if !deliverHeld {
		m.staleTerminated.Add(uint64(len(held)))
		return
	}
	for i := range held {
		m.deliverTerminated(held[i].peer, &held[i].env)
	}
}

// settleWatches tells every local watcher of a process at address that it
// terminated with the address: the peer is gone.
func (m *Manager) settleWatches(address string, p Peer) {
	for _, k := range m.watched.take(address) {
		env := Envelope{
			Target:        k.watcher,
			SenderID:      k.target,
			SenderAddress: address,
			Lane:          batch.LaneSystem,
			Kind:          batch.KindTerminated,
			Header:        []batch.Header{{Key: ReasonHeader, Value: AddressTerminated}},
		}
		m.deliverSafely(p, &env)
	}
}

// deliverSafely calls the handler from a goroutine of the node's own,
// where a panic must not take the node down.
func (m *Manager) deliverSafely(p Peer, env *Envelope) {
	defer func() {
		if r := recover(); r != nil {
			m.log.Error("courier: handler panicked on a Terminated", "target", env.Target, "panic", r)
		}
	}()
	m.o.handler.Deliver(p, env)
}
