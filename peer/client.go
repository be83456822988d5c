package peer

import (
	"fmt"
	"sync"
	"time"

	"github.com/courier-go/courier/batch"
	"github.com/courier-go/courier/internal/wire"
	"github.com/courier-go/courier/reader"
	"github.com/courier-go/courier/writer"
)

// attachment hands a client-only endpoint a stream its peer opened.
type attachment struct {
	lane   batch.Lane
	link   *writer.Link
	peer   reader.Peer
	closed <-chan struct{} // closed when the stream's handler ends
}

// Attach hands a client-only peer's endpoint a stream the peer opened to
// this node, with the limits its handshake settled; rcv.Peer and rcv.Lane
// say whose it is and which lane it carries. The lane's writer sends over
// it from now on. Attach sets rcv's Ack and
// PeerAcked, so that the stream's receive loop feeds the writer, and
// returns the function to call when the stream's handler ends. It fails
// with ErrEndpointTerminated once the endpoint has stopped.
func (e *Endpoint) Attach(rcv *reader.Receive, s wire.Stream, limits batch.Limits) (detach func(), err error) {
	if e.ctx.Err() != nil {
		return nil, fmt.Errorf("%w: %s", ErrEndpointTerminated, e.address)
	}
	ln := &e.lanes[rcv.Lane]
	link := &writer.Link{Stream: s, Limits: limits}
	closed := make(chan struct{})
	select {
	case e.attach <- attachment{lane: rcv.Lane, link: link, peer: rcv.Peer, closed: closed}:
	case <-e.ctx.Done():
		return nil, fmt.Errorf("%w: %s", ErrEndpointTerminated, e.address)
	}
	rcv.Ack = func(pos uint64) error { ln.w.AckReceived(pos); return nil }
	rcv.PeerAcked = ln.w.PeerAcked
	return func() {
		close(closed)
		ln.w.Detach(link, e.cfg.HandshakeTimeout)
	}, nil
}

// serveClient runs a client-only peer's endpoint: its writers use the
// streams the peer opened, handed over by Attach. When the peer has had no
// stream for the idle timeout it is gone: the endpoint ends, and settles
// with the peer.
func (e *Endpoint) serveClient() {
	var wg sync.WaitGroup
	defer wg.Wait()
	ended := make(chan struct{})
	attached := 0
	// One idle timer, armed while no stream is attached; idle is its
	// channel then, nil otherwise.
	timer := e.clock.NewTimer(e.cfg.IdleTimeout)
	timer.Stop()
	defer timer.Stop()
	var idle <-chan time.Time
	for {
		select {
		case a := <-e.attach:
			p := a.peer
			e.peer.Store(&p)
			if err := e.lanes[a.lane].w.Attach(a.link); err == nil {
				e.state.Store(uint32(StateConnected))
			}
			attached++
			if idle != nil {
				timer.Stop() // a tick that fired as the stream came is dropped
				idle = nil
			}
			wg.Go(func() {
				select {
				case <-a.closed:
				case <-e.ctx.Done():
					return
				}
				select {
				case ended <- struct{}{}:
				case <-e.ctx.Done():
				}
			})
		case <-ended:
			if attached--; attached == 0 {
				timer.Reset(e.cfg.IdleTimeout)
				idle = timer.C()
			}
		case <-idle:
			e.Terminate(ReasonEndpointTerminated, fmt.Errorf("%w: client-only peer %s had no stream for %v", ErrIdle, e.address, e.cfg.IdleTimeout))
			e.settle(e.peer.Load())
			if e.node.Forget != nil {
				e.node.Forget()
			}
			return
		case <-e.ctx.Done():
			return
		}
	}
}
