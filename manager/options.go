package manager

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/courier-go/courier/batch"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
)

// OverflowPolicy says what Send does with a user envelope when the peer's
// user queue is full.
type OverflowPolicy uint8

const (
	// DropNewest dead-letters the envelope with reason "queue full" and
	// returns nil at once. The default: Send never blocks a
	// latency-sensitive caller.
	DropNewest OverflowPolicy = iota
	// Block waits for room until Send's context ends, then returns the
	// context's error; the envelope is not queued.
	Block
	// Fail returns ErrQueueFull at once; the envelope is not queued.
	Fail
)

// String returns the policy's name, which ParseOverflowPolicy reads back:
// "drop-newest", "block" or "fail".
func (p OverflowPolicy) String() string {
	switch p {
	case DropNewest:
		return "drop-newest"
	case Block:
		return "block"
	case Fail:
		return "fail"
	}
	return fmt.Sprintf("policy(%d)", uint8(p))
}

// ParseOverflowPolicy parses a policy's String ("drop-newest", "block",
// "fail") or its constant's name ("DropNewest", "Block", "Fail"), in any
// case: ParseOverflowPolicy(p.String()) is p.
func ParseOverflowPolicy(s string) (OverflowPolicy, error) {
	for _, p := range []OverflowPolicy{DropNewest, Block, Fail} {
		if strings.EqualFold(s, p.String()) || strings.EqualFold(s, p.goName()) {
			return p, nil
		}
	}
	return 0, fmt.Errorf("manager: unknown overflow policy %q (want drop-newest, block or fail)", s)
}

// goName returns the name of the policy's constant.
func (p OverflowPolicy) goName() string {
	switch p {
	case DropNewest:
		return "DropNewest"
	case Block:
		return "Block"
	case Fail:
		return "Fail"
	}
	return ""
}

// Defaults of the options, where a number needs stating.
const (
	DefaultUserQueue        = 4096
	DefaultSystemQueue      = 256
	DefaultBatchEnvelopes   = 1024
	DefaultBatchBytes       = 256 << 10
	DefaultHandshakeTimeout = 5 * time.Second
	DefaultHeartbeat        = time.Second
	DefaultHeartbeatTimeout = 5 * time.Second
	DefaultSystemTimeout    = 10 * time.Second
	DefaultStreamWindow     = 4 << 20
	DefaultConnWindow       = 16 << 20
	DefaultSocketBuffer     = 64 << 10
	DefaultIdleRelease      = 5 * time.Second
)

// Option configures a Manager in New.
type Option interface{ apply(*options) }

type optionFunc func(*options)

func (f optionFunc) apply(o *options) { f(o) }

type options struct {
	listen            string
	systemID          string
	systemIDSet       bool  // WithSystemID was given, so systemID is not to be picked
	nilOptions        []int // positions of nil options given to New
	handler           Handler
	userQueue         int
	systemQueue       int
	batchEnvelopes    int
	batchBytes        int
	linger            time.Duration
	idleRelease       time.Duration
	compress          bool
	compressThreshold int
	overflow          OverflowPolicy
	highWater         float64
	lowWater          float64
	limits            batch.Limits
	heartbeat         time.Duration
	heartbeatTimeout  time.Duration
	handshakeTimeout  time.Duration
	maxConns          int
	maxStreams        int
	idleTimeout       time.Duration
	dialOptions       []grpc.DialOption
	serverOptions     []grpc.ServerOption
	deadLetter        func(DeadLetter)
	logger            *slog.Logger
	reconnect         Backoff
	streamWindow      int32
	connWindow        int32
	readBuffer        int
	writeBuffer       int
	advertise         string
	systemTimeout     time.Duration
	blocked           []string
	serverCreds       credentials.TransportCredentials
	clientCreds       credentials.TransportCredentials
	metadata          []string
	authorize         Authorizer
	registry          ProcessRegistry
	spawner           Spawner
}

func defaults() options {
	return options{
		userQueue:         DefaultUserQueue,
		systemQueue:       DefaultSystemQueue,
		batchEnvelopes:    DefaultBatchEnvelopes,
		compressThreshold: batch.DefaultCompressThreshold,
		highWater:         0.8,
		lowWater:          0.5,
		limits:            batch.DefaultLimits(),
		heartbeat:         DefaultHeartbeat,
		idleRelease:       DefaultIdleRelease,
		heartbeatTimeout:  DefaultHeartbeatTimeout,
		handshakeTimeout:  DefaultHandshakeTimeout,
		maxConns:          DefaultMaxInboundConnections,
		maxStreams:        DefaultMaxStreamsPerPeer,
		idleTimeout:       DefaultIdleTimeout,
		systemTimeout:     DefaultSystemTimeout,
		reconnect:         DefaultBackoff(),
		streamWindow:      DefaultStreamWindow,
		connWindow:        DefaultConnWindow,
		readBuffer:        DefaultSocketBuffer,
		writeBuffer:       DefaultSocketBuffer,
	}
}

