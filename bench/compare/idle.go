package main

import (
	"fmt"
	"io"
	"slices"
	"time"
)

// idleFloor measures how late this machine wakes a thread that has been
// idle, the floor under any latency measured while a receiver sleeps between
// messages, as the priority scenario's does: a 200 µs time.Sleep, and a
// 1-byte TCP ping-pong on loopback after a 1 ms pause (the pause not timed).
// A third probe never sleeps: a goroutine reads the clock in a tight loop
// and records every jump over 1 ms between two reads. No latency measured
// on the machine can be shorter than those jumps, however busy it keeps the
// cores. Each runs for d.
func idleFloor(w io.Writer, d time.Duration) error {
	var sleeps []time.Duration
	for end := time.Now().Add(d); time.Now().Before(end); {
		t := time.Now()
		time.Sleep(200 * time.Microsecond)
		sleeps = append(sleeps, time.Since(t))
	}
	printQuantiles(w, "200µs sleep", sleeps)

	c, err := dialEcho()
	if err != nil {
		return err
	}
	defer c.Close()
	var trips []time.Duration
	b := make([]byte, 1)
	for end := time.Now().Add(d); time.Now().Before(end); {
		time.Sleep(time.Millisecond)
		t := time.Now()
		if _, err := c.Write(b); err != nil {
			return err
		}
		if _, err := io.ReadFull(c, b); err != nil {
			return err
		}
		trips = append(trips, time.Since(t))
	}
	printQuantiles(w, "TCP ping-pong after 1ms idle", trips)

	var gaps []time.Duration
	var lost time.Duration
	prev := time.Now()
	for end := prev.Add(d); prev.Before(end); {
		now := time.Now()
		if g := now.Sub(prev); g > time.Millisecond {
			gaps = append(gaps, g)
			lost += g
		}
		prev = now
	}
	if len(gaps) == 0 {
		fmt.Fprintf(w, "%-30s no gap over 1ms in %v\n", "clock jumps >1ms in a loop", d)
		return nil
	}
	printQuantiles(w, "clock jumps >1ms in a loop", gaps)
	fmt.Fprintf(w, "%-30s %v of %v inside those gaps (%.0f%%)\n", "", lost.Round(time.Millisecond), d, 100*lost.Seconds()/d.Seconds())
	return nil
}

func printQuantiles(w io.Writer, what string, d []time.Duration) {
	slices.Sort(d)
	q := func(f float64) time.Duration { return d[int(f*float64(len(d)-1))].Round(time.Microsecond) }
	fmt.Fprintf(w, "%-30s %6d samples  p50 %-10v p99 %-12v p999 %-12v max %v\n",
		what, len(d), q(0.5), q(0.99), q(0.999), d[len(d)-1].Round(time.Microsecond))
}
