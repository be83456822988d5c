package manager

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/courier-go/courier/batch"
	"github.com/courier-go/courier/internal/wire"
	courierv1 "github.com/courier-go/courier/proto/courier/v1"
	"github.com/courier-go/courier/proto/courier/v1/transportv1"
	"github.com/courier-go/courier/reader"
	"github.com/courier-go/courier/ring"
	"github.com/courier-go/courier/writer"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/experimental"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/resolver"
	"google.golang.org/grpc/status"
)

// lane is one lane of an endpoint: its queue, its writer and counters.
type lane struct {
	ring *ring.Ring[batch.Envelope]
	sc   sendCounters
	w    *writer.Writer
	wc   writer.Counters
	rc   reader.Counters // receive side of this node's own streams
}

// endpoint is everything this node keeps for one peer address.
type endpoint struct {
	m          *Manager
	address    string
	clientOnly bool // a client-only peer's endpoint: it never dials
	lanes      [2]lane
	highWater  int
	lowWater   int

	state      atomic.Uint32 // State
	throttled  atomic.Int32
	peer       atomic.Pointer[Peer]
	reconnects atomic.Uint64
	endedAt    atomic.Int64  // unix nanos of termination
	endReason  atomic.Uint32 // writer.Reason of termination

	ctx    context.Context // canceled when the endpoint stops for good
	cancel context.CancelFunc
	done   chan struct{} // closed when run returns
	down   chan error    // a link failed; capacity 1
	attach chan attachment

	closeOnce sync.Once
	closing   atomic.Bool // close began: the end is not a failure
	// closeCtx is canceled when close begins: an endpoint without a
	// connection then ends at once, having nothing it could flush.
	closeCtx context.Context
	closeNow context.CancelFunc
}

// attachment hands a client-only endpoint a stream its peer opened.
type attachment struct {
	lane   batch.Lane
	link   *writer.Link
	peer   Peer
	closed <-chan struct{} // closed when the stream's handler ends
}

func newEndpoint(m *Manager, address string, clientOnly bool) (*endpoint, error) {
	o := &m.o
	ctx, cancel := context.WithCancel(m.ctx)
	closeCtx, closeNow := context.WithCancel(context.Background())
	ep := &endpoint{
		m:          m,
		address:    address,
		clientOnly: clientOnly,
		highWater:  max(1, int(math.Ceil(o.highWater*float64(o.userQueue)))),
		lowWater:   int(o.lowWater * float64(o.userQueue)),
		ctx:        ctx,
		cancel:     cancel,
		done:       make(chan struct{}),
		down:       make(chan error, 1),
		attach:     make(chan attachment, 2),
		closeCtx:   closeCtx,
		closeNow:   closeNow,
	}
	if clientOnly {
		ep.state.Store(uint32(StateWaiting))
	}
	for i, capacity := range []int{o.userQueue, o.systemQueue} {
		ln := &ep.lanes[i]
		r, err := ring.New[batch.Envelope](capacity)
		if err != nil {
			cancel()
			return nil, err
		}
		ln.ring = r
		laneID := batch.Lane(i)
		ln.w, err = writer.New(writer.Config{
			Lane:              laneID,
			Ring:              r,
			MaxEnvelopes:      o.batchEnvelopes,
			MaxBytes:          o.batchBytes,
			Linger:            o.linger,
			Compress:          o.compress,
			CompressThreshold: o.compressThreshold,
			SelfContained:     laneID == batch.LaneSystem,
			Counters:          &ln.wc,
			DeadLetter: func(env *batch.Envelope, reason writer.Reason) {
				m.deadLetter(address, env, reason)
			},
			LinkDown:    func(_ *writer.Link, err error) { ep.linkDown(err) },
			Released:    ep.released,
			Heartbeat:   heartbeatOf(laneID, o.heartbeat),
			IdleRelease: o.idleRelease,
			Logger:      m.log,
		})
		if err != nil {
			cancel()
			return nil, err
		}
	}
	return ep, nil
}

