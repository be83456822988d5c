package peer

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/courier-go/courier/batch"
	"github.com/courier-go/courier/internal/wire"
	"github.com/courier-go/courier/reader"
)

// Overflow says what Send does with a user envelope when the user queue is
// full.
type Overflow uint8

const (
	// DropNewest dead-letters the envelope with ReasonQueueFull.
	DropNewest Overflow = iota
	// Block waits for room until Send's context ends.
	Block
	// Fail returns ErrQueueFull.
	Fail
)

// State is where an endpoint's connection stands; manager.State names the
// same states for users.
type State uint8

// Endpoint states, in manager.State's order.
const (
	StateConnecting   State = iota // before the first connection is up
	StateConnected                 // both streams up
	StateReconnecting              // between attempts, by the policy
	StateTerminated                // gave up; nothing more is queued
	StateWaiting                   // client-only, no stream from the peer yet or any more
)

// Reconnect is the reconnect policy: how long to wait before each attempt
// and when to give up. A peer that said goodbye is instead dialed every
// Delay(1) for ShutdownGrace, then given up.
type Reconnect struct {
	// Delay returns the wait before attempt n (from 1). Required.
	Delay func(n int) time.Duration
	// MaxAttempts is how many attempts in a row may fail before the
	// endpoint gives up; 0 means no bound.
	MaxAttempts int
	// MaxElapsed bounds the time spent reconnecting, from the loss of the
	// connection (or the endpoint's start): the last attempt starts by
	// then. 0 means no bound.
	MaxElapsed time.Duration
	// ShutdownGrace is how long a peer that said goodbye is dialed again,
	// in case it restarts on its address.
	ShutdownGrace time.Duration
}

// EventKind says what happened to an endpoint.
type EventKind uint8

// Event kinds.
const (
	// EventConnected: both streams are up after the first attempt.
	EventConnected EventKind = iota + 1
	// EventThrottled: the user queue crossed a watermark (Level 1: reached
	// the high one, 0: back under the low one).
	EventThrottled
	// EventReconnecting: the connection failed or could not be made;
	// attempt Attempt starts after Delay.
	EventReconnecting
	// EventReconnected: the connection is back after a failure.
	EventReconnected
	// EventTerminated: the endpoint gave up for good, with Reason.
	EventTerminated
	// EventPeerRefused: the peer refused the handshake; Err says why.
	EventPeerRefused
	// EventPeerRestarted: the endpoint reached a new incarnation of its
	// peer, and settled with the old one first (Count envelopes
	// dead-lettered with Reason).
	EventPeerRestarted
)

// Event is one thing that happened to an endpoint.
type Event struct {
	Kind EventKind
	// Address is the endpoint's address.
	Address string
	// Peer is the peer as of the last handshake; zero before the first.
	Peer reader.Peer
	// Level, QueueLen and QueueCap describe an EventThrottled.
	Level, QueueLen, QueueCap int
	// Attempt and Delay describe an EventReconnecting.
	Attempt int
	Delay   time.Duration
	// Reason is the reason of an EventTerminated or EventPeerRestarted.
	Reason Reason
	// Count is the number of envelopes an EventPeerRestarted
	// dead-lettered.
	Count int
	// Err is the error behind an EventReconnecting, EventTerminated or
	// EventPeerRefused.
	Err error
}

