package main

import (
	"context"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/courier-go/courier/batch"
	"github.com/courier-go/courier/manager"
)

// result is one run of one scenario.
type result struct {
	Scenario string  `json:"scenario"`
	Payload  int     `json:"payload_bytes,omitempty"`
	Senders  int     `json:"senders,omitempty"`
	Peers    int     `json:"peers,omitempty"`
	Messages int64   `json:"messages"`
	Seconds  float64 `json:"seconds"`
	MsgsPerS float64 `json:"msgs_per_s"`
	MBPerS   float64 `json:"mb_per_s"`
	// CPU and allocations per delivered message, sending and receiving
	// process together.
	CPUPerMsgUS    float64   `json:"cpu_us_per_msg,omitempty"`
	AllocsPerMsg   float64   `json:"allocs_per_msg,omitempty"`
	SendAllocsPer  float64   `json:"send_allocs_per_msg,omitempty"`
	RecvAllocsPer  float64   `json:"recv_allocs_per_msg,omitempty"`
	Dropped        int64     `json:"dropped,omitempty"`
	LatencyP50US   float64   `json:"latency_p50_us,omitempty"`
	LatencyP99US   float64   `json:"latency_p99_us,omitempty"`
	LatencyP999US  float64   `json:"latency_p999_us,omitempty"`
	LatencyMaxUS   float64   `json:"latency_max_us,omitempty"`
	LatenciesUS    []float64 `json:"latencies_us,omitempty"` // in the order of delivery
	IdleBytesPerEP float64   `json:"idle_bytes_per_endpoint,omitempty"`
	BusyBytesPerEP float64   `json:"busy_bytes_per_endpoint,omitempty"`
	// EnvPerFrame is the envelopes a user-lane frame carried on average.
	EnvPerFrame float64 `json:"envelopes_per_frame,omitempty"`
	// The idle-peers scenario: the sending node's heap in use in total, and
	// its goroutines, with every endpoint idle.
	HeapBytes  uint64 `json:"heap_bytes,omitempty"`
	Goroutines int    `json:"goroutines,omitempty"`
}

func (r *result) name() string {
	switch r.Scenario {
	case "throughput":
		return fmt.Sprintf("throughput payload=%d senders=%d", r.Payload, r.Senders)
	case "fan-out":
		return fmt.Sprintf("fan-out peers=%d senders=%d", r.Peers, r.Senders)
	case "fan-in":
		return fmt.Sprintf("fan-in nodes=%d", r.Senders)
	case "idle-peers":
		return fmt.Sprintf("idle-peers peers=%d", r.Peers)
	}
	return r.Scenario
}

func run(cfg *config, p *progress) ([]result, error) {
	var results []result
	for _, s := range cfg.scenarios {
		switch s {
		case "throughput":
			for _, payload := range cfg.payloads {
				for _, senders := range cfg.senders {
					r, err := throughput(cfg, p, payload, senders)
					if err != nil {
						return results, fmt.Errorf("throughput payload=%d senders=%d: %w", payload, senders, err)
					}
					results = append(results, r)
				}
			}
		case "priority":
			r, err := priority(cfg, p)
			if err != nil {
				return results, fmt.Errorf("priority: %w", err)
			}
			results = append(results, r)
		case "fan-out":
			for _, peers := range cfg.fanOutPeers {
				r, err := fanOut(cfg, p, peers)
				if err != nil {
					return results, fmt.Errorf("fan-out peers=%d: %w", peers, err)
				}
				results = append(results, r)
			}
		case "idle-peers":
			r, err := idlePeers(cfg, p)
			if err != nil {
				return results, fmt.Errorf("idle-peers: %w", err)
			}
			results = append(results, r)
		case "fan-in":
			r, err := fanIn(cfg, p)
			if err != nil {
				return results, fmt.Errorf("fan-in: %w", err)
			}
			results = append(results, r)
		}
	}
	return results, nil
}