// send queues env on its lane.
func (ep *endpoint) send(ctx context.Context, env *Envelope) error {
	ln := &ep.lanes[env.Lane]
	if len(env.Payload) > ep.m.o.limits.MaxFrameBytes-64 {
		ln.sc.refused.Add(1)
		return fmt.Errorf("%w: payload of %d bytes, max frame %d", ErrTooLarge, len(env.Payload), ep.m.o.limits.MaxFrameBytes)
	}
	err := ln.ring.TryPush(*env)
	if err == nil {
		if env.Lane == batch.LaneUser {
			ep.checkThrottle(ln.ring.Len())
		}
		return nil
	}
	if errors.Is(err, ring.ErrClosed) {
		ln.sc.refused.Add(1)
		if ep.m.closed.Load() {
			return ErrClosed
		}
		return fmt.Errorf("%w: %s", ErrEndpointTerminated, ep.address)
	}
	// Full.
	if env.Lane == batch.LaneSystem {
		return ep.sendSystemFull(ctx, env)
	}
	ep.checkThrottle(ln.ring.Len())
	switch ep.m.o.overflow {
	case Fail:
		ln.sc.refused.Add(1)
		return ErrQueueFull
	case Block:
		if err := ln.ring.Push(ctx, *env); err != nil {
			ln.sc.refused.Add(1)
			if errors.Is(err, ring.ErrClosed) {
				return fmt.Errorf("%w: %s", ErrEndpointTerminated, ep.address)
			}
			return err
		}
		return nil
	default:
		ln.sc.droppedFull.Add(1)
		ep.m.deadLetter(ep.address, env, writer.ReasonQueueFull)
		return nil
	}
}

// sendSystemFull waits for room in a full system queue. The system lane
// never drops: a peer that leaves it full for the system queue timeout is
// treated as failed, as Artery quarantines it.
func (ep *endpoint) sendSystemFull(ctx context.Context, env *Envelope) error {
	ln := &ep.lanes[batch.LaneSystem]
	wait, cancel := context.WithTimeout(ctx, ep.m.o.systemTimeout)
	defer cancel()
	err := ln.ring.Push(wait, *env)
	switch {
	case err == nil:
		return nil
	case ctx.Err() != nil:
		ln.sc.refused.Add(1)
		return ctx.Err()
	case errors.Is(err, context.DeadlineExceeded):
		ln.sc.refused.Add(1)
		ep.terminate(writer.ReasonEndpointTerminated, ErrSystemQueueFull)
		return fmt.Errorf("%w: %s", ErrSystemQueueFull, ep.address)
	default:
		ln.sc.refused.Add(1)
		if ep.m.closed.Load() {
			return ErrClosed
		}
		return fmt.Errorf("%w: %s", ErrEndpointTerminated, ep.address)
	}
}

// checkThrottle raises the throttled event when the user queue reaches the
// high watermark.
func (ep *endpoint) checkThrottle(n int) {
	if n >= ep.highWater && ep.throttled.Load() == 0 && ep.throttled.CompareAndSwap(0, 1) {
		ep.emit(Event{Type: EventThrottled, Level: 1, QueueLen: n, QueueCap: ep.lanes[batch.LaneUser].ring.Cap()})
	}
}

// released runs in a writer goroutine after acknowledged envelopes left a
// queue: it clears the throttle below the low watermark.
func (ep *endpoint) released() {
	n := ep.lanes[batch.LaneUser].ring.Len()
	if n <= ep.lowWater && ep.throttled.Load() == 1 && ep.throttled.CompareAndSwap(1, 0) {
		ep.emit(Event{Type: EventThrottled, Level: 0, QueueLen: n, QueueCap: ep.lanes[batch.LaneUser].ring.Cap()})
	}
}

func (ep *endpoint) emit(ev Event) {
	ev.Address = ep.address
	if p := ep.peer.Load(); p != nil {
		ev.Peer = *p
	}
	ep.m.events.emit(ev)
}

// linkDown is called when a stream of the current connection failed.
func (ep *endpoint) linkDown(err error) {
	select {
	case ep.down <- err:
	default:
	}
}