// validate fills in the defaults that depend on other options, then reports
// every invalid option at once.
func (o *options) validate() error {
	if o.batchBytes == 0 {
		o.batchBytes = min(DefaultBatchBytes, o.limits.MaxFrameBytes)
	}
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	pow2 := func(n int) bool { return n > 0 && n&(n-1) == 0 }
	for _, i := range o.nilOptions {
		bad("option %d is nil", i)
	}
	if o.systemIDSet && !checkSystemID(o.systemID) {
		bad("WithSystemID(%q): want letters, digits, '-', '_' and '.', at least one (omit the option for a random id)", o.systemID)
	}
	if o.listen != "" {
		if err := checkListenAddress(o.listen); err != nil {
			bad("WithListenAddress(%q): want host:port with a port in [0, 65535]: %v", o.listen, err)
		}
	}
	if !pow2(o.userQueue) || o.userQueue < 2 || o.userQueue > 1<<24 {
		bad("WithUserQueue(%d): want a power of two in [2, 1<<24]", o.userQueue)
	}
	if !pow2(o.systemQueue) || o.systemQueue < 2 || o.systemQueue > 1<<20 {
		bad("WithSystemQueue(%d): want a power of two in [2, 1<<20]", o.systemQueue)
	}
	if o.batchEnvelopes < 1 || o.batchEnvelopes > o.limits.MaxBatchEnvelopes {
		bad("WithBatchEnvelopes(%d): want [1, %d]", o.batchEnvelopes, o.limits.MaxBatchEnvelopes)
	}
	if o.batchBytes < 1024 || o.batchBytes > o.limits.MaxFrameBytes {
		bad("WithBatchBytes(%d): want [1024, max frame bytes %d]", o.batchBytes, o.limits.MaxFrameBytes)
	}
	if o.linger < 0 || o.linger > time.Second {
		bad("WithLinger(%v): want [0, 1s]", o.linger)
	}
	if o.compressThreshold < 0 {
		bad("WithCompression threshold %d: want >= 0", o.compressThreshold)
	}
	if o.overflow > Fail {
		bad("WithOverflowPolicy(%v): unknown policy", o.overflow)
	}
	if !(o.lowWater > 0 && o.lowWater < o.highWater && o.highWater <= 1) {
		bad("WithThrottleWatermarks(%v, %v): want 0 < low < high <= 1", o.highWater, o.lowWater)
	}
	if err := o.limits.Validate(); err != nil {
		bad("frame limits (WithMaxFrameBytes, WithDictionaryLimits): %w", err)
	}
	if o.heartbeat < 10*time.Millisecond || o.heartbeat > time.Minute {
		bad("WithHeartbeatInterval(%v): want [10ms, 1m]", o.heartbeat)
	}
	if o.heartbeatTimeout < 2*o.heartbeat || o.heartbeatTimeout > 10*time.Minute {
		bad("WithHeartbeatTimeout(%v): want [2 × heartbeat interval %v, 10m]", o.heartbeatTimeout, o.heartbeat)
	}
	if o.handshakeTimeout < 10*time.Millisecond || o.handshakeTimeout > time.Minute {
		bad("WithHandshakeTimeout(%v): want [10ms, 1m]", o.handshakeTimeout)
	}
	if o.maxConns < 1 {
		bad("WithMaxInboundConnections(%d): want >= 1", o.maxConns)
	}
	if o.maxStreams < 2 {
		bad("WithMaxStreamsPerPeer(%d): want >= 2 (a connection has two streams)", o.maxStreams)
	}
	if o.idleTimeout < 2*o.heartbeat {
		bad("WithIdleTimeout(%v): want at least 2 × heartbeat interval %v", o.idleTimeout, o.heartbeat)
	}
	if o.idleRelease < 0 || o.idleRelease > time.Hour {
		bad("WithIdleRelease(%v): want [0, 1h]", o.idleRelease)
	}
	if o.systemTimeout < 10*time.Millisecond || o.systemTimeout > 10*time.Minute {
		bad("WithSystemQueueTimeout(%v): want [10ms, 10m]", o.systemTimeout)
	}
	if o.handler == nil {
		bad("WithHandler: a handler is required")
	}
	if o.streamWindow != 0 && o.streamWindow < 64<<10 || o.connWindow != 0 && o.connWindow < 64<<10 {
		bad("WithFlowControlWindows(%d, %d): want 0 (gRPC's dynamic windows) or at least 64 KiB", o.streamWindow, o.connWindow)
	}
	if o.readBuffer < 0 || o.writeBuffer < 0 {
		bad("WithSocketBuffers(%d, %d): want >= 0", o.readBuffer, o.writeBuffer)
	}
	if err := o.reconnect.validate(); err != nil {
		bad("WithReconnect: %w", err)
	}
	if len(errs) == 0 {
		return nil
	}
	return fmt.Errorf("%w: %w", ErrInvalidOption, errors.Join(errs...))
}

