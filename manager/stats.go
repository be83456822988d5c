package manager

import (
	"encoding/json"
	"fmt"
	"strconv"

	"github.com/courier-go/courier/peer"
)

// State is an endpoint's connection state.
type State uint8

// Endpoint states.
const (
	// StateConnecting: dialing or handshaking for the first time.
	StateConnecting State = iota
	// StateConnected: streams up, envelopes flowing.
	StateConnected
	// StateReconnecting: the connection failed; waiting to retry.
	StateReconnecting
	// StateTerminated: given up for good.
	StateTerminated
	// StateWaiting: a client-only peer's endpoint, waiting for the peer to
	// connect (again).
	StateWaiting
)

// String returns the state's name.
func (s State) String() string {
	switch s {
	case StateConnecting:
		return "connecting"
	case StateConnected:
		return "connected"
	case StateReconnecting:
		return "reconnecting"
	case StateTerminated:
		return "terminated"
	case StateWaiting:
		return "waiting"
	}
	return "state"
}

// DeadLetterReason says why an envelope was not delivered.
type DeadLetterReason = peer.Reason

// Dead-letter reasons.
const (
	ReasonQueueFull          = peer.ReasonQueueFull
	ReasonTooLarge           = peer.ReasonTooLarge
	ReasonEndpointTerminated = peer.ReasonEndpointTerminated
	ReasonBlocked            = peer.ReasonBlocked
	ReasonShutdown           = peer.ReasonShutdown
	ReasonPeerRestarted      = peer.ReasonPeerRestarted
	ReasonPeerShutdown       = peer.ReasonPeerShutdown
	ReasonQuarantined        = peer.ReasonQuarantined
	ReasonUnresolvable       = peer.ReasonUnresolvable
)

// DeadLetter is an envelope that was not delivered.
type DeadLetter struct {
	// Address is the endpoint it was sent to.
	Address string
	// Envelope is the envelope, owned by the handler.
	Envelope Envelope
	// Reason says why it was not delivered.
	Reason DeadLetterReason
}

// LaneStats are one lane's statistics.
type LaneStats struct {
	// Enqueued counts envelopes accepted into the lane's queue.
	Enqueued uint64
	// Sent counts envelopes handed to a stream for the first time.
	Sent uint64
	// Acked counts envelopes the peer has acknowledged as delivered.
	Acked uint64
	// Resent counts envelopes sent again after a reconnect.
	Resent uint64
	// Refused counts Sends to the endpoint that returned an error without
	// queueing (a full queue under Fail, a terminated endpoint, a context
	// that ended). Envelopes Send refuses as invalid or too large are, but
	// for a payload within 64 bytes of the frame limit, refused before the
	// endpoint is looked up, and not counted here.
	Refused uint64
	// DeadLettered counts envelopes dead-lettered, by reason; the queue
	// full reason counts envelopes dropped at Send, never enqueued.
	DeadLettered DeadLetterCounts
	// Queued is the queue's length: envelopes waiting to be sent plus those
	// sent and awaiting acknowledgement. Capacity is its size.
	Queued, Capacity int
	// Batches counts frames sent, BytesOut their bytes.
	Batches, BytesOut uint64
	// Shed reports that the lane holds no memory for its queue now: it has
	// been idle for the idle-release period (WithIdleRelease), or has sent
	// nothing yet. Sheds counts the times it gave the memory back.
	Shed  bool
	Sheds uint64
}

// DeadLetterCounts are dead-letter counts indexed by reason
// (counts[ReasonQueueFull]). They print, and marshal to JSON, with the
// reasons' names: "{queue full: 3, too large: 0, ...}" and
// {"queue full":3,"too large":0,...}.
type DeadLetterCounts [peer.NumReasons]uint64

// String returns every reason's name and count, in reason order.
func (c DeadLetterCounts) String() string {
	b := []byte{'{'}
	for r, n := range c {
		if r > 0 {
			b = append(b, ", "...)
		}
		b = append(b, peer.Reason(r).String()...)
		b = append(b, ": "...)
		b = strconv.AppendUint(b, n, 10)
	}
	return string(append(b, '}'))
}

// MarshalJSON encodes the counts as an object keyed by reason name, in
// reason order.
func (c DeadLetterCounts) MarshalJSON() ([]byte, error) {
	b := []byte{'{'}
	for r, n := range c {
		if r > 0 {
			b = append(b, ',')
		}
		name, err := json.Marshal(peer.Reason(r).String())
		if err != nil {
			return nil, err
		}
		b = append(append(b, name...), ':')
		b = strconv.AppendUint(b, n, 10)
	}
	return append(b, '}'), nil
}

// UnmarshalJSON decodes what MarshalJSON encodes. A reason it does not
// know, from a newer node, is skipped.
func (c *DeadLetterCounts) UnmarshalJSON(data []byte) error {
	var byName map[string]uint64
	if err := json.Unmarshal(data, &byName); err != nil {
		return fmt.Errorf("manager: dead-letter counts: %w", err)
	}
	*c = DeadLetterCounts{}
	for r := range c {
		c[r] = byName[peer.Reason(r).String()]
	}
	return nil
}

// DeadLetteredAfterEnqueue sums the dead letters of envelopes that had been
// enqueued: every reason but queue full.
func (s *LaneStats) DeadLetteredAfterEnqueue() uint64 {
	var n uint64
	for r, c := range s.DeadLettered {
		if peer.Reason(r) != peer.ReasonQueueFull {
			n += c
		}
	}
	return n
}

// Balanced reports whether every enqueued envelope is accounted for:
// Enqueued == Acked + DeadLetteredAfterEnqueue + Queued. It holds whenever
// the lane is quiet (no Send or acknowledgement in flight).
func (s *LaneStats) Balanced() bool {
	return s.Enqueued == s.Acked+s.DeadLetteredAfterEnqueue()+uint64(s.Queued)
}

// EndpointStats is a snapshot of one endpoint's statistics.
type EndpointStats struct {
	// Address is the endpoint's address.
	Address string
	// Peer is the peer as of the last handshake.
	Peer Peer
	// State is the connection state.
	State State
	// User and System are the two lanes.
	User, System LaneStats
	// BytesIn counts frame bytes received from the peer on this node's own
	// connection to it (acks, and a client-only peer's traffic).
	BytesIn uint64
	// Throttled is 1 while the user queue is above its low watermark after
	// reaching the high one, else 0.
	Throttled int
	// Reconnects counts reconnections after a failure.
	Reconnects uint64
}