// replaceable reports whether a Send may replace this endpoint with a new
// one: it terminated long enough ago that dialing again is not a tight loop.
func (ep *endpoint) replaceable() bool {
	if State(ep.state.Load()) != StateTerminated || ep.clientOnly {
		return false
	}
	return time.Since(time.Unix(0, ep.endedAt.Load())) >= ep.m.o.reconnect.Max
}

// terminate gives up: both queues are closed and everything in them is
// dead-lettered with reason.
func (ep *endpoint) terminate(reason writer.Reason, err error) {
	for {
		s := ep.state.Load()
		if State(s) == StateTerminated {
			return
		}
		if ep.state.CompareAndSwap(s, uint32(StateTerminated)) {
			break
		}
	}
	ep.endedAt.Store(time.Now().UnixNano())
	ep.endReason.Store(uint32(reason))
	for i := range ep.lanes {
		ep.lanes[i].ring.Close()
		ep.lanes[i].w.Terminate(reason)
	}
	ep.cancel()
	ep.emit(Event{Type: EventTerminated, Reason: reason.String(), Err: err})
}

// close flushes the endpoint within ctx and stops it.
func (ep *endpoint) close(ctx context.Context) {
	ep.closeOnce.Do(func() {
		ep.closing.Store(true)
		ep.closeNow()
		for i := range ep.lanes {
			ep.lanes[i].ring.Close()
		}
		// When ctx ends first, the writers give up; one blocked in gRPC on
		// a peer that does not open its flow-control window returns only
		// when its stream ends, so the streams end too.
		giveUp := context.AfterFunc(ctx, func() {
			for i := range ep.lanes {
				ep.lanes[i].w.Terminate(writer.ReasonShutdown)
			}
			ep.cancel()
		})
		var wg sync.WaitGroup
		for i := range ep.lanes {
			wg.Add(1)
			go func(w *writer.Writer) {
				defer wg.Done()
				w.Stop(ctx)
			}(ep.lanes[i].w)
		}
		wg.Wait()
		giveUp()
		ep.cancel()
	})
	<-ep.done
}

// run is the endpoint's goroutine: it keeps the connection up, or, for a
// client-only peer, waits for the peer's streams.
func (ep *endpoint) run() {
	defer close(ep.done)
	defer func() {
		for i := range ep.lanes {
			<-ep.lanes[i].w.Done()
		}
	}()
	if ep.clientOnly {
		ep.serveClient()
		return
	}
	// A terminated endpoint settles with its peer here, in its own
	// goroutine, whoever terminated it: a handler that sends may have.
	defer func() {
		if State(ep.state.Load()) == StateTerminated && !ep.closing.Load() {
			ep.settle(ep.peer.Load())
		}
	}()
	b := ep.m.o.reconnect
	attempt := 0
	// failing is when the current run of failed attempts began: the
	// endpoint's start, then each loss of its connection.
	failing := time.Now()
	// bye is the goodbye of a peer that shut down, received at byeAt; nil
	// unless the last connection ended with one.
	var bye error
	var byeAt time.Time
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	for ep.ctx.Err() == nil {
		var by time.Time // an attempt's handshakes end by then, if set
		if bye != nil {
			by = byeAt.Add(PeerShutdownGrace)
		}
		up, saidBye, err := ep.dial(attempt > 0 || ep.reconnects.Load() > 0, by)
		if ep.ctx.Err() != nil {
			return
		}
		if ep.closing.Load() {
			// Close began and the connection is gone: what is queued can
			// no longer be flushed.
			ep.shutdown()
			return
		}
		if reason, cause, final := ep.giveUp(up, err); final {
			ep.terminate(reason, cause)
			return
		}
		now := time.Now()
		if up {
			attempt, failing, bye = 0, now, nil
			if !saidBye.IsZero() {
				bye, byeAt = err, saidBye
			}
		}
		attempt++
		delay := b.Delay(attempt)
		switch {
		case bye != nil:
			// A clean shutdown is news, not a fault: the peer is dialed
			// at the initial delay for a short grace, in case it restarts
			// on its address, and then given up.
			left := PeerShutdownGrace - now.Sub(byeAt)
			if left <= 0 {
				ep.terminate(writer.ReasonPeerShutdown, fmt.Errorf("manager: peer shut down and was not back within %v: %w", PeerShutdownGrace, bye))
				return
			}
			delay = min(b.Delay(1), left)
		case b.MaxAttempts > 0 && attempt > b.MaxAttempts:
			ep.terminate(writer.ReasonEndpointTerminated, fmt.Errorf("gave up after %d attempts: %w", b.MaxAttempts, err))
			return
		case b.MaxElapsed > 0:
			// The last attempt starts when MaxElapsed is up, not later.
			left := b.MaxElapsed - now.Sub(failing)
			if left <= 0 {
				ep.terminate(writer.ReasonEndpointTerminated, fmt.Errorf("gave up after %v of failed attempts: %w", now.Sub(failing).Round(time.Millisecond), err))
				return
			}
			delay = min(delay, left)
		}
		ep.state.Store(uint32(StateReconnecting))
		ep.emit(Event{Type: EventReconnecting, Attempt: attempt, Delay: delay, Err: err})
		timer.Reset(delay)
		select {
		case <-timer.C:
		case <-ep.closeCtx.Done():
			ep.shutdown()
			return
		case <-ep.ctx.Done():
			return
		}
	}
}