// sender is the sending node of a run, with its report channel.
type sender struct {
	m   *manager.Manager
	rep *reporter
}

func newSender(cfg *config, opts ...manager.Option) (*sender, error) {
	rep := newReporter()
	m, err := manager.New(append(append(cfg.options(),
		manager.WithHandler(manager.HandlerFunc(func(_ manager.Peer, env *manager.Envelope) { rep.handle(env) }))), opts...)...)
	if err != nil {
		return nil, err
	}
	return &sender{m: m, rep: rep}, nil
}

func (s *sender) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = s.m.Close(ctx)
}

// waitDelivered polls the peer at addr until it has delivered want user
// envelopes, and returns its last report.
func (s *sender) waitDelivered(addr string, want int64, timeout time.Duration) (report, error) {
	deadline := time.Now().Add(timeout)
	for {
		rep, err := s.rep.ask(s.m, addr)
		if err != nil {
			return rep, err
		}
		if rep.Delivered[batch.LaneUser] >= want {
			return rep, nil
		}
		if time.Now().After(deadline) {
			return rep, fmt.Errorf("peer delivered %d of %d within %v", rep.Delivered[batch.LaneUser], want, timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// flood sends user envelopes from n goroutines to the addresses, round
// robin, until stop closes; it counts what Send accepted in sent.
func flood(m *manager.Manager, addrs []string, n, payload int, sent *atomic.Int64, stop <-chan struct{}) *sync.WaitGroup {
	var wg sync.WaitGroup
	// A Send blocked on a full queue gives up at stop: a slow receiver
	// would otherwise hold the flood, and the scenario's end, until it
	// had made room.
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		<-stop
		cancel()
	}()
	for g := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			env := manager.Envelope{Target: fmt.Sprintf("worker/%d", g), TypeName: "bench.Msg", SenderID: "bench", Payload: make([]byte, payload)}
			for i := g; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				env.RequestID = uint64(i)
				if err := m.Send(ctx, addrs[i%len(addrs)], &env); err == nil {
					sent.Add(1)
				}
			}
		}()
	}
	return &wg
}

// enqueued sums the user envelopes the node accepted for the addresses.
func enqueued(m *manager.Manager, addrs []string) (n int64, dropped int64) {
	for _, a := range addrs {
		if s, ok := m.Stats(a); ok {
			n += int64(s.User.Enqueued)
			dropped += int64(s.User.DeadLettered[manager.ReasonQueueFull])
		}
	}
	return n, dropped
}

// frames is the number of user-lane frames sent to addrs so far.
func frames(m *manager.Manager, addrs []string) (n uint64) {
	for _, a := range addrs {
		if s, ok := m.Stats(a); ok {
			n += s.User.Batches
		}
	}
	return n
}

func throughput(cfg *config, p *progress, payload, senders int) (result, error) {
	r := result{Scenario: "throughput", Payload: payload, Senders: senders}
	policy, _ := manager.ParseOverflowPolicy(cfg.overflow)
	c, err := startChild(cfg, 1, 0)
	if err != nil {
		return r, err
	}
	defer c.stop()
	s, err := newSender(cfg, manager.WithOverflowPolicy(policy))
	if err != nil {
		return r, err
	}
	defer s.close()
	return measure(cfg, p, r, s, c.addrs, senders)
}

