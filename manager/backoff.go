package manager

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"time"
)

// Backoff is the reconnect policy of an endpoint whose connection failed:
// attempt n (from 1) waits Initial × Multiplier^(n-1), capped at Max, then
// spread by ±Jitter of itself. After MaxAttempts failed attempts in a row
// the endpoint is terminated, dead-lettering what it holds.
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
	// endpoint gives up. Default 10; 0 means never give up.
	MaxAttempts int
}

// DefaultBackoff returns the default reconnect policy.
func DefaultBackoff() Backoff {
	return Backoff{Initial: 50 * time.Millisecond, Max: 5 * time.Second, Multiplier: 2, Jitter: 0.2, MaxAttempts: 10}
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