// giveUp decides whether an attempt's failure ends the endpoint for good,
// and with what reason and error; it reports a refusal as an event. Every
// refusal is final but "unavailable" (shutting down, at a limit): another
// protocol version, an invalid Hello, a blocked or unauthorized node, a
// quarantined incarnation and a reason from a newer protocol would be
// answered the same next time. So is a host the resolver says does not
// exist.
func (ep *endpoint) giveUp(up bool, err error) (reason writer.Reason, cause error, final bool) {
	var refused *wire.RefusedError
	if errors.As(err, &refused) {
		if errors.Is(err, wire.ErrQuarantined) {
			err = fmt.Errorf("%w: %w", ErrQuarantined, err)
		}
		ep.emit(Event{Type: EventPeerRefused, Err: err})
		switch {
		case errors.Is(err, wire.ErrUnavailable):
			return 0, nil, false
		case errors.Is(err, wire.ErrBlocked):
			return writer.ReasonBlocked, err, true
		case errors.Is(err, ErrQuarantined):
			return writer.ReasonQuarantined, err, true
		}
		return writer.ReasonEndpointTerminated, err, true
	}
	if errors.Is(err, ErrQuarantined) {
		return writer.ReasonQuarantined, err, true
	}
	if !up {
		if dnsErr := ep.unresolvable(err); dnsErr != nil {
			return writer.ReasonUnresolvable, fmt.Errorf("manager: %s does not resolve: %w (%w)", ep.address, dnsErr, err), true
		}
	}
	return 0, nil, false
}

// unresolvable returns the resolver's error when err says the endpoint's
// host did not resolve and the resolver, asked again, says there is no such
// host. gRPC reports that only as an Unavailable status, "name resolver
// error: produced zero addresses" (its DNS resolver drops the not-found
// error), so the cause is confirmed by a lookup of this node's own. A
// resolver that times out or fails for now is not final.
func (ep *endpoint) unresolvable(err error) *net.DNSError {
	var dnsErr *net.DNSError
	if errors.As(err, &dnsErr) {
		if dnsErr.IsNotFound {
			return dnsErr
		}
		return nil
	}
	st, ok := status.FromError(err)
	if !ok || st.Code() != codes.Unavailable {
		return nil
	}
	if msg := st.Message(); !strings.Contains(msg, "name resolver error") &&
		!strings.Contains(msg, "produced zero addresses") && !strings.Contains(msg, "no such host") {
		return nil
	}
	host := dnsHost(ep.address)
	if host == "" {
		return nil
	}
	ctx, cancel := context.WithTimeout(ep.ctx, ep.m.o.handshakeTimeout)
	defer cancel()
	if _, err := net.DefaultResolver.LookupHost(ctx, host); errors.As(err, &dnsErr) && dnsErr.IsNotFound {
		return dnsErr
	}
	return nil
}

