package manager

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"time"
)

// Backoff is the reconnect policy of an endpoint whose connection failed
// (or that could not connect at all): attempt n (from 1) waits Initial ×
// Multiplier^(n-1), capped at Max, then spread by ±Jitter of itself. After
// MaxAttempts failed attempts in a row, or once the endpoint has spent
// MaxElapsed trying, it is terminated, dead-lettering what it holds, and the
// watchers of the peer's processes are told Terminated.
//
// A peer that shut down cleanly (it said goodbye) is not reconnected with
// this policy: its endpoint dials it every Initial for PeerShutdownGrace, in
// case it restarts on the same address, then gives up. A refusal other than
// "unavailable", and a host that does not resolve, end the endpoint at once.
type Backoff struct {
	// Initial is the delay before the first reconnect attempt. Default
	// 50ms; at least 1ms.
	Initial time.Duration
	// Max caps the delay. Default 5s; at least Initial.
	Max time.Duration
	// Multiplier grows the delay from one attempt to the next. Default 2;
	// at least 1.
	Multiplier float64
	// Jitter spreads each delay by up to this fraction of it, either way,
	// so that many nodes do not reconnect in step. Default 0.2; [0, 1].
	Jitter float64
	// MaxAttempts is how many attempts in a row may fail before the
	// endpoint gives up. Default 10; 0 means no bound.
	MaxAttempts int
	// MaxElapsed bounds the time an endpoint spends reconnecting, from the
	// loss of its connection (or from its creation, if it never connected):
	// the last attempt starts by then, and the endpoint gives up when it
	// fails. An attempt takes up to the handshake timeout. Default 10s; 0
	// means no bound (a Backoff literal that leaves it out has none);
	// otherwise at least Initial.
	MaxElapsed time.Duration
}

// PeerShutdownGrace is how long an endpoint whose peer shut down cleanly
// (said goodbye) goes on dialing it, every Backoff.Initial, before it
// gives up: a node that restarts on the same address within it is reached
// again (as a new incarnation); otherwise the endpoint terminates with
// reason "peer shut down", and the watchers of the peer's processes are
// told Terminated.
const PeerShutdownGrace = time.Second

// DefaultBackoff returns the default reconnect policy.
func DefaultBackoff() Backoff {
	return Backoff{Initial: 50 * time.Millisecond, Max: 5 * time.Second, Multiplier: 2, Jitter: 0.2, MaxAttempts: 10,
		MaxElapsed: 10 * time.Second}
}

// WithReconnect sets the reconnect policy. Default: DefaultBackoff.
func WithReconnect(b Backoff) Option {
	return optionFunc(func(o *options) { o.reconnect = b })
}

func (b Backoff) validate() error {
	var errs []error
	if b.Initial < time.Millisecond {
		errs = append(errs, fmt.Errorf("Initial %v: want at least 1ms", b.Initial))
	}
	if b.Max < b.Initial {
		errs = append(errs, fmt.Errorf("Max %v: want at least Initial %v", b.Max, b.Initial))
	}
	if b.Multiplier < 1 || math.IsNaN(b.Multiplier) || math.IsInf(b.Multiplier, 0) {
		errs = append(errs, fmt.Errorf("Multiplier %v: want at least 1", b.Multiplier))
	}
	if b.Jitter < 0 || b.Jitter > 1 || math.IsNaN(b.Jitter) {
		errs = append(errs, fmt.Errorf("Jitter %v: want [0, 1]", b.Jitter))
	}
	if b.MaxAttempts < 0 {
		errs = append(errs, fmt.Errorf("MaxAttempts %d: want >= 0", b.MaxAttempts))
	}
	if b.MaxElapsed != 0 && b.MaxElapsed < b.Initial {
		errs = append(errs, fmt.Errorf("MaxElapsed %v: want 0 (no bound) or at least Initial %v", b.MaxElapsed, b.Initial))
	}
	return errors.Join(errs...)
}

// Delay returns the wait before attempt n (from 1).
func (b Backoff) Delay(n int) time.Duration {
	d := float64(b.Initial) * math.Pow(b.Multiplier, float64(max(n-1, 0)))
	d = min(d, float64(b.Max))
	if b.Jitter > 0 {
		d += d * b.Jitter * (2*rand.Float64() - 1)
	}
	return time.Duration(max(d, 0))
}
