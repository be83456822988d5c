package main

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"runtime/pprof"
	"time"

	"github.com/courier-go/courier/manager"
)

// The memory of idle endpoints: the set-up the fan-out scenario starts
// from, and the idle-peers scenario.

// writeHeapProfile writes the heap's live objects to path.
func writeHeapProfile(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := pprof.Lookup("heap").WriteTo(f, 0); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// waitIdle waits until every endpoint to addrs has shed its queues
// (manager.WithIdleRelease), or the idle-release period has passed twice.
func (s *sender) waitIdle(addrs []string) {
	quiet := time.Now().Add(2*manager.DefaultIdleRelease + time.Second)
	for _, a := range addrs {
		for time.Now().Before(quiet) {
			if st, ok := s.m.Stats(a); ok && st.User.Shed && st.System.Shed {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
}

// idlePeers connects one node to many idle peers (all in one child
// process, each with its own listener) with one envelope each, and
// measures the node's heap and goroutines once every endpoint is idle.
func idlePeers(cfg *config, p *progress) (result, error) {
	r := result{Scenario: "idle-peers", Payload: 64, Peers: cfg.idlePeers}
	n, err := startIdle(cfg, cfg.idlePeers, r.Payload)
	if err != nil {
		return r, err
	}
	defer n.close()
	r.Messages, r.Seconds = int64(cfg.idlePeers), n.greeted.Seconds()
	r.HeapBytes, r.Goroutines, r.IdleBytesPerEP = n.heap, runtime.NumGoroutine(), n.idle
	p.done(r.name(), fmt.Sprintf("heap %.0f MiB, %d goroutines", float64(r.HeapBytes)/(1<<20), r.Goroutines))
	return r, nil
}

// idleNode is a sending node with an endpoint to each of a child's peers,
// every endpoint idle, and its heap: before the endpoints, with them idle,
// and per endpoint.
type idleNode struct {
	c           *child
	s           *sender
	heap0, heap uint64
	idle        float64       // heap per endpoint
	greeted     time.Duration // from the first greeting sent to the last delivered
}

// startIdle starts a child with peers nodes and a sending node that greets
// each with one envelope of payload bytes, then waits for every endpoint to
// go idle and shed its queues. With -heapprofile, it writes the heap then.
func startIdle(cfg *config, peers, payload int) (*idleNode, error) {
	c, err := startChild(cfg, peers, 0)
	if err != nil {
		return nil, err
	}
	s, err := newSender(cfg, manager.WithOverflowPolicy(manager.Block))
	if err != nil {
		c.stop()
		return nil, err
	}
	n := &idleNode{c: c, s: s}
	runtime.GC()
	n.heap0 = readUsage().HeapUse
	start := time.Now()
	for _, a := range c.addrs {
		if err := s.m.Send(context.Background(), a, &manager.Envelope{Target: "hello", Payload: make([]byte, payload)}); err != nil {
			n.close()
			return nil, err
		}
	}
	if _, err := s.waitDelivered(c.addrs[0], int64(len(c.addrs)), 60*time.Second); err != nil {
		n.close()
		return nil, err
	}
	n.greeted = time.Since(start)
	s.waitIdle(c.addrs)
	runtime.GC()
	n.heap = readUsage().HeapUse
	// Signed: with few peers the endpoints weigh less than what the
	// collection before them freed, and the difference is noise.
	n.idle = float64(int64(n.heap)-int64(n.heap0)) / float64(len(c.addrs))
	if cfg.heapProfile != "" {
		if err := writeHeapProfile(cfg.heapProfile); err != nil {
			n.close()
			return nil, err
		}
	}
	return n, nil
}

func (n *idleNode) close() {
	n.s.close()
	n.c.stop()
}