// dnsHost returns the host name gRPC resolves by DNS to dial address, or ""
// when it resolves none: an IP address, or the target of another resolver
// (unix:, passthrough:, ...).
func dnsHost(address string) string {
	target := address
	if u, err := url.Parse(address); err == nil && u.Scheme != "" && resolver.Get(u.Scheme) != nil {
		if u.Scheme != "dns" {
			return ""
		}
		target = strings.TrimPrefix(u.Path, "/")
	}
	host, _, err := net.SplitHostPort(target)
	if err != nil {
		host = target // no port: gRPC dials its default
	}
	if host == "" || net.ParseIP(host) != nil {
		return ""
	}
	return host
}

// shutdown ends an endpoint that Close found without a connection: its
// writers dead-letter everything with reason shutdown at once.
func (ep *endpoint) shutdown() {
	for i := range ep.lanes {
		ep.lanes[i].w.Terminate(writer.ReasonShutdown)
	}
}

// dial makes one connection attempt on connections of its own: one that
// went silent is not reused. Each lane has its own TCP connection, so that
// the system lane's frames never queue behind the user lane's bytes in
// flight: with one connection, a user lane running at full speed into a
// fast reader keeps up to a stream window of user data ahead of every
// system frame (at 450 MB/s and 4 MiB, 9 ms). The handshakes end within the
// handshake timeout, and by by if it is set. It reports whether the
// connection came up, when the peer said goodbye on it (zero if it did
// not), and why it ended.
func (ep *endpoint) dial(again bool, by time.Time) (up bool, bye time.Time, err error) {
	var clients [2]transportv1.TransportClient
	for i := range clients {
		conn, err := grpc.NewClient(ep.address, ep.m.dialOptions()...)
		if err != nil {
			return false, time.Time{}, err
		}
		defer conn.Close()
		clients[i] = transportv1.NewTransportClient(conn)
	}
	return ep.connection(clients, again, by)
}

// connection opens both streams, each on its lane's connection, runs them
// until one fails or the peer goes silent, and returns why; up reports
// whether both streams opened, and bye when the peer said goodbye (then err
// is the goodbye).
func (ep *endpoint) connection(clients [2]transportv1.TransportClient, again bool, by time.Time) (up bool, bye time.Time, err error) {
	ctx, cancel := context.WithCancel(ep.ctx)
	defer cancel()
	// Drain a failure report from the previous connection.
	select {
	case <-ep.down:
	default:
	}
	// A reconnect attempt is abandoned when Close begins: an endpoint
	// without a connection has nothing to flush. A first attempt goes on,
	// so that Close can flush what was queued before it. stopAbandon
	// reports false if the attempt was abandoned.
	stopAbandon := func() bool { return true }
	if again {
		stopAbandon = context.AfterFunc(ep.closeCtx, cancel)
	}
	// One handshake timeout for the attempt, both lanes included, so that
	// an attempt never takes longer.
	deadline := time.Now().Add(ep.m.o.handshakeTimeout)
	if !by.IsZero() && by.Before(deadline) {
		deadline = by
	}
	var links [2]*writer.Link
	var streams [2]transportv1.Transport_ConnectClient
	var peer Peer
	for i := range links {
		l, s, p, err := ep.open(ctx, clients[i], batch.Lane(i), deadline)
		if err != nil {
			stopAbandon()
			return false, time.Time{}, err
		}
		links[i], streams[i], peer = l, s, p
	}
	if !stopAbandon() {
		return false, time.Time{}, fmt.Errorf("%w: reconnect abandoned", ErrClosed)
	}
	if ep.m.isBlocked(peer.SystemID) {
		return false, time.Time{}, refuseBlocked(peer.SystemID)
	}
	if ep.m.quarantined(peer) {
		return false, time.Time{}, fmt.Errorf("%w: %s, incarnation %x", ErrQuarantined, peer.SystemID, peer.Incarnation)
	}
	if old := ep.peer.Load(); old != nil && (old.Incarnation != peer.Incarnation || old.SystemID != peer.SystemID) {
		// A new incarnation: settle what was owed to the old one before
		// the new one gets anything.
		n := ep.settle(old)
		ep.peer.Store(&peer)
		ep.emit(Event{Type: EventPeerRestarted, Count: n, Reason: ReasonPeerRestarted.String()})
	}
	ep.peer.Store(&peer)
	ep.state.Store(uint32(StateConnected))
	if again {
		ep.reconnects.Add(1)
		ep.emit(Event{Type: EventReconnected})
	} else {
		ep.emit(Event{Type: EventConnected})
	}
	// Receive loops: acks of what this node sends, and a listening peer's
	// answers when this node is client-only. The first goodbye is kept,
	// with its time; the loops' ends are read after wg.Wait.
	var wg sync.WaitGroup
	var said struct {
		once sync.Once
		at   time.Time
		err  error
	}
	ended := make(chan error, len(links))
	for i := range links {
		ln := &ep.lanes[i]
		lane := batch.Lane(i)
		rcv := &reader.Receive{
			Stream:    streams[i],
			Peer:      peer,
			Lane:      lane,
			Limits:    links[i].Limits,
			Ack:       func(pos uint64) error { ln.w.AckReceived(pos); return nil },
			PeerAcked: ln.w.PeerAcked,
			Counters:  &ln.rc,
			Logger:    ep.m.log,
		}
		if ep.m.addr == "" {
			// A client-only node: the peer sends to it over these streams.
			ep.m.bindReceive(rcv, peer, lane)
		} else {
			// A listening node: the peer sends to it over the peer's own
			// connection, whose streams own the lane's state; these carry
			// acks and heartbeat replies only.
			rcv.State = new(reader.LaneState)
			rcv.Generation = rcv.State.Claim()
			rcv.Deliver = ep.m.deliver
		}
		if err := ln.w.Attach(links[i]); err != nil {
			return true, time.Time{}, err
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := rcv.Run()
			if errors.Is(err, reader.ErrGoodbye) {
				said.once.Do(func() { said.at, said.err = time.Now(), err })
			}
			ended <- err
			ep.linkDown(err)
		}()
	}
	err = ep.watch(streams)
	if errors.Is(err, io.EOF) {
		// A writer found its stream ended by the peer; the stream's receive
		// loop reads up to that end, and a goodbye there says why.
		err = ep.awaitEnd(ended, err)
	}
	if errors.Is(err, reader.ErrGoodbye) {
		ep.awaitGoodbyes(&wg)
	}
	cancel()
	wg.Wait()
	if !said.at.IsZero() {
		return true, said.at, said.err
	}
	return true, time.Time{}, err
}

