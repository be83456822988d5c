package main

import (
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// burstMessages is how many 64 B messages the burst scenario sends.
const burstMessages = 2_000_000

// burst sends burstMessages 64 B messages from 16 senders as fast as the
// implementation takes them, waits until the receiving process has
// delivered them all, and records that process's resident memory then and
// at its peak: what a receiver pays for a burst it cannot keep up with.
func burst(name string) (sample, error) {
	const senders = 16
	s := sample{Impl: name, Scenario: "burst", Payload: 64, Senders: senders}
	if _, ok := impls[name].(inProcess); ok {
		return s, errSkip
	}
	if _, ok := impls[name].(byteCounter); ok {
		return s, errSkip
	}
	c, snd, done, err := connect(name, 0)
	if err != nil {
		return s, err
	}
	defer done()
	base, err := c.report()
	if err != nil {
		return s, err
	}
	msg := make([]byte, s.Payload)
	var left atomic.Int64
	left.Store(burstMessages)
	var wg sync.WaitGroup
	var firstErr atomic.Value
	start := time.Now()
	for range senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for left.Add(-1) >= 0 {
				if err := snd.send(msg); err != nil {
					firstErr.CompareAndSwap(nil, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if err, _ := firstErr.Load().(error); err != nil {
		return s, err
	}
	if f, ok := snd.(interface{ flush() error }); ok {
		if err := f.flush(); err != nil {
			return s, err
		}
	}
	final, err := waitFor(c, base.Delivered+burstMessages)
	if err != nil {
		return s, err
	}
	s.MsgsPerS = burstMessages / time.Since(start).Seconds()
	s.BytesPerS = s.MsgsPerS * float64(s.Payload)
	s.RSS, s.PeakRSS = final.RSS, final.PeakRSS
	runtime.GC()
	return s, nil
}
