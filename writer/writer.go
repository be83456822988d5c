package writer

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/courier-go/courier/batch"
	"github.com/courier-go/courier/internal/wire"
	"github.com/courier-go/courier/ring"
)

// Reason says why the writer gave up on an envelope. Reasons are numbered
// by the stage above the writer (package peer, whose Reason names them all
// and keeps these two at their values): the writer decides ReasonTooLarge
// and ReasonShutdown itself, and hands DeadLetter back whatever reason it
// was given in Terminate or Settle.
type Reason uint8

// The reasons the writer decides.
const (
	// ReasonTooLarge: the envelope does not fit in a frame under the limits
	// negotiated with the peer.
	ReasonTooLarge Reason = 1
	// ReasonShutdown: the writer was stopped, and its deadline passed,
	// before the envelope was delivered.
	ReasonShutdown Reason = 4
)

// ErrStopped is returned by Attach once the writer is stopping.
var ErrStopped = errors.New("writer: stopped")

// pad keeps the writer's counters off the producers' cache lines.
type pad [128]byte

// Counters are the writer's side of a lane's statistics. Only the writer
// goroutine writes them; anyone may read them.
type Counters struct {
	_ pad
	// Sent counts envelopes handed to a stream for the first time.
	Sent atomic.Uint64
	// Resent counts envelopes sent again on a new link after the previous
	// one was lost before the peer acknowledged them.
	Resent atomic.Uint64
	// Acked counts envelopes the peer has acknowledged as delivered.
	Acked atomic.Uint64
	// Batches counts batch frames sent.
	Batches atomic.Uint64
	// BytesOut counts the bytes of every frame sent.
	BytesOut atomic.Uint64
	// Heartbeats counts heartbeat frames sent on idle links.
	Heartbeats atomic.Uint64
	// Sheds counts the times an idle lane gave its memory back
	// (Config.IdleRelease).
	Sheds atomic.Uint64
	_     pad
}

// Link is one stream's sending side, handed to a writer after the
// handshake. The writer is its only sender.
type Link struct {
	// Stream is the Connect stream, client or server side.
	Stream wire.Stream
	// Limits are the limits negotiated in the handshake.
	Limits batch.Limits
}

// Config configures a writer.
type Config struct {
	// Lane is the lane the writer carries.
	Lane batch.Lane
	// Ring is the lane's queue; the writer is its only consumer, and parks
	// on its bell. Required.
	Ring *ring.Ring[batch.Envelope]
	// MaxEnvelopes caps envelopes per frame; 0 or more than the ring's
	// capacity means the ring's capacity. The negotiated limit applies too.
	MaxEnvelopes int
	// MaxBytes caps a frame's bytes; 0 means the negotiated limit.
	MaxBytes int
	// Linger is how long a frame that is not full may wait for more
	// envelopes before it is sent; 0 sends at once.
	Linger time.Duration
	// Compress and CompressThreshold configure S2 compression of frames;
	// see batch.EncoderConfig.
	Compress          bool
	CompressThreshold int
	// SelfContained makes every frame carry its own dictionary; see
	// batch.EncoderConfig.
	SelfContained bool
	// Counters receives the writer's statistics. Required.
	Counters *Counters
	// DeadLetter is called from the writer goroutine for each envelope the
	// writer gives up on, once per envelope; it is where they are counted.
	// Required.
	DeadLetter func(env *batch.Envelope, reason Reason)
	// LinkDown is called from the writer goroutine when sending on the
	// current link fails. The writer then waits for Attach; what the lost
	// link did not get acknowledged is sent again on the next one.
	LinkDown func(l *Link, err error)
	// Released, if set, is called from the writer goroutine after
	// acknowledged envelopes left the ring.
	Released func()
	// Heartbeat, if positive, makes the writer send a Heartbeat frame on a
	// link that has carried nothing for this long, so that the peer, and
	// this node through the peer's reply, can tell a quiet link from a dead
	// one.
	Heartbeat time.Duration
	// IdleRelease, if positive, makes the writer give back the memory of
	// an idle lane: once it has parked this long with nothing in the ring
	// and nothing unacknowledged, it sheds the ring's slots (ring.Shed)
	// and its encoder's room for a frame. The next envelope allocates them
	// again; the ring's capacity stays what it was.
	IdleRelease time.Duration
	// Logger receives debug logs; nil means none.
	Logger *slog.Logger
}