// WithListenAddress makes the node listen on addr (host:port; an empty host
// listens on every interface, port 0 picks a free port, see Manager.Addr;
// the port is a number in [0, 65535], New refuses anything else). A
// listening node sends once Start has returned. Default: no listener, a
// client-only node, which reaches servers by dialing them and is reached
// back over the streams it opens.
func WithListenAddress(addr string) Option {
	return optionFunc(func(o *options) { o.listen = addr })
}

// WithAdvertiseAddress sets the address the node tells its peers to reach it
// at. Default: the listener's address as Addr reports it.
func WithAdvertiseAddress(addr string) Option {
	return optionFunc(func(o *options) { o.advertise = addr })
}

// WithSystemID names the actor system or service the node belongs to; peers
// see it in the handshake and block lists match it. It is made of ASCII
// letters, digits, '-', '_' and '.'; New refuses any other character (':'
// and spaces would break the addresses built from it) and an empty id.
// Default, when the option is not given: "node-" and 8 random hex digits.
func WithSystemID(id string) Option {
	return optionFunc(func(o *options) { o.systemID, o.systemIDSet = id, true })
}

// WithHandler sets the handler inbound envelopes are delivered to.
// Required.
func WithHandler(h Handler) Option {
	return optionFunc(func(o *options) { o.handler = h })
}

// WithUserQueue sets the capacity, in envelopes, of each peer's user queue:
// queued envelopes plus sent ones awaiting the peer's acknowledgement.
// Default 4096; a power of two in [2, 1<<24].
func WithUserQueue(capacity int) Option {
	return optionFunc(func(o *options) { o.userQueue = capacity })
}

// WithSystemQueue sets the capacity, in envelopes, of each peer's system
// queue. It never drops: Send waits for room, and a peer that keeps it full
// for the system queue timeout is treated as failed.
// Default 256; a power of two in [2, 1<<20].
func WithSystemQueue(capacity int) Option {
	return optionFunc(func(o *options) { o.systemQueue = capacity })
}

// WithSystemQueueTimeout sets how long Send waits for room in a full system
// queue before the peer is treated as failed and its endpoint terminated:
// system envelopes are never dropped, so a peer that acknowledges none for
// this long is declared dead. Default 10s; [10ms, 10m].
func WithSystemQueueTimeout(d time.Duration) Option {
	return optionFunc(func(o *options) { o.systemTimeout = d })
}

// WithBatchEnvelopes caps the envelopes in one frame. Default 1024; at least
// 1, at most the max envelopes per frame of the frame limits (8192).
func WithBatchEnvelopes(n int) Option {
	return optionFunc(func(o *options) { o.batchEnvelopes = n })
}

// WithBatchBytes caps the bytes of one frame; a single envelope larger than
// this still travels, alone. Default 256 KiB, or the max frame bytes if
// smaller; at least 1 KiB, at most the max frame bytes.
func WithBatchBytes(n int) Option {
	return optionFunc(func(o *options) { o.batchBytes = n })
}

// WithLinger lets a frame that is not full wait up to d for more envelopes.
// Default 0: a frame goes out as soon as the queue is empty (latency first).
// At most 1s.
func WithLinger(d time.Duration) Option {
	return optionFunc(func(o *options) { o.linger = d })
}

// WithIdleRelease makes a lane that has been idle for d give back the
// memory behind its queue: once its queue has been empty and everything
// sent acknowledged for d, its slots and frame buffers are freed, and the
// next envelope allocates them again (a few hundred microseconds, once).
// The queue's capacity, and so when the overflow policy applies, does not
// change. An idle endpoint then holds tens of KiB instead of the queue's
// size times the envelope's (about 600 KiB with the default queue). Default
// DefaultIdleRelease; 0 keeps the memory for the endpoint's life. At most
// one hour.
func WithIdleRelease(d time.Duration) Option {
	return optionFunc(func(o *options) { o.idleRelease = d })
}

// WithCompression turns S2 compression of frames of threshold bytes or more
// on (threshold 0 means 4 KiB). Default: off. A frame that does not shrink
// travels uncompressed.
func WithCompression(threshold int) Option {
	return optionFunc(func(o *options) {
		o.compress = true
		if threshold > 0 {
			o.compressThreshold = threshold
		}
	})
}