// awaitEnd waits, up to the handshake timeout, for a receive loop to end
// after a writer found its stream ended, and returns the loop's goodbye if
// that is how it ended, else err.
func (ep *endpoint) awaitEnd(ended <-chan error, err error) error {
	t := time.NewTimer(ep.m.o.handshakeTimeout)
	defer t.Stop()
	select {
	case rerr := <-ended:
		if errors.Is(rerr, reader.ErrGoodbye) {
			return rerr
		}
	case <-t.C:
	case <-ep.ctx.Done():
	}
	return err
}

// watch waits for the connection to end and returns why: a stream failed,
// the peer went silent for the heartbeat timeout (nothing at all came back
// on the control stream, not even a heartbeat reply), or the endpoint
// stopped.
func (ep *endpoint) watch(streams [2]transportv1.Transport_ConnectClient) error {
	interval, timeout := ep.m.o.heartbeat, ep.m.o.heartbeatTimeout
	tick := time.NewTicker(interval)
	defer tick.Stop()
	frames := &ep.lanes[batch.LaneSystem].rc.Frames
	seen, heard := frames.Load(), time.Now()
	for {
		select {
		case err := <-ep.down:
			return err
		case now := <-tick.C:
			if n := frames.Load(); n != seen {
				seen, heard = n, now
			} else if now.Sub(heard) >= timeout {
				return fmt.Errorf("%w: nothing for %v", ErrPeerSilent, now.Sub(heard).Round(time.Millisecond))
			}
		case <-ep.ctx.Done():
			if ep.closing.Load() {
				// The writers have stopped: this goroutine may send. Tell the
				// peer, so that it does not take the end for a failure.
				for _, s := range streams {
					if wire.Goodbye(s, "node shutting down") == nil {
						_ = s.CloseSend()
					}
				}
			}
			return ep.ctx.Err()
		}
	}
}

