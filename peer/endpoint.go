package peer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/courier-go/courier/batch"
	"github.com/courier-go/courier/reader"
	"github.com/courier-go/courier/ring"
	"github.com/courier-go/courier/writer"
)

// lane is one lane of an endpoint: its queue, its writer and counters.
type lane struct {
	ring *ring.Ring[batch.Envelope]
	sc   sendCounters
	w    *writer.Writer
	wc   writer.Counters
	rc   reader.Counters // receive side of the endpoint's own streams
	// dead counts the writer's dead letters by reason (only its goroutine
	// writes them); Send's are sc.droppedFull.
	dead [NumReasons]atomic.Uint64
}

// Endpoint is one remote node as seen from this one: both lanes toward it
// and the connection that carries them. Create it with New and run it with
// Run; Send, Attach, Terminate, Close and the accessors are safe from any
// goroutine.
type Endpoint struct {
	cfg     Config
	node    *Node
	clock   Clock
	log     *slog.Logger
	address string
	lanes   [2]lane

	state      atomic.Uint32 // State
	throttled  atomic.Int32
	peer       atomic.Pointer[reader.Peer]
	reconnects atomic.Uint64
	endedAt    atomic.Int64  // unix nanos of termination, by the clock
	endReason  atomic.Uint32 // Reason of termination

	nodeCtx context.Context // the node's: writers settle within it
	ctx     context.Context // canceled when the endpoint stops for good
	cancel  context.CancelFunc
	done    chan struct{} // closed when Run returns
	down    chan error    // a link failed; capacity 1
	attach  chan attachment

	closeOnce sync.Once
	closing   atomic.Bool // close began: the end is not a failure
	// closeCtx is canceled when close begins: an endpoint without a
	// connection then ends at once, having nothing it could flush.
	closeCtx context.Context
	closeNow context.CancelFunc
}

// sendCounters are a lane's producer-side counters: written by Send.
type sendCounters struct {
	_           [128]byte
	refused     atomic.Uint64
	droppedFull atomic.Uint64
	_           [128]byte
}

