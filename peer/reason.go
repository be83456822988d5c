package peer

import (
	"errors"
	"fmt"

	"github.com/courier-go/courier/writer"
)

// Reason says why an envelope was dead-lettered instead of delivered. It
// numbers every reason of the node; the writer decides two of them
// (ReasonTooLarge and ReasonShutdown, at the values writer.Reason gives
// them), the endpoint the others.
type Reason uint8

// Dead-letter reasons.
const (
	// ReasonQueueFull: the lane's queue was full and the overflow policy
	// dropped the envelope.
	ReasonQueueFull Reason = iota
	// ReasonTooLarge: the envelope does not fit in a frame under the limits
	// negotiated with the peer (decided by the writer).
	ReasonTooLarge
	// ReasonEndpointTerminated: the endpoint failed for good (the peer is
	// unreachable or gone) before the envelope was delivered.
	ReasonEndpointTerminated
	// ReasonBlocked: the peer's system id is on the block list.
	ReasonBlocked
	// ReasonShutdown: the node closed before the envelope was delivered
	// (decided by the writer, or by an endpoint that Close found without a
	// connection).
	ReasonShutdown
	// ReasonPeerRestarted: the peer came back as a new incarnation before
	// it acknowledged the envelope; what was meant for the old one is not
	// handed to the new one.
	ReasonPeerRestarted
	// ReasonPeerShutdown: the peer shut down cleanly (it said goodbye)
	// before it acknowledged the envelope, and did not come back on its
	// address within the shutdown grace. A closing peer acknowledges what
	// it delivered before its goodbye, so the envelope was not delivered
	// unless that acknowledgement was lost on the way.
	ReasonPeerShutdown
	// ReasonQuarantined: the peer refuses this node's incarnation for good
	// (it gave up on it), or this node gave up on the peer's.
	ReasonQuarantined
	// ReasonUnresolvable: the endpoint's host name does not resolve: the
	// resolver says no such host.
	ReasonUnresolvable

	// NumReasons is the number of reasons, for arrays indexed by Reason.
	NumReasons = iota
)

// The writer's reasons keep their places in the numbering: a constant
// below zero or above the range does not compile.
const _ = uint8(ReasonTooLarge-Reason(writer.ReasonTooLarge)) +
	uint8(Reason(writer.ReasonTooLarge)-ReasonTooLarge) +
	uint8(ReasonShutdown-Reason(writer.ReasonShutdown)) +
	uint8(Reason(writer.ReasonShutdown)-ReasonShutdown)

// String returns the reason as the documentation words it.
func (r Reason) String() string {
	switch r {
	case ReasonQueueFull:
		return "queue full"
	case ReasonTooLarge:
		return "too large"
	case ReasonEndpointTerminated:
		return "endpoint terminated"
	case ReasonBlocked:
		return "blocked"
	case ReasonShutdown:
		return "shutdown"
	case ReasonPeerRestarted:
		return "peer restarted"
	case ReasonPeerShutdown:
		return "peer shut down"
	case ReasonQuarantined:
		return "quarantined"
	case ReasonUnresolvable:
		return "unresolvable host"
	}
	return fmt.Sprintf("reason(%d)", uint8(r))
}

// Errors of an endpoint. Compare with errors.Is; package manager re-exports
// them under the same names.
var (
	// ErrQueueFull: the user queue is full and the overflow policy is Fail.
	ErrQueueFull = errors.New("peer: queue full")
	// ErrTooLarge: the envelope can never fit in a frame.
	ErrTooLarge = errors.New("peer: envelope too large")
	// ErrEndpointTerminated: the endpoint gave up on its peer; it queues
	// nothing more.
	ErrEndpointTerminated = errors.New("peer: endpoint terminated")
	// ErrSystemQueueFull: the peer left the system queue full for the
	// system queue timeout; it is treated as failed.
	ErrSystemQueueFull = errors.New("peer: system queue full, peer failed")
	// ErrPeerSilent: nothing came back on the control stream, not even a
	// heartbeat reply, for the heartbeat timeout; the connection is
	// dropped and dialed again.
	ErrPeerSilent = errors.New("peer: silent")
	// ErrIdle: a client-only peer had no stream for the idle timeout, and
	// its endpoint ended.
	ErrIdle = errors.New("peer: idle")
	// ErrClosed: the endpoint is closing, because its node is; Send
	// refuses what comes after.
	ErrClosed = errors.New("peer: closed")
)