// awaitGoodbyes lets the receive loops of a peer that said goodbye on one
// lane read up to the end of the others before their streams are cancelled.
// A closing peer says goodbye on every lane, each after the lane's last ack:
// cancelling at the first goodbye could drop the other lanes' last acks, and
// what they acknowledged would be dead-lettered as undelivered. The wait is
// bounded by the handshake timeout and by the endpoint's end.
func (ep *endpoint) awaitGoodbyes(wg *sync.WaitGroup) {
	ended := make(chan struct{})
	go func() {
		wg.Wait()
		close(ended)
	}()
	t := time.NewTimer(ep.m.o.handshakeTimeout)
	defer t.Stop()
	select {
	case <-ended:
	case <-t.C:
	case <-ep.ctx.Done():
	}
}

// settle settles with a peer incarnation this endpoint is done with: the
// writers dead-letter what it did not acknowledge, the incarnation is
// quarantined, and the watchers of its processes are told Terminated. It
// returns how many envelopes were dead-lettered. old may be nil: the peer
// was never reached.
func (ep *endpoint) settle(old *Peer) int {
	n := 0
	for i := range ep.lanes {
		reason := writer.ReasonPeerRestarted
		if State(ep.state.Load()) == StateTerminated {
			reason = writer.ReasonEndpointTerminated
		}
		n += max(0, ep.lanes[i].w.Settle(ep.m.ctx, reason))
	}
	p := Peer{Address: ep.address}
	if old != nil {
		p = *old
		if writer.Reason(ep.endReason.Load()) == writer.ReasonBlocked && State(ep.state.Load()) == StateTerminated {
			ep.m.quarantineBlocked(p)
		} else {
			ep.m.quarantine(p)
		}
	}
	ep.m.settleWatches(ep.address, p)
	return n
}

// heartbeatOf is the heartbeat interval of a lane's writer: only the
// control stream beats.
func heartbeatOf(lane batch.Lane, interval time.Duration) time.Duration {
	if lane == batch.LaneSystem {
		return interval
	}
	return 0
}

// open opens one lane's stream in ctx and runs the dialer's handshake on it,
// by the attempt's deadline.
func (ep *endpoint) open(ctx context.Context, client transportv1.TransportClient, lane batch.Lane, deadline time.Time) (*writer.Link, transportv1.Transport_ConnectClient, Peer, error) {
	m := ep.m
	sctx, cancel := context.WithCancel(ctx)
	timer := time.AfterFunc(time.Until(deadline), cancel) // a late Welcome cancels the stream
	if len(m.o.metadata) > 0 {
		sctx = metadata.AppendToOutgoingContext(sctx, m.o.metadata...)
	}
	s, err := client.Connect(sctx, grpc.ForceCodecV2(wire.Codec{}))
	if err == nil {
		var welcome *courierv1.Welcome
		welcome, err = wire.Dial(s, wire.NewHello(m.self(), lane))
		if !timer.Stop() && err == nil {
			err = fmt.Errorf("%w: no welcome within %v: %w", wire.ErrHandshake, m.o.handshakeTimeout, context.DeadlineExceeded)
		}
		if err == nil {
			limits := wire.Negotiated(welcome.GetLimits(), m.o.limits)
			peer := Peer{SystemID: welcome.GetSystemId(), Address: ep.address, Incarnation: welcome.GetIncarnation()}
			// The stream lives until ctx, the connection's context, ends.
			context.AfterFunc(ctx, cancel)
			return &writer.Link{Stream: s, Limits: limits}, s, peer, nil
		}
	}
	timer.Stop()
	cancel()
	return nil, nil, Peer{}, err
}

