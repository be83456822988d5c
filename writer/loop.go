package writer

import (
	"context"
	"errors"
	"runtime"
	"time"

	"github.com/courier-go/courier/batch"
	courierv1 "github.com/courier-go/courier/proto/courier/v1"
)

// The writer goroutine: its loop, the send path from the ring into frames,
// acknowledgements and heartbeats, and the sweep as it exits. Writer's
// methods in writer.go only hand it work.

// run is the writer goroutine.
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
			if w.cfg.Ring.Ready() {
				w.worked = true
				if err := w.send(); err != nil {
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
	now := time.Now()
	if w.worked {
		w.worked, w.quietSince = false, now
	}
	// The timer is the heartbeat's, or the idle release's when that comes
	// first.
	var d time.Duration
	if w.cfg.Heartbeat > 0 && w.link != nil {
		d = w.cfg.Heartbeat
	}
	if w.cfg.IdleRelease > 0 && w.cfg.Ring.Holding() {
		left := w.quietSince.Add(w.cfg.IdleRelease).Sub(now)
		if left <= 0 {
			w.shed()
			return
		}
		if d == 0 || left < d {
			d = left
		}
	}
	if d == 0 {
		_ = w.bell.Wait(w.ctx, ready)
		return
	}
	if w.beat == nil {
		w.beat = time.NewTimer(d)
	} else {
		w.beat.Reset(d)
	}
	timedOut, _ := w.bell.WaitTimer(w.ctx, w.beat.C, ready)
	w.beat.Stop()
	if timedOut && w.link != nil && d == w.cfg.Heartbeat {
		if err := w.sendHeartbeat(); err != nil {
			w.lost(err)
		}
	}
}

// shed frees what an idle lane holds, if it is idle still: nothing in the
// ring, nothing retained for acknowledgement.
func (w *Writer) shed() {
	w.quietSince = time.Now() // either way, the next release is a period away
	r := w.cfg.Ring
	if r.Len() != 0 || r.Retained() != 0 {
		return // not idle after all
	}
	if r.Shed() {
		w.cfg.Counters.Sheds.Add(1)
	}
	if w.enc != nil {
		w.enc.Shed()
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
		MaxEnvelopes:      w.maxEnv,
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
	w.ackSent, w.asked = 0, [2]uint64{}
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
	buf, err := w.acks.Encode(due)
	if err != nil {
		return err
	}
	if err := w.link.Stream.SendMsg(buf); err != nil {
		return err
	}
	w.ackSent = due
	return nil
}

// send encodes the ready envelopes, and any that arrive while a frame
// lingers, into frames on the link, until a frame is full or no more come.
// Envelopes are encoded where they lie in the ring, which keeps them until
// the peer acknowledges them: the encoder numbers them in the order they
// are added, and every envelope read is added or skipped.
func (w *Writer) send() error {
	r := w.cfg.Ring
	for {
		for env := r.Next(); env != nil; env = r.Next() {
			if err := w.add(env); err != nil {
				return err
			}
			if w.enc.Full() {
				return w.flush()
			}
		}
		if !w.moreComing() {
			return w.flush()
		}
	}
}

// add adds one envelope to the frame, flushing first if it is full.
func (w *Writer) add(env *batch.Envelope) error {
	pos := w.enc.NextPosition()
	err := w.enc.Add(env)
	if err == nil {
		return nil // the usual case, without errors.Is's two calls
	}
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

// yieldFrameBytes is the size from which a frame is large enough for the
// writer to yield after sending it, and the receive loop after asking for its
// ack: about a quarter of a full frame of 64-byte envelopes.
const yieldFrameBytes = 16 << 10

// flush sends the frame being built, if any. It asks the peer for an ack
// when the writer is about to go idle, or when a quarter of the ring waits
// for acknowledgement and fewer than two asks are unanswered: acks cost a
// frame per burst, and under load one for every frame or two, not one per
// frame (each costs gRPC allocations on both nodes).
func (w *Writer) flush() error {
	r := w.cfg.Ring
	first := w.enc.NextPosition() - uint64(w.enc.Len())
	if !r.Ready() || r.Retained() >= r.Cap()/4 && w.peerAcked.Load() >= w.asked[0] {
		w.enc.RequestAck()
		w.asked = [2]uint64{w.asked[1], w.enc.NextPosition() - 1}
	}
	buf, err := w.enc.Flush()
	if err != nil || buf == nil {
		return err
	}
	last := w.enc.NextPosition() - 1 // the frame carries first..last
	size := len(buf.B)
	if err := w.link.Stream.SendMsg(buf); err != nil {
		return err
	}
	// gRPC's writer goroutine writes the frame to the connection. Woken by
	// SendMsg, it would wait for this processor until the next frame is
	// built: after a large frame, which takes long to build, let it write
	// this one now. (Small frames, to many peers at once, would yield for
	// every few envelopes.)
	if size >= yieldFrameBytes {
		runtime.Gosched()
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
		var n int
		pos, n, _ = w.deadLetterReady(pos, reason)
		if n > 0 {
			continue
		}
		if r.Drained() {
			return
		}
		_ = r.Wait(context.Background()) // a producer is finishing a push
	}
}

// deadLetterReady dead-letters with reason every envelope ready to read,
// but those dead-lettered already, and releases them. pos is the lane
// position before the first; it returns the position of the last, how many
// envelopes it read and how many it dead-lettered.
func (w *Writer) deadLetterReady(pos uint64, reason Reason) (last uint64, read, dead int) {
	r := w.cfg.Ring
	for env := r.Next(); env != nil; env = r.Next() {
		pos++
		read++
		if len(w.skipped) > 0 && w.skipped[0] == pos {
			w.skipped = w.skipped[1:] // dead-lettered already
			continue
		}
		dead++
		w.cfg.DeadLetter(env, reason)
	}
	r.Release(r.Retained())
	return pos, read, dead
}
