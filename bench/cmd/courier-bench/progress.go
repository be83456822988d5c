package main

import (
	"fmt"
	"io"
	"os"
	"time"
)

// progress shows what runs: on a terminal, one line rewritten in place;
// otherwise, plain lines, one a second.
type progress struct {
	w        io.Writer
	terminal bool
}

func newProgress(f *os.File) *progress {
	st, err := f.Stat()
	return &progress{w: f, terminal: err == nil && st.Mode()&os.ModeCharDevice != 0}
}

// run shows scenario's progress for d: elapsed time and the current rate
// of count, per second.
func (p *progress) run(scenario string, d time.Duration, count func() float64) {
	start := time.Now()
	every := time.Second
	if p.terminal {
		every = 200 * time.Millisecond
	}
	tick := time.NewTicker(every)
	defer tick.Stop()
	lastN, lastT := count(), start
	deadline := time.NewTimer(d)
	defer deadline.Stop()
	for {
		select {
		case <-deadline.C:
			if p.terminal {
				fmt.Fprint(p.w, "\r\033[K")
			}
			return
		case now := <-tick.C:
			n := count()
			rate := (n - lastN) / now.Sub(lastT).Seconds()
			lastN, lastT = n, now
			line := fmt.Sprintf("%-40s %5.1fs  %12.0f/s", scenario, now.Sub(start).Seconds(), rate)
			if p.terminal {
				fmt.Fprint(p.w, "\r\033[K"+line)
			} else {
				fmt.Fprintln(p.w, line)
			}
		}
	}
}

// done reports a finished run.
func (p *progress) done(scenario, summary string) {
	fmt.Fprintf(p.w, "%-40s done: %s\n", scenario, summary)
}
