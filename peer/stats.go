package peer

import (
	"github.com/courier-go/courier/batch"
	"github.com/courier-go/courier/reader"
)

// LaneStats are one lane's statistics; package manager documents each
// field (manager.LaneStats).
type LaneStats struct {
	Enqueued, Sent, Acked, Resent, Refused uint64
	// DeadLettered counts dead letters by reason, those Send dropped for a
	// full queue included.
	DeadLettered      [NumReasons]uint64
	Queued, Capacity  int
	Batches, BytesOut uint64
	// Shed reports that the lane holds no memory for its queue (see
	// Config.IdleRelease); Sheds counts the times it gave it back.
	Shed  bool
	Sheds uint64
}

// Stats is a snapshot of an endpoint's statistics.
type Stats struct {
	Address string
	Peer    reader.Peer
	State   State
	// Lanes are indexed by batch.Lane.
	Lanes [2]LaneStats
	// BytesIn counts frame bytes received on the endpoint's own streams.
	BytesIn uint64
	// Throttled is 1 while the user queue is throttled, else 0.
	Throttled  int
	Reconnects uint64
	// ControlFrames counts the frames received on the control stream:
	// acknowledgements and heartbeat replies, what the liveness watchdog
	// looks at.
	ControlFrames uint64
}

// Stats returns a snapshot of the endpoint's statistics. Each counter is
// read once, without a lock.
func (e *Endpoint) Stats() Stats {
	s := Stats{
		Address:    e.address,
		State:      e.State(),
		Throttled:  int(e.throttled.Load()),
		Reconnects: e.reconnects.Load(),
	}
	s.Peer, _ = e.Peer()
	for i := range e.lanes {
		ln, ls := &e.lanes[i], &s.Lanes[i]
		ls.Enqueued = ln.ring.Pushed() // a push the ring accepted is enqueued
		ls.Refused = ln.sc.refused.Load()
		ls.Sent = ln.wc.Sent.Load()
		ls.Acked = ln.wc.Acked.Load()
		ls.Resent = ln.wc.Resent.Load()
		ls.Batches = ln.wc.Batches.Load()
		ls.BytesOut = ln.wc.BytesOut.Load()
		for r := range ls.DeadLettered {
			ls.DeadLettered[r] = ln.dead[r].Load()
		}
		ls.DeadLettered[ReasonQueueFull] += ln.sc.droppedFull.Load()
		ls.Queued = ln.ring.Len()
		ls.Capacity = ln.ring.Cap()
		ls.Shed, ls.Sheds = !ln.ring.Holding(), ln.wc.Sheds.Load()
		s.BytesIn += ln.rc.BytesIn.Load()
	}
	s.ControlFrames = e.lanes[batch.LaneSystem].rc.Frames.Load()
	return s
}
