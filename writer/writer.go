package writer

import (
	"context"
	"errors"
	"log/slog"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/courier-go/courier/batch"
	"github.com/courier-go/courier/internal/wire"
	courierv1 "github.com/courier-go/courier/proto/courier/v1"
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
	_          pad
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
	buf      []batch.Envelope
	link     *Link
	enc      *batch.Encoder
	released uint64   // lane positions up to here are released from the ring
	sentHigh uint64   // highest lane position ever sent
	skipped  []uint64 // lane positions dead-lettered but still in the ring
	ackSent  uint64   // highest position acknowledged on the current link
	linger   *time.Timer
	beat     *time.Timer // heartbeat timer, reused while parked
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
		buf:    make([]batch.Envelope, n),
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
	pos, n := w.released, 0
	for {
		k := r.Peek(w.buf)
		if k == 0 {
			break
		}
		for i := range k {
			pos++
			if len(w.skipped) > 0 && w.skipped[0] == pos {
				w.skipped = w.skipped[1:] // dead-lettered already
			} else {
				n++
				w.cfg.DeadLetter(&w.buf[i], reason)
			}
			w.buf[i] = batch.Envelope{}
		}
		r.Release(k)
	}
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

func (w *Writer) run() {
	defer close(w.done)
	defer w.sweep()
	for w.ctx.Err() == nil {
		select {
		case l := <-w.attach:
			w.use(l)
		case req := <-w.detach:
			if req.link == w.link {
				w.link, w.enc = nil, nil
				w.cfg.Ring.Rewind()
			}
			close(req.done)
		case req := <-w.settle:
			req.done <- w.settleAll(req.reason)
		default:
		}
		w.releaseAcked()
		if w.link != nil {
			if err := w.sendAck(); err != nil {
				w.lost(err)
				continue
			}
			if n := w.cfg.Ring.Peek(w.buf); n > 0 {
				if err := w.send(n); err != nil {
					w.lost(err)
				}
				continue
			}
		}
		if w.stopping() && w.cfg.Ring.Drained() && w.cfg.Ring.Retained() == 0 {
			return // everything delivered
		}
		w.park()
	}
}

// park waits until there is something to do.
func (w *Writer) park() {
	ready := func() bool {
		return (w.link != nil && w.cfg.Ring.Ready()) ||
			len(w.attach) > 0 || len(w.detach) > 0 || len(w.settle) > 0 ||
			w.peerAcked.Load() > w.released ||
			(w.link != nil && w.ackDue.Load() > w.ackSent) ||
			(w.stopping() && w.cfg.Ring.Drained() && w.cfg.Ring.Retained() == 0)
	}
	if w.cfg.Heartbeat <= 0 || w.link == nil {
		_ = w.bell.Wait(w.ctx, ready)
		return
	}
	if w.beat == nil {
		w.beat = time.NewTimer(w.cfg.Heartbeat)
	} else {
		w.beat.Reset(w.cfg.Heartbeat)
	}
	timedOut, _ := w.bell.WaitTimer(w.ctx, w.beat.C, ready)
	w.beat.Stop()
	if timedOut {
		if err := w.sendHeartbeat(); err != nil {
			w.lost(err)
		}
	}
}

// sendHeartbeat tells the peer this node is alive on a link that has been
// idle for the heartbeat interval.
func (w *Writer) sendHeartbeat() error {
	buf, err := batch.EncodeControl(&courierv1.Frame{Kind: &courierv1.Frame_Heartbeat{
		Heartbeat: &courierv1.Heartbeat{Nanos: uint64(time.Since(epoch))},
	}})
	if err != nil {
		return err
	}
	if err := w.link.Stream.SendMsg(buf); err != nil {
		return err
	}
	w.cfg.Counters.Heartbeats.Add(1)
	return nil
}

// epoch is the zero of the heartbeats' monotonic clock.
var epoch = time.Now()

// use switches to a new link: a fresh encoder with the link's limits, and
// everything not acknowledged goes out again from the oldest.
func (w *Writer) use(l *Link) {
	enc, err := batch.NewEncoder(batch.EncoderConfig{
		Limits:            l.Limits,
		MaxEnvelopes:      len(w.buf),
		MaxBytes:          w.cfg.MaxBytes,
		Compress:          w.cfg.Compress,
		CompressThreshold: w.cfg.CompressThreshold,
		SelfContained:     w.cfg.SelfContained,
	})
	if err != nil {
		w.cfg.Logger.Error("writer: link with invalid limits", "lane", w.cfg.Lane, "err", err)
		if w.cfg.LinkDown != nil {
			w.cfg.LinkDown(l, err)
		}
		return
	}
	w.link, w.enc = l, enc
	w.cfg.Ring.Rewind()
	w.enc.SetNextPosition(w.released + 1)
	w.ackSent = 0
	if w.released > 0 {
		// Tell the peer where this lane stands: a new incarnation has seen
		// none of the positions before, and must not wait for them (a
		// held Terminated waits for a user-lane position).
		if err := w.sendPosition(w.released + 1); err != nil {
			w.lost(err)
		}
	}
}

// sendPosition sends an empty batch at pos: the peer takes every position
// before it as settled.
func (w *Writer) sendPosition(pos uint64) error {
	buf, err := batch.EncodeControl(&courierv1.Frame{Kind: &courierv1.Frame_Batch{Batch: &courierv1.Batch{Position: pos}}})
	if err != nil {
		return err
	}
	return w.link.Stream.SendMsg(buf)
}

// lost gives up the current link after a send failed.
func (w *Writer) lost(err error) {
	l := w.link
	w.link, w.enc = nil, nil
	w.cfg.Ring.Rewind()
	w.cfg.Logger.Debug("writer: link lost", "lane", w.cfg.Lane, "err", err)
	if w.cfg.LinkDown != nil {
		w.cfg.LinkDown(l, err)
	}
}

// releaseAcked frees the ring slots of acknowledged envelopes.
func (w *Writer) releaseAcked() {
	acked := min(w.peerAcked.Load(), w.sentHigh) // never past what was sent
	if acked <= w.released {
		return
	}
	n := acked - w.released
	delivered := n
	for len(w.skipped) > 0 && w.skipped[0] <= acked {
		w.skipped = w.skipped[1:]
		delivered--
	}
	w.cfg.Ring.Release(int(n))
	w.released = acked
	w.cfg.Counters.Acked.Add(delivered)
	if w.cfg.Released != nil {
		w.cfg.Released()
	}
}

// sendAck acknowledges what the peer sent on this stream, if anything new.
func (w *Writer) sendAck() error {
	due := w.ackDue.Load()
	if due <= w.ackSent {
		return nil
	}
	buf, err := batch.EncodeControl(&courierv1.Frame{Kind: &courierv1.Frame_Ack{Ack: &courierv1.Ack{Position: due}}})
	if err != nil {
		return err
	}
	if err := w.link.Stream.SendMsg(buf); err != nil {
		return err
	}
	w.ackSent = due
	return nil
}

// send encodes the n envelopes in w.buf, and any that arrive while a frame
// lingers, into frames on the link.
func (w *Writer) send(n int) error {
	// The lane position of w.buf[0]: the encoder numbers envelopes in the
	// order they are added, and every envelope read is added or skipped.
	for {
		for i := range n {
			if err := w.add(&w.buf[i]); err != nil {
				return err
			}
			w.buf[i] = batch.Envelope{} // drop references early
		}
		if w.enc.Full() || !w.moreComing() {
			break
		}
		if n = w.cfg.Ring.Peek(w.buf); n == 0 {
			break
		}
	}
	return w.flush()
}

// add adds one envelope to the frame, flushing first if it is full.
func (w *Writer) add(env *batch.Envelope) error {
	pos := w.enc.NextPosition()
	err := w.enc.Add(env)
	if errors.Is(err, batch.ErrFrameFull) {
		if err = w.flush(); err != nil {
			return err
		}
		err = w.enc.Add(env)
	}
	if errors.Is(err, batch.ErrEnvelopeTooLarge) {
		// Skip the position, and tell the peer at once: it must not wait
		// for it. Dead-letter only the first time: a resend skips quietly.
		if err = w.flush(); err != nil {
			return err
		}
		w.enc.SetNextPosition(pos + 1)
		if err = w.sendPosition(pos + 1); err != nil {
			return err
		}
		if pos > w.sentHigh {
			w.sentHigh = pos
			w.skipped = append(w.skipped, pos)
			w.cfg.DeadLetter(env, ReasonTooLarge)
		}
		return nil
	}
	return err
}

// flush sends the frame being built, if any. It asks the peer for an ack
// when the writer is about to go idle, or when half the ring waits for
// acknowledgement, so that acks cost a frame per burst.
func (w *Writer) flush() error {
	r := w.cfg.Ring
	if !r.Ready() || r.Retained() >= r.Cap()/2 {
		w.enc.RequestAck()
	}
	first := w.enc.NextPosition() - uint64(w.enc.Len())
	buf, err := w.enc.Flush()
	if err != nil || buf == nil {
		return err
	}
	last := w.enc.NextPosition() - 1 // the frame carries first..last
	size := len(buf.B)
	if err := w.link.Stream.SendMsg(buf); err != nil {
		return err
	}
	c := w.cfg.Counters
	c.Batches.Add(1)
	c.BytesOut.Add(uint64(size))
	if last >= first {
		if last > w.sentHigh {
			fresh := last - max(first-1, w.sentHigh)
			c.Sent.Add(fresh)
			c.Resent.Add(last - first + 1 - fresh)
			w.sentHigh = last
		} else {
			c.Resent.Add(last - first + 1)
		}
	}
	return nil
}

// moreComing reports whether more envelopes are ready to join the frame
// being built. Without a linger time it yields the processor once, so that
// producers running on it can add to a small frame: under load frames grow,
// and an idle lane loses a fraction of a microsecond.
func (w *Writer) moreComing() bool {
	if w.cfg.Linger > 0 {
		return w.lingerForMore()
	}
	if w.cfg.Ring.Ready() {
		return true
	}
	if w.enc.Len() >= w.yieldBelow {
		return false
	}
	runtime.Gosched()
	return w.cfg.Ring.Ready()
}

// lingerForMore waits up to the linger time for the ring to have more, and
// reports whether it has.
func (w *Writer) lingerForMore() bool {
	r := w.cfg.Ring
	if r.Ready() {
		return true
	}
	if w.linger == nil {
		w.linger = time.NewTimer(w.cfg.Linger)
	} else {
		w.linger.Reset(w.cfg.Linger)
	}
	defer w.linger.Stop()
	for !r.Ready() {
		timedOut, err := w.bell.WaitTimer(w.ctx, w.linger.C, r.Ready)
		if timedOut || err != nil {
			return r.Ready()
		}
	}
	return true
}

// sweep runs as the goroutine exits. It closes the ring, and dead-letters
// every envelope still in it, sent or not, including any whose producer was
// still writing it when the ring closed.
func (w *Writer) sweep() {
	reason := ReasonShutdown
	if a := w.abort.Load(); a != 0 {
		reason = Reason(a - 1)
	}
	r := w.cfg.Ring
	r.Close()
	r.Rewind()
	pos := w.released
	for {
		n := r.Drain(w.buf)
		for i := range n {
			pos++
			if len(w.skipped) > 0 && w.skipped[0] == pos {
				w.skipped = w.skipped[1:] // dead-lettered already
			} else {
				w.cfg.DeadLetter(&w.buf[i], reason)
			}
			w.buf[i] = batch.Envelope{}
		}
		if n > 0 {
			continue
		}
		if r.Drained() {
			return
		}
		_ = r.Wait(context.Background()) // a producer is finishing a push
	}
}