// Writer is one lane's sending side toward one peer. Its goroutine moves
// envelopes from the lane's ring into frames on the current link. Sent
// envelopes stay in the ring until the peer acknowledges them, and are sent
// again, with the same positions, when a new link replaces a lost one: the
// peer drops what it has already delivered.
type Writer struct {
	cfg  Config
	bell *ring.Bell

	attach chan *Link // the next link to use; capacity 1
	detach chan detachReq
	settle chan settleReq
	stop   chan struct{} // closed when stopping begins
	done   chan struct{} // closed when the goroutine has exited
	// ctx is canceled to abort: the writer stops sending and dead-letters
	// everything left with the reason in abort.
	ctx      context.Context
	cancel   context.CancelFunc
	abort    atomic.Uint32 // Reason+1 once aborted
	stopOnce sync.Once

	// Written by other goroutines, followed by a ring of the bell.
	peerAcked atomic.Uint64 // highest lane position the peer acknowledged
	ackDue    atomic.Uint64 // highest lane position received, to acknowledge

	// Writer goroutine only.
	maxEnv   int // envelopes in a frame at most
	link     *Link
	enc      *batch.Encoder
	released uint64    // lane positions up to here are released from the ring
	sentHigh uint64    // highest lane position ever sent
	skipped  []uint64  // lane positions dead-lettered but still in the ring
	ackSent  uint64    // highest position acknowledged on the current link
	asked    [2]uint64 // the last positions of the last two frames on this link that asked for an ack, older first
	acks     batch.AckEncoder
	linger   *time.Timer
	beat     *time.Timer // heartbeat or idle-release timer, reused while parked
	// worked says the writer has done something since it last parked;
	// quietSince is when it last parked after working.
	worked     bool
	quietSince time.Time
	// yieldBelow: a frame with fewer envelopes yields once for more.
	yieldBelow int
}