func (m *Manager) dialOptions() []grpc.DialOption {
	var creds credentials.TransportCredentials = insecure.NewCredentials()
	if m.o.clientCreds != nil {
		creds = m.o.clientCreds
	}
	opts := []grpc.DialOption{
		grpc.WithTransportCredentials(creds),
		grpc.WithDisableRetry(),
		experimental.WithBufferPool(wire.Pool()),
		grpc.WithDefaultCallOptions(
			grpc.MaxCallRecvMsgSize(m.o.limits.MaxFrameBytes+1024),
			grpc.MaxCallSendMsgSize(m.o.limits.MaxFrameBytes+1024),
		),
	}
	if m.o.streamWindow > 0 {
		opts = append(opts, grpc.WithInitialWindowSize(m.o.streamWindow), grpc.WithInitialConnWindowSize(m.o.connWindow))
	}
	if m.o.readBuffer > 0 {
		opts = append(opts, grpc.WithReadBufferSize(m.o.readBuffer))
	}
	if m.o.writeBuffer > 0 {
		opts = append(opts, grpc.WithWriteBufferSize(m.o.writeBuffer))
	}
	return append(opts, m.o.dialOptions...)
}

// serveClient runs a client-only peer's endpoint: its writers use the
// streams the peer opened, handed over by acceptStream. When the peer has
// had no stream for the idle timeout it is gone: the endpoint ends, its
// incarnation is quarantined, and its watchers are told Terminated.
func (ep *endpoint) serveClient() {
	var wg sync.WaitGroup
	defer wg.Wait()
	ended := make(chan struct{})
	attached := 0
	// One idle timer, armed while no stream is attached; idle is its
	// channel then, nil otherwise.
	timer := time.NewTimer(ep.m.o.idleTimeout)
	timer.Stop()
	defer timer.Stop()
	var idle <-chan time.Time
	for {
		select {
		case a := <-ep.attach:
			p := a.peer
			ep.peer.Store(&p)
			if err := ep.lanes[a.lane].w.Attach(a.link); err == nil {
				ep.state.Store(uint32(StateConnected))
			}
			attached++
			if idle != nil {
				if !timer.Stop() {
					// Fired as the stream came: drop the tick, so that a
					// later Reset does not see it (before Go 1.23's
					// timers, Stop left it in the channel).
					select {
					case <-timer.C:
					default:
					}
				}
				idle = nil
			}
			wg.Go(func() {
				select {
				case <-a.closed:
				case <-ep.ctx.Done():
					return
				}
				select {
				case ended <- struct{}{}:
				case <-ep.ctx.Done():
				}
			})
		case <-ended:
			if attached--; attached == 0 {
				timer.Reset(ep.m.o.idleTimeout)
				idle = timer.C
			}
		case <-idle:
			ep.terminate(writer.ReasonEndpointTerminated, fmt.Errorf("%w: client-only peer %s had no stream for %v", ErrIdle, ep.address, ep.m.o.idleTimeout))
			ep.settle(ep.peer.Load())
			ep.m.endpoints.CompareAndDelete(ep.address, ep)
			return
		case <-ep.ctx.Done():
			return
		}
	}
}

// stats returns a snapshot of the endpoint's statistics.
func (ep *endpoint) stats() EndpointStats {
	s := EndpointStats{
		Address:    ep.address,
		State:      State(ep.state.Load()),
		Throttled:  int(ep.throttled.Load()),
		Reconnects: ep.reconnects.Load(),
	}
	if p := ep.peer.Load(); p != nil {
		s.Peer = *p
	}
	for i, ls := range []*LaneStats{&s.User, &s.System} {
		ln := &ep.lanes[i]
		ls.Enqueued = ln.ring.Pushed() // a push the ring accepted is enqueued
		ls.Refused = ln.sc.refused.Load()
		ls.Sent = ln.wc.Sent.Load()
		ls.Acked = ln.wc.Acked.Load()
		ls.Resent = ln.wc.Resent.Load()
		ls.Batches = ln.wc.Batches.Load()
		ls.BytesOut = ln.wc.BytesOut.Load()
		for r := range ls.DeadLettered {
			ls.DeadLettered[r] = ln.wc.DeadLettered[r].Load()
		}
		ls.DeadLettered[writer.ReasonQueueFull] += ln.sc.droppedFull.Load()
		ls.Queued = ln.ring.Len()
		ls.Capacity = ln.ring.Cap()
		ls.Shed, ls.Sheds = !ln.ring.Holding(), ln.wc.Sheds.Load()
		s.BytesIn += ln.rc.BytesIn.Load()
	}
	return s
}