// measure warms up, sends for the configured duration, waits for delivery
// and fills in the rates and costs of r.
func measure(cfg *config, p *progress, r result, s *sender, addrs []string, senders int) (result, error) {
	payload := r.Payload
	// Warm up: connect, fill the dictionaries and the pools.
	var warm atomic.Int64
	stop := make(chan struct{})
	wg := flood(s.m, addrs, senders, payload, &warm, stop)
	time.Sleep(min(cfg.duration/4, 500*time.Millisecond))
	close(stop)
	wg.Wait()
	want, _ := enqueued(s.m, addrs)
	base, err := s.waitDelivered(addrs[0], want, 30*time.Second)
	if err != nil {
		return r, fmt.Errorf("warm-up: %w", err)
	}
	runtime.GC()
	u0 := readUsage()
	_, dropped0 := enqueued(s.m, addrs)
	frames0 := frames(s.m, addrs)

	var sent atomic.Int64
	stop = make(chan struct{})
	start := time.Now()
	wg = flood(s.m, addrs, senders, payload, &sent, stop)
	p.run(r.name(), cfg.duration, func() float64 { return float64(sent.Load()) })
	close(stop)
	wg.Wait()
	want, dropped1 := enqueued(s.m, addrs)
	final, err := s.waitDelivered(addrs[0], want, 60*time.Second)
	if err != nil {
		return r, err
	}
	elapsed := time.Since(start)
	u1 := readUsage()

	n := final.Delivered[batch.LaneUser] - base.Delivered[batch.LaneUser]
	r.Messages = n
	r.Seconds = elapsed.Seconds()
	r.MsgsPerS = float64(n) / elapsed.Seconds()
	r.MBPerS = r.MsgsPerS * float64(payload) / 1e6
	if n > 0 {
		send, recv := u1.sub(u0), final.Usage.sub(base.Usage)
		r.CPUPerMsgUS = float64((send.CPU + recv.CPU).Microseconds()) / float64(n)
		r.SendAllocsPer = float64(send.Mallocs) / float64(n)
		r.RecvAllocsPer = float64(recv.Mallocs) / float64(n)
		r.AllocsPerMsg = r.SendAllocsPer + r.RecvAllocsPer
	}
	r.Dropped = dropped1 - dropped0
	if f := frames(s.m, addrs) - frames0; f > 0 {
		r.EnvPerFrame = float64(n) / float64(f)
	}
	p.done(r.name(), fmt.Sprintf("%.0f msgs/s", r.MsgsPerS))
	return r, nil
}

func priority(cfg *config, p *progress) (result, error) {
	r := result{Scenario: "priority", Payload: 1024, Senders: 4}
	c, err := startChild(cfg, 1, 200*time.Microsecond) // a slow user handler
	if err != nil {
		return r, err
	}
	defer c.stop()
	// The flood blocks on the full user queue rather than spinning on
	// dead letters: the lane is saturated past its capacity, and the
	// sending process keeps CPU for the system lane, as an application
	// would.
	s, err := newSender(cfg, manager.WithOverflowPolicy(manager.Block))
	if err != nil {
		return r, err
	}
	defer s.close()
	addr := c.addrs[0]
	if _, err := s.rep.ask(s.m, addr); err != nil { // connect
		return r, err
	}

	var sent atomic.Int64
	stop := make(chan struct{})
	wg := flood(s.m, []string{addr}, r.Senders, r.Payload, &sent, stop)
	time.Sleep(200 * time.Millisecond) // the user lane fills
	if err := reset(s.m, addr); err != nil {
		return r, err
	}
	// System envelopes, one per millisecond, timed from Send to delivery.
	var system atomic.Int64
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
		env := manager.Envelope{Target: "watcher", Lane: batch.LaneSystem, Kind: batch.KindStop}
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			env.RequestID = uint64(time.Now().UnixNano())
			if s.m.Send(context.Background(), addr, &env) == nil {
				system.Add(1)
			}
		}
	}()
	p.run(r.name(), cfg.duration*2, func() float64 { return float64(system.Load()) })
	close(stop)
	wg.Wait()
	<-done
	time.Sleep(50 * time.Millisecond) // the last system envelopes land
	rep, err := s.rep.ask(s.m, addr)
	if err != nil {
		return r, err
	}
	lat := rep.Latencies
	if len(lat) == 0 {
		return r, fmt.Errorf("no system envelope was delivered")
	}
	for _, l := range lat {
		r.LatenciesUS = append(r.LatenciesUS, float64(l)/1e3)
	}
	slices.Sort(lat)
	q := func(f float64) float64 { return float64(lat[int(f*float64(len(lat)-1))]) / 1e3 }
	r.Messages = int64(len(lat))
	r.LatencyP50US, r.LatencyP99US, r.LatencyP999US = q(0.5), q(0.99), q(0.999)
	r.LatencyMaxUS = float64(lat[len(lat)-1]) / 1e3
	st, _ := s.m.Stats(addr)
	r.Dropped = int64(st.User.DeadLettered[manager.ReasonQueueFull])
	p.done(r.name(), fmt.Sprintf("p99 %.0fµs over %d system envelopes", r.LatencyP99US, len(lat)))
	return r, nil
}

