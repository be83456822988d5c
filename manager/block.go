package manager

import (
	"fmt"
	"slices"
	"sync"

	"github.com/courier-go/courier/internal/wire"
	"github.com/courier-go/courier/peer"
	courierv1 "github.com/courier-go/courier/proto/courier/v1"
)

// WithBlockList sets the system ids the node refuses from the start; see
// Block.
func WithBlockList(systemIDs ...string) Option {
	return optionFunc(func(o *options) { o.blocked = append(o.blocked, systemIDs...) })
}

// blockList is the set of blocked system ids. Reads, on every handshake,
// take no lock: the set is replaced, never changed in place.
type blockList struct {
	mu  sync.Mutex // serializes writers
	set map[string]struct{}
}

// Block refuses the system systemID from now on, in both directions: its
// handshakes are refused with reason "blocked", its live streams are closed
// at once and nothing more from them is delivered, the endpoints that send
// to it fail with reason "blocked", dead-lettering what they held, and the
// watchers of its processes are told Terminated. Safe at any time from any
// goroutine.
func (m *Manager) Block(systemID string) {
	if !m.initialized() {
		return
	}
	m.blockMu.Lock()
	next := make(map[string]struct{}, len(*m.blocked.Load())+1)
	for id := range *m.blocked.Load() {
		next[id] = struct{}{}
	}
	next[systemID] = struct{}{}
	m.blocked.Store(&next)
	m.blockMu.Unlock()

	// Inbound: no more deliveries from any incarnation of the system, and
	// its streams end now.
	m.inbound.Range(func(k, _ any) bool {
		if pk := k.(peerKey); pk.systemID == systemID {
			m.quarantineBlocked(Peer{SystemID: pk.systemID, Incarnation: pk.incarnation})
		}
		return true
	})
	m.killStreams(systemID)
	// Outbound: the endpoints of the system fail.
	m.endpoints.Range(func(_, v any) bool {
		ep := v.(*peer.Endpoint)
		if p, ok := ep.Peer(); ok && p.SystemID == systemID {
			ep.Terminate(peer.ReasonBlocked, fmt.Errorf("%w: %s", ErrBlocked, systemID))
		}
		return true
	})
}

// Unblock lets the system systemID connect again. Incarnations of it that
// were connected when it was blocked stay quarantined; it must restart to
// be accepted. Safe at any time from any goroutine.
func (m *Manager) Unblock(systemID string) {
	if !m.initialized() {
		return
	}
	m.blockMu.Lock()
	defer m.blockMu.Unlock()
	next := make(map[string]struct{}, len(*m.blocked.Load()))
	for id := range *m.blocked.Load() {
		if id != systemID {
			next[id] = struct{}{}
		}
	}
	m.blocked.Store(&next)
}

// Blocked returns the blocked system ids, sorted.
func (m *Manager) Blocked() []string {
	if !m.initialized() {
		return nil
	}
	set := *m.blocked.Load()
	ids := make([]string, 0, len(set))
	for id := range set {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

func (m *Manager) isBlocked(systemID string) bool {
	_, ok := (*m.blocked.Load())[systemID]
	return ok
}

// refuseBlocked is the handshake's refusal of a blocked system.
func refuseBlocked(systemID string) error {
	return wire.Refuse(courierv1.RefuseReason_REFUSE_REASON_BLOCKED, "system %q is blocked", systemID)
}
