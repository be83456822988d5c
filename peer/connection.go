package peer

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/courier-go/courier/batch"
	"github.com/courier-go/courier/internal/wire"
	courierv1 "github.com/courier-go/courier/proto/courier/v1"
	"github.com/courier-go/courier/reader"
	"github.com/courier-go/courier/writer"
)

// refuseBlocked is the handshake's refusal of a blocked system.
func refuseBlocked(systemID string) error {
	return wire.Refuse(courierv1.RefuseReason_REFUSE_REASON_BLOCKED, "system %q is blocked", systemID)
}

// dial makes one connection attempt on connections of its own: one that
// went silent is not reused. Each lane has its own connection, so that the
// system lane's frames never queue behind the user lane's bytes in flight:
// with one connection, a user lane running at full speed into a fast
// reader keeps up to a stream window of user data ahead of every system
// frame (at 450 MB/s and 4 MiB, 9 ms). The handshakes end within the
// handshake timeout, and by by if it is set. It reports whether the
// connection came up, when the peer said goodbye on it (zero if it did
// not), and why it ended.
func (e *Endpoint) dial(again bool, by time.Time) (up bool, bye time.Time, err error) {
	var conns [2]Conn
	for i := range conns {
		c, err := e.cfg.Dialer.Dial(e.address)
		if err != nil {
			return false, time.Time{}, err
		}
		defer c.Close()
		conns[i] = c
	}
	return e.connection(conns, again, by)
}

// connection opens both streams, each on its lane's connection, runs them
// until one fails or the peer goes silent, and returns why; up reports
// whether both streams opened, and bye when the peer said goodbye (then err
// is the goodbye).
func (e *Endpoint) connection(conns [2]Conn, again bool, by time.Time) (up bool, bye time.Time, err error) {
	ctx, cancel := context.WithCancel(e.ctx)
	defer cancel()
	// Drain a failure report from the previous connection.
	select {
	case <-e.down:
	default:
	}
	// A reconnect attempt is abandoned when Close begins: an endpoint
	// without a connection has nothing to flush. A first attempt goes on,
	// so that Close can flush what was queued before it. stopAbandon
	// reports false if the attempt was abandoned.
	stopAbandon := func() bool { return true }
	if again {
		stopAbandon = context.AfterFunc(e.closeCtx, cancel)
	}
	// One handshake timeout for the attempt, both lanes included, so that
	// an attempt never takes longer.
	deadline := e.clock.Now().Add(e.cfg.HandshakeTimeout)
	if !by.IsZero() && by.Before(deadline) {
		deadline = by
	}
	var links [2]*writer.Link
	var streams [2]Stream
	var peer reader.Peer
	for i := range links {
		l, s, p, err := e.open(ctx, conns[i], batch.Lane(i), deadline)
		if err != nil {
			stopAbandon()
			return false, time.Time{}, err
		}
		links[i], streams[i], peer = l, s, p
	}
	if !stopAbandon() {
		return false, time.Time{}, fmt.Errorf("%w: reconnect abandoned", ErrClosed)
	}
	if e.node.Blocked(peer.SystemID) {
		return false, time.Time{}, refuseBlocked(peer.SystemID)
	}
	if e.node.Quarantined(peer) {
		return false, time.Time{}, fmt.Errorf("%w: %s, incarnation %x", reader.ErrQuarantined, peer.SystemID, peer.Incarnation)
	}
	if old := e.peer.Load(); old != nil && (old.Incarnation != peer.Incarnation || old.SystemID != peer.SystemID) {
		// A new incarnation: settle what was owed to the old one before
		// the new one gets anything.
		n := e.settle(old)
		e.peer.Store(&peer)
		e.emit(Event{Kind: EventPeerRestarted, Count: n, Reason: ReasonPeerRestarted})
	}
	e.peer.Store(&peer)
	e.state.Store(uint32(StateConnected))
	if again {
		e.reconnects.Add(1)
		e.emit(Event{Kind: EventReconnected})
	} else {
		e.emit(Event{Kind: EventConnected})
	}
	bye, err = e.receive(ctx, cancel, links, streams, peer)
	return true, bye, err
}