// Node is what an endpoint needs of the node it belongs to, as callbacks.
// They are called from the endpoint's goroutines (and DeadLetter from
// Send's caller too), so they must be safe for concurrent use, and must
// not call back into the endpoint's Close. Every field is required but
// Forget.
type Node struct {
	// DeadLetter receives each envelope the endpoint gives up on, once, with
	// why; env is valid until it returns.
	DeadLetter func(env *batch.Envelope, reason Reason)
	// Emit reports an event; it must not block.
	Emit func(Event)
	// Closing reports whether the node is closing: a Send the endpoint
	// refuses then fails with ErrClosed.
	Closing func() bool
	// Blocked reports whether the system id is on the node's block list;
	// a peer found blocked after its handshake is refused.
	Blocked func(systemID string) bool
	// Quarantined reports whether the node gave up on the peer
	// incarnation; one that is answers a handshake in vain.
	Quarantined func(p reader.Peer) bool
	// Bind sets up delivery on a receive loop of the endpoint's own
	// streams (State, Generation, Deliver and maybe Delivered): the peer
	// sends to a client-only node over them, to a listening node only
	// acknowledgements and heartbeat replies.
	Bind func(rcv *reader.Receive)
	// Settled is called once the endpoint has dead-lettered what a peer
	// incarnation it is done with did not acknowledge: the node
	// quarantines old (nil if the peer was never reached) and tells the
	// watchers of its processes. blocked says the endpoint ended because
	// the peer is blocked.
	Settled func(old *reader.Peer, blocked bool)
	// Forget, if set, is called when a client-only peer's endpoint ended
	// because the peer had no stream for the idle timeout: the node may
	// drop it.
	Forget func()
}

// Config configures an endpoint. Durations and sizes are used as given:
// the node validates its options.
type Config struct {
	// Address is the peer's address: dialed, or a client-only peer's name.
	Address string
	// ClientOnly makes an endpoint for a client-only peer: it never dials,
	// and sends over the streams the peer opens (see Attach).
	ClientOnly bool
	// Self is what this node states about itself in a handshake.
	Self wire.Node
	// UserQueue and SystemQueue are the lanes' ring capacities.
	UserQueue, SystemQueue int
	// MaxEnvelopes and MaxBytes cap a frame; Linger, Compress and
	// CompressThreshold shape it (see writer.Config).
	MaxEnvelopes, MaxBytes int
	Linger                 time.Duration
	Compress               bool
	CompressThreshold      int
	// Overflow is the user lane's policy when its queue is full.
	Overflow Overflow
	// HighWater and LowWater are the user queue lengths at which the
	// throttle event is raised and cleared.
	HighWater, LowWater int
	// Heartbeat is the interval of the control stream's heartbeats and of
	// the liveness watchdog's looks; HeartbeatTimeout is how long the peer
	// may be silent.
	Heartbeat, HeartbeatTimeout time.Duration
	// HandshakeTimeout bounds a connection attempt, both lanes together,
	// and the waits for a closing peer's last frames.
	HandshakeTimeout time.Duration
	// SystemTimeout is how long Send waits for room in a full system
	// queue before the peer is treated as failed.
	SystemTimeout time.Duration
	// IdleRelease is how long a lane waits, idle with everything
	// acknowledged, before it frees its queue's slots and frame buffers
	// (writer.Config.IdleRelease); 0 keeps them.
	IdleRelease time.Duration
	// IdleTimeout ends a client-only peer's endpoint that had no stream
	// for that long.
	IdleTimeout time.Duration
	// Reconnect is the reconnect policy.
	Reconnect Reconnect
	// Dialer opens the connections; required unless ClientOnly.
	Dialer Dialer
	// Clock is the endpoint's time; nil means the real one.
	Clock Clock
	// Context is the node's: when it ends, so does the endpoint. Nil means
	// context.Background().
	Context context.Context
	// Node is the node, as callbacks.
	Node Node
	// Logger receives debug logs; nil means none.
	Logger *slog.Logger
}

// check reports what a Config lacks.
func (c *Config) check() error {
	n := &c.Node
	if n.DeadLetter == nil || n.Emit == nil || n.Closing == nil || n.Blocked == nil ||
		n.Quarantined == nil || n.Bind == nil || n.Settled == nil {
		return errors.New("peer: Node needs DeadLetter, Emit, Closing, Blocked, Quarantined, Bind and Settled")
	}
	if !c.ClientOnly && (c.Dialer == nil || c.Reconnect.Delay == nil) {
		return errors.New("peer: a dialing endpoint needs a Dialer and Reconnect.Delay")
	}
	return nil
}