// New returns a writer and starts its goroutine, which waits for Attach.
func New(cfg Config) (*Writer, error) {
	if cfg.Ring == nil || cfg.Counters == nil || cfg.DeadLetter == nil {
		return nil, errors.New("writer: Ring, Counters and DeadLetter are required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	n := cfg.MaxEnvelopes
	if n <= 0 || n > cfg.Ring.Cap() {
		n = cfg.Ring.Cap()
	}
	ctx, cancel := context.WithCancel(context.Background())
	w := &Writer{
		cfg:    cfg,
		bell:   cfg.Ring.Bell(),
		attach: make(chan *Link, 1),
		detach: make(chan detachReq, 1),
		settle: make(chan settleReq, 1),
		stop:   make(chan struct{}),
		done:   make(chan struct{}),
		ctx:    ctx,
		cancel: cancel,
		maxEnv: n,
	}
	w.yieldBelow = max(1, n/4)
	go w.run()
	return w, nil
}

// Attach hands the writer a new link, replacing the current one. Safe from
// any goroutine.
func (w *Writer) Attach(l *Link) error {
	if w.ctx.Err() != nil {
		return ErrStopped
	}
	select {
	case <-w.attach: // a link the writer has not picked up yet is stale
	default:
	}
	select {
	case w.attach <- l:
	default: // another Attach won the race; the latest link is as good
	}
	w.bell.Ring()
	return nil
}

type settleReq struct {
	reason Reason
	done   chan int // the number of envelopes dead-lettered
}

// Settle drops the current link and dead-letters, with reason, every
// envelope in the ring that the peer has not acknowledged, sent or not. It
// is for a peer that came back as a new incarnation: what was owed to the
// old one is settled before the new one gets anything. Positions go on
// from where they were; the next link learns of the gap (see Attach).
// Settle returns the number of envelopes dead-lettered, or -1 if the writer
// had already exited or ctx ended first. Safe from any goroutine.
func (w *Writer) Settle(ctx context.Context, reason Reason) int {
	req := settleReq{reason: reason, done: make(chan int, 1)}
	select {
	case w.settle <- req:
	case <-w.done:
		return -1
	case <-ctx.Done():
		return -1
	}
	w.bell.Ring()
	select {
	case n := <-req.done:
		return n
	case <-w.done:
		return -1
	}
}

// settleAll is Settle in the writer goroutine.
func (w *Writer) settleAll(reason Reason) int {
	w.link, w.enc = nil, nil
	r := w.cfg.Ring
	r.Rewind()
	pos, _, n := w.deadLetterReady(w.released, reason)
	w.released = pos
	w.sentHigh = max(w.sentHigh, pos)
	w.skipped = w.skipped[:0]
	if w.cfg.Released != nil {
		w.cfg.Released()
	}
	return n
}

type detachReq struct {
	link *Link
	done chan struct{}
}

// Detach makes the writer stop using l, whose stream is ending, and returns
// once it has, or after timeout if the writer is stuck sending on it. What l
// did not get acknowledged is sent again on the next link. Safe from any
// goroutine; does nothing if l is not the writer's link.
func (w *Writer) Detach(l *Link, timeout time.Duration) {
	select {
	case pending := <-w.attach:
		if pending != l {
			select {
			case w.attach <- pending:
			default:
			}
		}
	default:
	}
	req := detachReq{link: l, done: make(chan struct{})}
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case w.detach <- req:
	case <-w.done:
		return
	case <-t.C:
		return
	}
	w.bell.Ring()
	select {
	case <-req.done:
	case <-w.done:
	case <-t.C:
	}
}

// PeerAcked records that the peer acknowledged every envelope up to lane
// position pos. Safe from any goroutine.
func (w *Writer) PeerAcked(pos uint64) {
	if storeMax(&w.peerAcked, pos) {
		w.bell.Ring()
	}
}

// AckReceived asks the writer to acknowledge on its link everything the peer
// sent on the same stream up to lane position pos. Safe from any goroutine.
func (w *Writer) AckReceived(pos uint64) {
	if storeMax(&w.ackDue, pos) {
		w.bell.Ring()
	}
}

func storeMax(v *atomic.Uint64, x uint64) bool {
	for {
		old := v.Load()
		if x <= old {
			return false
		}
		if v.CompareAndSwap(old, x) {
			return true
		}
	}
}

// Done is closed once the writer goroutine has exited.
func (w *Writer) Done() <-chan struct{} { return w.done }

// Stop finishes the writer: it goes on sending, and waiting for
// acknowledgements, until everything in the ring has been delivered or ctx
// ends; then it dead-letters what is left with ReasonShutdown and exits. The
// caller closes the ring first, so that nothing new arrives. Stop returns
// when the goroutine has exited.
func (w *Writer) Stop(ctx context.Context) {
	w.stopOnce.Do(func() {
		close(w.stop)
		w.bell.Ring()
	})
	select {
	case <-w.done:
	case <-ctx.Done():
		w.Terminate(ReasonShutdown)
		<-w.done
	}
}

// Terminate makes the writer give up at once: it closes the ring and
// dead-letters every envelope in it, sent or not, with reason. Terminate does
// not wait for the goroutine; see Done.
func (w *Writer) Terminate(reason Reason) {
	w.abort.CompareAndSwap(0, uint32(reason)+1)
	w.cancel()
	w.bell.Ring()
}

func (w *Writer) stopping() bool {
	select {
	case <-w.stop:
		return true
	default:
		return false
	}
}
