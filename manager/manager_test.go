package manager

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/courier-go/courier/batch"
)

// collector is a Handler that records what it is given.
type collector struct {
	mu   sync.Mutex
	envs []Envelope
	from []Peer
	cond *sync.Cond
}

func newCollector() *collector {
	c := &collector{}
	c.cond = sync.NewCond(&c.mu)
	return c
}

func (c *collector) Deliver(p Peer, env *Envelope) {
	c.mu.Lock()
	c.envs = append(c.envs, env.Clone())
	c.from = append(c.from, p)
	c.cond.Broadcast()
	c.mu.Unlock()
}

// wait waits until n envelopes have arrived or the deadline passes.
func (c *collector) wait(t *testing.T, n int, d time.Duration) []Envelope {
	t.Helper()
	deadline := time.Now().Add(d)
	timer := time.AfterFunc(d, func() { c.mu.Lock(); c.cond.Broadcast(); c.mu.Unlock() })
	defer timer.Stop()
	c.mu.Lock()
	defer c.mu.Unlock()
	for len(c.envs) < n && time.Now().Before(deadline) {
		c.cond.Wait()
	}
	if len(c.envs) < n {
		t.Fatalf("got %d envelopes within %v, want %d", len(c.envs), d, n)
	}
	return append([]Envelope(nil), c.envs...)
}

func newNode(t *testing.T, h Handler, opts ...Option) *Manager {
	t.Helper()
	m, err := New(append([]Option{WithListenAddress("127.0.0.1:0"), WithHandler(h)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = m.Close(ctx)
	})
	return m
}

func TestTwoNodesInOrder(t *testing.T) {
	recv := newCollector()
	a := newNode(t, newCollector(), WithSystemID("a"), WithOverflowPolicy(Block))
	b := newNode(t, recv, WithSystemID("b"))
	const n = 5000
	for i := range n {
		env := &Envelope{Target: "actor/" + strconv.Itoa(i%7), TypeName: "T", Payload: []byte(fmt.Sprint(i))}
		if err := a.Send(context.Background(), b.Addr(), env); err != nil {
			t.Fatal(err)
		}
	}
	got := recv.wait(t, n, 20*time.Second)
	for i, e := range got {
		if string(e.Payload) != fmt.Sprint(i) || e.Target != "actor/"+strconv.Itoa(i%7) || e.Lane != batch.LaneUser {
			t.Fatalf("envelope %d: %+v", i, e)
		}
	}
	if recv.from[0].SystemID != "a" || recv.from[0].Address != a.Addr() {
		t.Fatalf("peer %+v", recv.from[0])
	}
}