// receive runs the dialer's receive loops on the connection's streams,
// attaches the writers to them, and watches the connection until it ends;
// it returns when the peer said goodbye (zero if it did not) and why it
// ended. The loops carry acknowledgements of what this node sends, and a
// listening peer's traffic when this node is client-only. cancel ends the
// streams.
func (e *Endpoint) receive(ctx context.Context, cancel context.CancelFunc, links [2]*writer.Link, streams [2]Stream, peer reader.Peer) (bye time.Time, err error) {
	// The first goodbye is kept, with its time; the loops' ends are read
	// after wg.Wait.
	var wg sync.WaitGroup
	var said struct {
		once sync.Once
		at   time.Time
		err  error
	}
	ended := make(chan error, len(links))
	for i := range links {
		ln := &e.lanes[i]
		rcv := &reader.Receive{
			Stream:    streams[i],
			Peer:      peer,
			Lane:      batch.Lane(i),
			Limits:    links[i].Limits,
			Ack:       func(pos uint64) error { ln.w.AckReceived(pos); return nil },
			PeerAcked: ln.w.PeerAcked,
			Counters:  &ln.rc,
			Logger:    e.log,
		}
		e.node.Bind(rcv)
		if err := ln.w.Attach(links[i]); err != nil {
			cancel()
			wg.Wait()
			return time.Time{}, err
		}
		wg.Go(func() {
			err := rcv.Run()
			if errors.Is(err, reader.ErrGoodbye) {
				said.once.Do(func() { said.at, said.err = e.clock.Now(), err })
			}
			ended <- err
			e.linkDown(err)
		})
	}
	err = e.watch(streams)
	if errors.Is(err, io.EOF) {
		// A writer found its stream ended by the peer; the stream's receive
		// loop reads up to that end, and a goodbye there says why.
		err = e.awaitEnd(ended, err)
	}
	if errors.Is(err, reader.ErrGoodbye) {
		e.awaitGoodbyes(&wg)
	}
	cancel()
	wg.Wait()
	if !said.at.IsZero() {
		return said.at, said.err
	}
	return time.Time{}, err
}

// awaitEnd waits, up to the handshake timeout, for a receive loop to end
// after a writer found its stream ended, and returns the loop's goodbye if
// that is how it ended, else err.
func (e *Endpoint) awaitEnd(ended <-chan error, err error) error {
	t := e.clock.NewTimer(e.cfg.HandshakeTimeout)
	defer t.Stop()
	select {
	case rerr := <-ended:
		if errors.Is(rerr, reader.ErrGoodbye) {
			return rerr
		}
	case <-t.C():
	case <-e.ctx.Done():
	}
	return err
}

// watch waits for the connection to end and returns why: a stream failed,
// the peer went silent for the heartbeat timeout (nothing at all came back
// on the control stream, not even a heartbeat reply), or the endpoint
// stopped.
func (e *Endpoint) watch(streams [2]Stream) error {
	interval, timeout := e.cfg.Heartbeat, e.cfg.HeartbeatTimeout
	tick := e.clock.NewTimer(interval)
	defer tick.Stop()
	frames := &e.lanes[batch.LaneSystem].rc.Frames
	seen, heard := frames.Load(), e.clock.Now()
	for {
		select {
		case err := <-e.down:
			return err
		case now := <-tick.C():
			tick.Reset(interval)
			if n := frames.Load(); n != seen {
				seen, heard = n, now
			} else if now.Sub(heard) >= timeout {
				return fmt.Errorf("%w: nothing for %v", ErrPeerSilent, now.Sub(heard).Round(time.Millisecond))
			}
		case <-e.ctx.Done():
			if e.closing.Load() {
				// The writers have stopped: this goroutine may send. Tell the
				// peer, so that it does not take the end for a failure.
				for _, s := range streams {
					if wire.Goodbye(s, "node shutting down") == nil {
						_ = s.CloseSend()
					}
				}
			}
			return e.ctx.Err()
		}
	}
}

// awaitGoodbyes lets the receive loops of a peer that said goodbye on one
// lane read up to the end of the others before their streams are cancelled.
// A closing peer says goodbye on every lane, each after the lane's last ack:
// cancelling at the first goodbye could drop the other lanes' last acks, and
// what they acknowledged would be dead-lettered as undelivered. The wait is
// bounded by the handshake timeout and by the endpoint's end.
func (e *Endpoint) awaitGoodbyes(wg *sync.WaitGroup) {
	ended := make(chan struct{})
	go func() {
		wg.Wait()
		close(ended)
	}()
	t := e.clock.NewTimer(e.cfg.HandshakeTimeout)
	defer t.Stop()
	select {
	case <-ended:
	case <-t.C():
	case <-e.ctx.Done():
	}
}

// open opens one lane's stream in ctx and runs the dialer's handshake on it,
// by the attempt's deadline.
func (e *Endpoint) open(ctx context.Context, c Conn, id batch.Lane, deadline time.Time) (*writer.Link, Stream, reader.Peer, error) {
	sctx, cancel := context.WithCancel(ctx)
	timer := e.clock.AfterFunc(deadline.Sub(e.clock.Now()), cancel) // a late Welcome cancels the stream
	s, err := c.Connect(sctx)
	if err == nil {
		var welcome *courierv1.Welcome
		welcome, err = wire.Dial(s, wire.NewHello(e.cfg.Self, id))
		if !timer.Stop() && err == nil {
			err = fmt.Errorf("%w: no welcome within %v: %w", wire.ErrHandshake, e.cfg.HandshakeTimeout, context.DeadlineExceeded)
		}
		if err == nil {
			limits := wire.Negotiated(welcome.GetLimits(), e.cfg.Self.Limits)
			peer := reader.Peer{SystemID: welcome.GetSystemId(), Address: e.address, Incarnation: welcome.GetIncarnation()}
			// The stream lives until ctx, the connection's context, ends.
			context.AfterFunc(ctx, cancel)
			return &writer.Link{Stream: s, Limits: limits}, s, peer, nil
		}
	}
	timer.Stop()
	cancel()
	return nil, nil, reader.Peer{}, err
}