func fanOut(cfg *config, p *progress, peers int) (result, error) {
	r := result{Scenario: "fan-out", Payload: 64, Senders: 16, Peers: peers}
	n, err := startIdle(cfg, peers, r.Payload)
	if err != nil {
		return r, err
	}
	defer n.close()
	c, s, heap0 := n.c, n.s, n.heap0
	r.IdleBytesPerEP = n.idle

	var busy atomic.Uint64
	stopSample := make(chan struct{})
	go func() { // sample the heap while busy
		for {
			select {
			case <-stopSample:
				return
			case <-time.After(100 * time.Millisecond):
				if h := readUsage().HeapUse; h > busy.Load() {
					busy.Store(h)
				}
			}
		}
	}()
	r2, err := measure(cfg, p, r, s, c.addrs, r.Senders)
	close(stopSample)
	if b := busy.Load(); b > heap0 {
		r2.BusyBytesPerEP = float64(b-heap0) / float64(len(c.addrs))
	}
	return r2, err
}

func fanIn(cfg *config, p *progress) (result, error) {
	r := result{Scenario: "fan-in", Payload: 64, Senders: cfg.fanInNodes}
	c, err := startChild(cfg, 1, 0)
	if err != nil {
		return r, err
	}
	defer c.stop()
	addr := c.addrs[0]
	var nodes []*sender
	defer func() {
		for _, n := range nodes {
			n.close()
		}
	}()
	for range cfg.fanInNodes {
		n, err := newSender(cfg, manager.WithOverflowPolicy(manager.Block))
		if err != nil {
			return r, err
		}
		nodes = append(nodes, n)
	}
	base, err := nodes[0].rep.ask(nodes[0].m, addr)
	if err != nil {
		return r, err
	}
	u0 := readUsage()
	var sent atomic.Int64
	stop := make(chan struct{})
	start := time.Now()
	var wgs []*sync.WaitGroup
	for _, n := range nodes {
		wgs = append(wgs, flood(n.m, []string{addr}, 1, r.Payload, &sent, stop))
	}
	p.run(r.name(), cfg.duration, func() float64 { return float64(sent.Load()) })
	close(stop)
	var want int64 = base.Delivered[batch.LaneUser]
	for i, wg := range wgs {
		wg.Wait()
		e, _ := enqueued(nodes[i].m, []string{addr})
		want += e
	}
	final, err := nodes[0].waitDelivered(addr, want, 60*time.Second)
	if err != nil {
		return r, err
	}
	elapsed := time.Since(start)
	n := final.Delivered[batch.LaneUser] - base.Delivered[batch.LaneUser]
	r.Messages = n
	r.Seconds = elapsed.Seconds()
	r.MsgsPerS = float64(n) / elapsed.Seconds()
	r.MBPerS = r.MsgsPerS * float64(r.Payload) / 1e6
	if n > 0 {
		send, recv := readUsage().sub(u0), final.Usage.sub(base.Usage)
		r.CPUPerMsgUS = float64((send.CPU + recv.CPU).Microseconds()) / float64(n)
		r.SendAllocsPer = float64(send.Mallocs) / float64(n)
		r.RecvAllocsPer = float64(recv.Mallocs) / float64(n)
		r.AllocsPerMsg = r.SendAllocsPer + r.RecvAllocsPer
	}
	p.done(r.name(), fmt.Sprintf("%.0f msgs/s", r.MsgsPerS))
	return r, nil
}
