package bench

import (
	"context"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/courier-go/courier/batch"
	"github.com/courier-go/courier/manager"
)

// counter is a Handler that counts deliveries and wakes a waiter at a
// target count.
type counter struct {
	n      atomic.Int64
	target atomic.Int64
	done   chan struct{}
	mu     sync.Mutex
}

func (c *counter) Deliver(manager.Peer, *manager.Envelope) {
	if n := c.n.Add(1); n == c.target.Load() {
		c.mu.Lock()
		close(c.done)
		c.mu.Unlock()
	}
}

// expect arms the counter to signal when n more envelopes have arrived.
func (c *counter) expect(n int64) <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.done = make(chan struct{})
	c.target.Store(c.n.Load() + n)
	return c.done
}

func pair(b *testing.B, h manager.Handler, opts ...manager.Option) (send, recv *manager.Manager) {
	b.Helper()
	var err error
	recv, err = manager.New(manager.WithListenAddress("127.0.0.1:0"), manager.WithHandler(h))
	if err != nil {
		b.Fatal(err)
	}
	if err := recv.Start(context.Background()); err != nil {
		b.Fatal(err)
	}
	send, err = manager.New(append([]manager.Option{manager.WithHandler(&counter{})}, opts...)...)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = send.Close(ctx)
		_ = recv.Close(ctx)
	})
	return send, recv
}

// BenchmarkEndToEnd sends b.N user envelopes from one node to another in
// the same process over loopback gRPC and waits for all of them to be
// delivered. ns/op is per envelope; MB/s counts payload bytes; allocs/env
// counts every heap allocation in the process (both nodes, gRPC included)
// per envelope.
func BenchmarkEndToEnd(b *testing.B) {
	for _, payload := range []int{64, 1024} {
		for _, senders := range []int{1, 16} {
			b.Run(fmt.Sprintf("payload=%d/senders=%d", payload, senders), func(b *testing.B) {
				h := &counter{}
				send, recv := pair(b, h, manager.WithOverflowPolicy(manager.Block))
				ctx := context.Background()
				body := make([]byte, payload)
				env := manager.Envelope{Target: "worker/1", TypeName: "bench.Msg", SenderID: "sender", Payload: body}
				// Warm up: connect, fill the dictionaries and the pools.
				warm := h.expect(1000)
				for range 1000 {
					if err := send.Send(ctx, recv.Addr(), &env); err != nil {
						b.Fatal(err)
					}
				}
				<-warm

				done := h.expect(int64(b.N))
				var ms0, ms1 runtime.MemStats
				runtime.ReadMemStats(&ms0)
				b.SetBytes(int64(payload))
				b.ResetTimer()
				var wg sync.WaitGroup
				for s := range senders {
					wg.Add(1)
					go func() {
						defer wg.Done()
						e := env
						for i := s; i < b.N; i += senders {
							e.RequestID = uint64(i)
							if err := send.Send(ctx, recv.Addr(), &e); err != nil {
								b.Error(err)
								return
							}
						}
					}()
				}
				wg.Wait()
				<-done
				b.StopTimer()
				runtime.ReadMemStats(&ms1)
				b.ReportMetric(float64(ms1.Mallocs-ms0.Mallocs)/float64(b.N), "allocs/env")
				b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
			})
		}
	}
}

// slowUser delivers system envelopes at once and holds each user envelope
// for a while, as a receiver that cannot keep up.
type slowUser struct {
	latency chan time.Duration
}

func (s *slowUser) Deliver(_ manager.Peer, env *manager.Envelope) {
	if env.Lane == batch.LaneSystem {
		s.latency <- time.Duration(time.Now().UnixNano() - int64(env.RequestID))
		return
	}
	time.Sleep(100 * time.Microsecond)
}

// BenchmarkSystemLatency measures how long system envelopes take from Send
// to delivery while the user lane is saturated: the receiver's user handler
// is slow and four goroutines flood the user lane past its capacity. Each
// op is one system envelope, sent after the previous one arrived; p50, p99
// and max are reported in microseconds.
func BenchmarkSystemLatency(b *testing.B) {
	h := &slowUser{latency: make(chan time.Duration, 1)}
	// Block: the flooding goroutines wait for room, as producers behind a
	// full queue do. (Goroutines that spin on a full DropNewest queue keep
	// both processors busy, and Go then polls the network only from its
	// monitor thread, every 10ms: that measures the scheduler, not the
	// lane.)
	send, recv := pair(b, h, manager.WithOverflowPolicy(manager.Block))
	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			env := manager.Envelope{Target: "user", Payload: make([]byte, 256)}
			for ctx.Err() == nil {
				_ = send.Send(ctx, recv.Addr(), &env)
			}
		}()
	}
	defer func() { stop(); wg.Wait() }()
	sys := manager.Envelope{Target: "system", Lane: batch.LaneSystem, Kind: batch.KindStop}
	lat := make([]time.Duration, 0, b.N)
	time.Sleep(100 * time.Millisecond) // let the flood fill the user lane
	b.ResetTimer()
	for range b.N {
		sys.RequestID = uint64(time.Now().UnixNano())
		if err := send.Send(context.Background(), recv.Addr(), &sys); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, <-h.latency)
	}
	b.StopTimer()
	slices.Sort(lat)
	q := func(p float64) float64 { return float64(lat[int(p*float64(len(lat)-1))].Microseconds()) }
	b.ReportMetric(q(0.5), "p50-µs")
	b.ReportMetric(q(0.99), "p99-µs")
	b.ReportMetric(float64(lat[len(lat)-1].Microseconds()), "max-µs")
	if s, ok := send.Stats(recv.Addr()); ok {
		b.ReportMetric(float64(s.User.Queued), "user-queued")
	}
}
