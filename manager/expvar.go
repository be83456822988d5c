package manager

import (
	"expvar"
	"fmt"
	"sync"
)

// NodeStats is a snapshot of a node's statistics, every endpoint's
// included. It is what PublishExpvar publishes, and the hook for any other
// metrics system: poll Snapshot (and Stats or AllStats) on the metrics
// system's schedule, and Subscribe for events as they happen.
type NodeStats struct {
	SystemID      string
	Incarnation   uint64
	Addr          string
	DeadLetters   uint64
	DroppedEvents uint64
	Blocked       []string
	Endpoints     []EndpointStats
}

// Snapshot returns the node's statistics.
func (m *Manager) Snapshot() NodeStats {
	if !m.initialized() {
		return NodeStats{}
	}
	return NodeStats{
		SystemID:      m.o.systemID,
		Incarnation:   m.incarnation,
		Addr:          m.addr,
		DeadLetters:   m.DeadLetters(),
		DroppedEvents: m.DroppedEvents(),
		Blocked:       m.Blocked(),
		Endpoints:     m.AllStats(),
	}
}

var expvarMu sync.Mutex // expvar.Publish panics on a name taken twice

// PublishExpvar publishes the node's statistics (Snapshot, as JSON) through
// the standard library's expvar under name, so that a process serving
// expvar's handler shows them at /debug/vars. It returns an error if the
// name is taken. expvar cannot unpublish: after Close the variable goes on
// showing the closed node's last statistics.
func (m *Manager) PublishExpvar(name string) error {
	if !m.initialized() {
		return ErrNotInitialized
	}
	expvarMu.Lock()
	defer expvarMu.Unlock()
	if expvar.Get(name) != nil {
		return fmt.Errorf("manager: expvar %q is already published", name)
	}
	expvar.Publish(name, expvar.Func(func() any { return m.Snapshot() }))
	return nil
}