// WithOverflowPolicy sets what Send does when a user queue is full. Default
// DropNewest.
func WithOverflowPolicy(p OverflowPolicy) Option {
	return optionFunc(func(o *options) { o.overflow = p })
}

// WithThrottleWatermarks sets when a user queue counts as throttled, as
// fractions of its capacity: the throttled event fires when the queue
// reaches high and clears when it falls to low. Default 0.8 and 0.5; want
// 0 < low < high <= 1.
func WithThrottleWatermarks(high, low float64) Option {
	return optionFunc(func(o *options) { o.highWater, o.lowWater = high, low })
}

// WithMaxFrameBytes sets the largest frame the node sends or accepts, after
// decompression; Send refuses, with ErrTooLarge, an envelope whose encoding
// (payload, strings and header together) would not fit in one. Default
// 4 MiB; [4 KiB, 64 MiB].
func WithMaxFrameBytes(n int) Option {
	return optionFunc(func(o *options) { o.limits.MaxFrameBytes = n })
}

// WithDictionaryLimits bounds each stream's string dictionary: entries and
// total bytes. Send refuses an envelope whose distinct strings alone are
// more (ErrInvalidEnvelope) or larger (ErrTooLarge) than they allow.
// Default 16384 entries and 1 MiB.
func WithDictionaryLimits(entries, bytes int) Option {
	return optionFunc(func(o *options) {
		o.limits.MaxDictionaryEntries, o.limits.MaxDictionaryBytes = entries, bytes
	})
}

// WithHeartbeatInterval sets how often an idle control stream proves the
// node alive. Default 1s; [10ms, 1m].
func WithHeartbeatInterval(d time.Duration) Option {
	return optionFunc(func(o *options) { o.heartbeat = d })
}

// WithHeartbeatTimeout sets how long a peer may stay silent on the control
// stream, not answering even a heartbeat, before its connection is taken
// for dead, dropped and dialed again (a black-holed network, a frozen
// peer). Default 5s; at least twice the heartbeat interval, at most 10m.
func WithHeartbeatTimeout(d time.Duration) Option {
	return optionFunc(func(o *options) { o.heartbeatTimeout = d })
}

// WithHandshakeTimeout bounds the Hello/Welcome exchange of a new stream,
// on both sides. Default 5s; [10ms, 1m].
func WithHandshakeTimeout(d time.Duration) Option {
	return optionFunc(func(o *options) { o.handshakeTimeout = d })
}

// WithDialOptions adds gRPC dial options to every connection the node
// opens; they come after courier's own and win over them.
func WithDialOptions(opts ...grpc.DialOption) Option {
	return optionFunc(func(o *options) { o.dialOptions = append(o.dialOptions, opts...) })
}

// WithServerOptions adds gRPC server options to the node's listener; they
// come after courier's own and win over them.
func WithServerOptions(opts ...grpc.ServerOption) Option {
	return optionFunc(func(o *options) { o.serverOptions = append(o.serverOptions, opts...) })
}

// WithFlowControlWindows sets the HTTP/2 flow-control windows, in bytes, of
// every stream and of every connection, for both directions. Default 4 MiB
// and 16 MiB; 0 leaves gRPC's dynamic windows, which start at 64 KiB. Each
// stream has its own window, so a stalled user stream never holds back the
// system stream. A receiving node buffers up to one stream window of user
// data per peer whose envelopes its handler has not yet taken; smaller
// windows bound that memory, larger ones let a fast link ride out longer
// scheduling stalls of either node.
func WithFlowControlWindows(stream, conn int32) Option {
	return optionFunc(func(o *options) { o.streamWindow, o.connWindow = stream, conn })
}

// WithSocketBuffers sets gRPC's read and write buffer sizes in bytes.
// Default 64 KiB each; 0 means gRPC's default (32 KiB).
func WithSocketBuffers(read, write int) Option {
	return optionFunc(func(o *options) { o.readBuffer, o.writeBuffer = read, write })
}

// WithDeadLetterHandler sets the function that receives every envelope
// that is not delivered, with the reason. It is called from courier's
// goroutines and from Send; it must not block. Default: dead letters are
// counted and logged at debug level.
func WithDeadLetterHandler(f func(DeadLetter)) Option {
	return optionFunc(func(o *options) { o.deadLetter = f })
}

// WithLogger sets the logger. Default: none (quiet).
func WithLogger(l *slog.Logger) Option {
	return optionFunc(func(o *options) { o.logger = l })
}

func randomID() string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return "node-" + hex.EncodeToString(b[:])
}
