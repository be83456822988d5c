package peer

import (
	"slices"
	"sync"
	"time"
)

// testClock is a Clock that moves only when the test advances it. Its
// timers behave as the time package's do since Go 1.23: Stop and Reset
// leave no stale tick behind.
type testClock struct {
	mu     sync.Mutex
	now    time.Time
	timers map[*testTimer]struct{} // the armed ones
}

func newTestClock() *testClock {
	return &testClock{now: time.Unix(1_000_000, 0), timers: map[*testTimer]struct{}{}}
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *testClock) NewTimer(d time.Duration) Timer {
	t := &testTimer{c: c, ch: make(chan time.Time, 1)}
	t.Reset(d)
	return t
}

func (c *testClock) AfterFunc(d time.Duration, f func()) Timer {
	t := &testTimer{c: c, f: f}
	t.Reset(d)
	return t
}

// Advance moves the clock by d and fires the timers that are due.
func (c *testClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
	c.fireDue()
}

func (c *testClock) fireDue() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for t := range c.timers {
		if t.when.After(c.now) {
			continue
		}
		delete(c.timers, t)
		if t.f != nil {
			go t.f()
			continue
		}
		select {
		case t.ch <- c.now:
		default:
		}
	}
}

// waiting returns the time left on every armed channel timer, sorted: what
// the endpoint's goroutines wait for (AfterFunc timers are left out).
func (c *testClock) waiting() []time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []time.Duration
	for t := range c.timers {
		if t.f == nil {
			out = append(out, t.when.Sub(c.now))
		}
	}
	slices.Sort(out)
	return out
}

type testTimer struct {
	c    *testClock
	ch   chan time.Time // nil for AfterFunc
	f    func()
	when time.Time
}

func (t *testTimer) C() <-chan time.Time { return t.ch }

func (t *testTimer) Stop() bool {
	t.c.mu.Lock()
	defer t.c.mu.Unlock()
	_, armed := t.c.timers[t]
	delete(t.c.timers, t)
	t.drain()
	return armed
}

func (t *testTimer) Reset(d time.Duration) bool {
	t.c.mu.Lock()
	_, armed := t.c.timers[t]
	t.drain()
	t.when = t.c.now.Add(d)
	t.c.timers[t] = struct{}{}
	t.c.mu.Unlock()
	t.c.fireDue() // d <= 0 fires at once
	return armed
}

// drain drops a tick not yet received; the caller holds c.mu.
func (t *testTimer) drain() {
	if t.ch == nil {
		return
	}
	select {
	case <-t.ch:
	default:
	}
}