// New returns an endpoint for cfg, its writers started and waiting for a
// connection. Run starts the rest.
func New(cfg Config) (*Endpoint, error) {
	if err := cfg.check(); err != nil {
		return nil, err
	}
	if cfg.Clock == nil {
		cfg.Clock = RealClock{}
	}
	if cfg.Context == nil {
		cfg.Context = context.Background()
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(cfg.Context)
	closeCtx, closeNow := context.WithCancel(context.Background())
	e := &Endpoint{
		cfg:      cfg,
		clock:    cfg.Clock,
		log:      cfg.Logger,
		address:  cfg.Address,
		nodeCtx:  cfg.Context,
		ctx:      ctx,
		cancel:   cancel,
		done:     make(chan struct{}),
		down:     make(chan error, 1),
		attach:   make(chan attachment, 2),
		closeCtx: closeCtx,
		closeNow: closeNow,
	}
	e.node = &e.cfg.Node
	if cfg.ClientOnly {
		e.state.Store(uint32(StateWaiting))
	}
	for i, capacity := range []int{cfg.UserQueue, cfg.SystemQueue} {
		ln := &e.lanes[i]
		r, err := ring.New[batch.Envelope](capacity)
		if err != nil {
			e.stopWriters()
			return nil, err
		}
		ln.ring = r
		id := batch.Lane(i)
		ln.w, err = writer.New(writer.Config{
			Lane:              id,
			Ring:              r,
			MaxEnvelopes:      cfg.MaxEnvelopes,
			MaxBytes:          cfg.MaxBytes,
			Linger:            cfg.Linger,
			Compress:          cfg.Compress,
			CompressThreshold: cfg.CompressThreshold,
			SelfContained:     id == batch.LaneSystem,
			Counters:          &ln.wc,
			DeadLetter: func(env *batch.Envelope, reason writer.Reason) {
				e.deadLetter(ln, env, Reason(reason))
			},
			LinkDown:    func(_ *writer.Link, err error) { e.linkDown(err) },
			Released:    e.released,
			Heartbeat:   heartbeatOf(id, cfg.Heartbeat),
			IdleRelease: cfg.IdleRelease,
			Logger:      cfg.Logger,
		})
		if err != nil {
			e.stopWriters()
			return nil, err
		}
	}
	return e, nil
}

// stopWriters ends what a failed New started.
func (e *Endpoint) stopWriters() {
	for i := range e.lanes {
		if w := e.lanes[i].w; w != nil {
			w.Terminate(writer.ReasonShutdown)
			<-w.Done()
		}
	}
	e.cancel()
}

// heartbeatOf is the heartbeat interval of a lane's writer: only the
// control stream beats.
func heartbeatOf(id batch.Lane, interval time.Duration) time.Duration {
	if id == batch.LaneSystem {
		return interval
	}
	return 0
}

// deadLetter counts a dead letter of ln's writer and hands it to the node.
func (e *Endpoint) deadLetter(ln *lane, env *batch.Envelope, reason Reason) {
	ln.dead[reason].Add(1)
	e.node.DeadLetter(env, reason)
}

// Address returns the peer's address.
func (e *Endpoint) Address() string { return e.address }

// State returns the connection state.
func (e *Endpoint) State() State { return State(e.state.Load()) }

// Peer returns the peer as of the last handshake, and false before the
// first.
func (e *Endpoint) Peer() (reader.Peer, bool) {
	if p := e.peer.Load(); p != nil {
		return *p, true
	}
	return reader.Peer{}, false
}

// Done is closed when Run has returned.
func (e *Endpoint) Done() <-chan struct{} { return e.done }

// DataPosition returns how many envelopes the user lane has taken: the
// position a Terminated sent now waits for.
func (e *Endpoint) DataPosition() uint64 { return e.lanes[batch.LaneUser].ring.Pushed() }

// Replaceable reports whether the endpoint terminated at least after ago
// and dials: then a new endpoint for the address is not a tight loop. A
// client-only peer's endpoint is never replaced.
func (e *Endpoint) Replaceable(after time.Duration) bool {
	if e.State() != StateTerminated || e.cfg.ClientOnly {
		return false
	}
	return e.clock.Now().Sub(time.Unix(0, e.endedAt.Load())) >= after
}

// Send queues env on its lane. It takes no lock and allocates nothing
// unless it fails; see Overflow for a full user queue. A full system queue
// is waited on up to the system queue timeout, when the peer is treated as
// failed.
func (e *Endpoint) Send(ctx context.Context, env *batch.Envelope) error {
	ln := &e.lanes[env.Lane]
	if len(env.Payload) > e.cfg.Self.Limits.MaxFrameBytes-64 {
		ln.sc.refused.Add(1)
		return fmt.Errorf("%w: payload of %d bytes, max frame %d", ErrTooLarge, len(env.Payload), e.cfg.Self.Limits.MaxFrameBytes)
	}
	err := ln.ring.TryPushFrom(env)
	if err == nil {
		if env.Lane == batch.LaneUser {
			e.checkThrottle(ln.ring.Len())
		}
		return nil
	}
	if errors.Is(err, ring.ErrClosed) {
		ln.sc.refused.Add(1)
		return e.refusal()
	}
	// Full.
	if env.Lane == batch.LaneSystem {
		return e.sendSystemFull(ctx, env)
	}
	e.checkThrottle(ln.ring.Len())
	switch e.cfg.Overflow {
	case Fail:
		ln.sc.refused.Add(1)
		return ErrQueueFull
	case Block:
		if err := ln.ring.PushFrom(ctx, env); err != nil {
			ln.sc.refused.Add(1)
			if errors.Is(err, ring.ErrClosed) {
				return fmt.Errorf("%w: %s", ErrEndpointTerminated, e.address)
			}
			return err
		}
		return nil
	default:
		ln.sc.droppedFull.Add(1) // counted apart from the writer's
		// A copy: the node is an interface, and handing it env itself would
		// make every caller's envelope escape to the heap, an allocation
		// per Send on the path that must not allocate.
		dropped := *env
		e.node.DeadLetter(&dropped, ReasonQueueFull)
		return nil
	}
}

// refusal is Send's error for a closed queue.
func (e *Endpoint) refusal() error {
	if e.node.Closing() {
		return ErrClosed
	}
	return fmt.Errorf("%w: %s", ErrEndpointTerminated, e.address)
}

// sendSystemFull waits for room in a full system queue. The system lane
// never drops: a peer that leaves it full for the system queue timeout is
// treated as failed, as Artery quarantines it.
func (e *Endpoint) sendSystemFull(ctx context.Context, env *batch.Envelope) error {
	ln := &e.lanes[batch.LaneSystem]
	wait, cancel := context.WithTimeout(ctx, e.cfg.SystemTimeout)
	defer cancel()
	err := ln.ring.PushFrom(wait, env)
	switch {
	case err == nil:
		return nil
	case ctx.Err() != nil:
		ln.sc.refused.Add(1)
		return ctx.Err()
	case errors.Is(err, context.DeadlineExceeded):
		ln.sc.refused.Add(1)
		e.Terminate(ReasonEndpointTerminated, ErrSystemQueueFull)
		return fmt.Errorf("%w: %s", ErrSystemQueueFull, e.address)
	default:
		ln.sc.refused.Add(1)
		return e.refusal()
	}
}

// checkThrottle raises the throttled event when the user queue reaches the
// high watermark.
func (e *Endpoint) checkThrottle(n int) {
	if n >= e.cfg.HighWater && e.throttled.Load() == 0 && e.throttled.CompareAndSwap(0, 1) {
		e.emit(Event{Kind: EventThrottled, Level: 1, QueueLen: n, QueueCap: e.lanes[batch.LaneUser].ring.Cap()})
	}
}

// released runs in a writer goroutine after acknowledged envelopes left a
// queue: it clears the throttle below the low watermark.
func (e *Endpoint) released() {
	n := e.lanes[batch.LaneUser].ring.Len()
	if n <= e.cfg.LowWater && e.throttled.Load() == 1 && e.throttled.CompareAndSwap(1, 0) {
		e.emit(Event{Kind: EventThrottled, Level: 0, QueueLen: n, QueueCap: e.lanes[batch.LaneUser].ring.Cap()})
	}
}

func (e *Endpoint) emit(ev Event) {
	ev.Address = e.address
	if p := e.peer.Load(); p != nil {
		ev.Peer = *p
	}
	e.node.Emit(ev)
}

// linkDown is called when a stream of the current connection failed.
func (e *Endpoint) linkDown(err error) {
	select {
	case e.down <- err:
	default:
	}
}

// Terminate gives up on the peer: both queues are closed and everything in
// them is dead-lettered with reason; err is the terminated event's. The
// endpoint settles with its peer in its own goroutine. Only the first
// Terminate counts.
func (e *Endpoint) Terminate(reason Reason, err error) {
	for {
		s := e.state.Load()
		if State(s) == StateTerminated {
			return
		}
		if e.state.CompareAndSwap(s, uint32(StateTerminated)) {
			break
		}
	}
	e.endedAt.Store(e.clock.Now().UnixNano())
	e.endReason.Store(uint32(reason))
	for i := range e.lanes {
		e.lanes[i].ring.Close()
		e.lanes[i].w.Terminate(writer.Reason(reason))
	}
	e.cancel()
	e.emit(Event{Kind: EventTerminated, Reason: reason, Err: err})
}

// Close flushes the endpoint within ctx and stops it: the queues take
// nothing more, the writers send what they hold until the peer has
// acknowledged it or ctx ends, and what is left is dead-lettered with
// ReasonShutdown. It returns once Run has; so Run must have been started.
func (e *Endpoint) Close(ctx context.Context) {
	e.closeOnce.Do(func() {
		e.closing.Store(true)
		e.closeNow()
		for i := range e.lanes {
			e.lanes[i].ring.Close()
		}
		// When ctx ends first, the writers give up; one blocked in gRPC on
		// a peer that does not open its flow-control window returns only
		// when its stream ends, so the streams end too.
		giveUp := context.AfterFunc(ctx, func() {
			e.shutdown()
			e.cancel()
		})
		var wg sync.WaitGroup
		for i := range e.lanes {
			wg.Go(func() { e.lanes[i].w.Stop(ctx) })
		}
		wg.Wait()
		giveUp()
		e.cancel()
	})
	<-e.done
}

// shutdown makes the writers dead-letter everything with reason shutdown
// at once.
func (e *Endpoint) shutdown() {
	for i := range e.lanes {
		e.lanes[i].w.Terminate(writer.ReasonShutdown)
	}
}
