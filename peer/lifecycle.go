package peer

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"time"

	"github.com/courier-go/courier/internal/wire"
	"github.com/courier-go/courier/reader"
	"github.com/courier-go/courier/writer"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/resolver"
	"google.golang.org/grpc/status"
)

// Run is the endpoint's goroutine: it keeps the connection up, reconnecting
// by the policy, or, for a client-only peer, serves the streams the peer
// opens. It returns when the endpoint has stopped: closed, terminated (and
// settled with its peer), or its node's context ended.
func (e *Endpoint) Run() {
	defer close(e.done)
	defer func() {
		for i := range e.lanes {
			<-e.lanes[i].w.Done()
		}
	}()
	if e.cfg.ClientOnly {
		e.serveClient()
		return
	}
	// A terminated endpoint settles with its peer here, in its own
	// goroutine, whoever terminated it: a handler that sends may have.
	defer func() {
		if e.State() == StateTerminated && !e.closing.Load() {
			e.settle(e.peer.Load())
		}
	}()
	e.reconnect()
}

// reconnect is the dialing endpoint's loop: an attempt, then, unless the
// endpoint is done, a wait by the reconnect policy.
func (e *Endpoint) reconnect() {
	b := e.cfg.Reconnect
	attempt := 0
	// failing is when the current run of failed attempts began: the
	// endpoint's start, then each loss of its connection.
	failing := e.clock.Now()
	// bye is the goodbye of a peer that shut down, received at byeAt; nil
	// unless the last connection ended with one.
	var bye error
	var byeAt time.Time
	timer := e.clock.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	for e.ctx.Err() == nil {
		var by time.Time // an attempt's handshakes end by then, if set
		if bye != nil {
			by = byeAt.Add(b.ShutdownGrace)
		}
		up, saidBye, err := e.dial(attempt > 0 || e.reconnects.Load() > 0, by)
		if e.ctx.Err() != nil {
			return
		}
		if e.closing.Load() {
			// Close began and the connection is gone: what is queued can
			// no longer be flushed.
			e.shutdown()
			return
		}
		if reason, cause, final := e.giveUp(up, err); final {
			e.Terminate(reason, cause)
			return
		}
		now := e.clock.Now()
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
			left := b.ShutdownGrace - now.Sub(byeAt)
			if left <= 0 {
				e.Terminate(ReasonPeerShutdown, fmt.Errorf("peer: peer shut down and was not back within %v: %w", b.ShutdownGrace, bye))
				return
			}
			delay = min(b.Delay(1), left)
		case b.MaxAttempts > 0 && attempt > b.MaxAttempts:
			e.Terminate(ReasonEndpointTerminated, fmt.Errorf("gave up after %d attempts: %w", b.MaxAttempts, err))
			return
		case b.MaxElapsed > 0:
			// The last attempt starts when MaxElapsed is up, not later.
			left := b.MaxElapsed - now.Sub(failing)
			if left <= 0 {
				e.Terminate(ReasonEndpointTerminated, fmt.Errorf("gave up after %v of failed attempts: %w", now.Sub(failing).Round(time.Millisecond), err))
				return
			}
			delay = min(delay, left)
		}
		e.state.Store(uint32(StateReconnecting))
		e.emit(Event{Kind: EventReconnecting, Attempt: attempt, Delay: delay, Err: err})
		timer.Reset(delay)
		select {
		case <-timer.C():
		case <-e.closeCtx.Done():
			e.shutdown()
			return
		case <-e.ctx.Done():
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
func (e *Endpoint) giveUp(up bool, err error) (reason Reason, cause error, final bool) {
	var refused *wire.RefusedError
	if errors.As(err, &refused) {
		if errors.Is(err, wire.ErrQuarantined) {
			err = fmt.Errorf("%w: %w", reader.ErrQuarantined, err)
		}
		e.emit(Event{Kind: EventPeerRefused, Err: err})
		switch {
		case errors.Is(err, wire.ErrUnavailable):
			return 0, nil, false
		case errors.Is(err, wire.ErrBlocked):
			return ReasonBlocked, err, true
		case errors.Is(err, reader.ErrQuarantined):
			return ReasonQuarantined, err, true
		}
		return ReasonEndpointTerminated, err, true
	}
	if errors.Is(err, reader.ErrQuarantined) {
		return ReasonQuarantined, err, true
	}
	if !up {
		if dnsErr := e.unresolvable(err); dnsErr != nil {
			return ReasonUnresolvable, fmt.Errorf("peer: %s does not resolve: %w (%w)", e.address, dnsErr, err), true
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
func (e *Endpoint) unresolvable(err error) *net.DNSError {
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
	host := dnsHost(e.address)
	if host == "" {
		return nil
	}
	ctx, cancel := context.WithTimeout(e.ctx, e.cfg.HandshakeTimeout)
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

// settle settles with a peer incarnation this endpoint is done with: the
// writers dead-letter what it did not acknowledge, and the node
// quarantines the incarnation and tells the watchers of its processes. It
// returns how many envelopes were dead-lettered. old may be nil: the peer
// was never reached.
func (e *Endpoint) settle(old *reader.Peer) int {
	n := 0
	for i := range e.lanes {
		reason := ReasonPeerRestarted
		if e.State() == StateTerminated {
			reason = ReasonEndpointTerminated
		}
		n += max(0, e.lanes[i].w.Settle(e.nodeCtx, writer.Reason(reason)))
	}
	e.node.Settled(old, e.State() == StateTerminated && Reason(e.endReason.Load()) == ReasonBlocked)
	return n
}
