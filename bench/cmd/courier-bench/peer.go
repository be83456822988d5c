package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/courier-go/courier/batch"
	"github.com/courier-go/courier/manager"
)

// The parent process runs the sending node; the receiving nodes run in a
// child process, started from the same executable with -peer, so that one
// node's garbage collector does not pause the other. The child prints its
// addresses on stdout and serves until its stdin closes. The parent talks to
// it through courier itself: a system envelope of type reportType asks for a
// report, which comes back as a system envelope with a JSON payload.

const (
	reportType = "bench.Report"
	resetType  = "bench.Reset"
)

// usage is a process's resource use.
type usage struct {
	CPU     time.Duration `json:"cpu_ns"`
	Mallocs uint64        `json:"mallocs"`
	HeapUse uint64        `json:"heap_inuse"`
}

func readUsage() usage {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return usage{
		CPU:     time.Duration(ru.Utime.Nano() + ru.Stime.Nano()),
		Mallocs: ms.Mallocs,
		HeapUse: ms.HeapInuse,
	}
}

func (u usage) sub(o usage) usage {
	return usage{CPU: u.CPU - o.CPU, Mallocs: u.Mallocs - o.Mallocs, HeapUse: u.HeapUse}
}

// report is what a child sends back.
type report struct {
	Delivered [2]int64 `json:"delivered"` // by lane
	Usage     usage    `json:"usage"`
	Latencies []int64  `json:"latencies_ns,omitempty"` // system lane, since the last reset
}

// peerNode is the child's side: nodes that count what they receive.
type peerNode struct {
	slowUser  time.Duration // how long the user handler takes per envelope
	delivered [2]atomic.Int64
	mu        sync.Mutex
	latencies []int64
	nodes     []*manager.Manager
}

func (p *peerNode) handler(i int) manager.Handler {
	return manager.HandlerFunc(func(from manager.Peer, env *manager.Envelope) {
		if env.Lane == batch.LaneUser {
			p.delivered[batch.LaneUser].Add(1)
			if p.slowUser > 0 {
				time.Sleep(p.slowUser)
			}
			return
		}
		switch env.TypeName {
		case reportType:
			p.report(i, from, env)
			return
		case resetType:
			p.mu.Lock()
			p.latencies = p.latencies[:0]
			p.mu.Unlock()
			return
		}
		lat := time.Now().UnixNano() - int64(env.RequestID)
		p.delivered[batch.LaneSystem].Add(1)
		p.mu.Lock()
		p.latencies = append(p.latencies, lat)
		p.mu.Unlock()
	})
}

func (p *peerNode) report(i int, from manager.Peer, req *manager.Envelope) {
	p.mu.Lock()
	r := report{Usage: readUsage(), Latencies: slices.Clone(p.latencies)}
	p.mu.Unlock()
	r.Delivered[0], r.Delivered[1] = p.delivered[0].Load(), p.delivered[1].Load()
	body, _ := json.Marshal(r)
	reply := &manager.Envelope{Target: req.SenderID, TypeName: reportType, Lane: batch.LaneSystem, RequestID: req.RequestID, Payload: body}
	go func() { // not from the delivering goroutine: Send may wait for room
		_ = p.nodes[i].Send(context.Background(), from.Address, reply)
	}()
}

// runPeer is main for the child process.
func runPeer(cfg *config) error {
	p := &peerNode{slowUser: cfg.peerSlow}
	ctx := context.Background()
	var addrs []string
	for i := range cfg.peerNodes {
		m, err := manager.New(append(cfg.options(), manager.WithListenAddress("127.0.0.1:0"),
			manager.WithSystemID(fmt.Sprintf("bench-peer-%d", i)), manager.WithHandler(p.handler(i)))...)
		if err != nil {
			return err
		}
		if err := m.Start(ctx); err != nil {
			return err
		}
		p.nodes = append(p.nodes, m)
		addrs = append(addrs, m.Addr())
	}
	fmt.Println("ADDR", strings.Join(addrs, ","))
	_, _ = io.Copy(io.Discard, os.Stdin) // until the parent closes stdin or dies
	closeCtx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	for _, m := range p.nodes {
		_ = m.Close(closeCtx)
	}
	return nil
}

// child is a running peer process, seen from the parent.
type child struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	addrs []string
}

// peerProfiles numbers the peer processes' CPU profiles and traces.
var peerProfiles int

// startChild starts a peer process with n nodes whose user handlers take
// slow per envelope.
func startChild(cfg *config, n int, slow time.Duration) (*child, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	args := append([]string{"-peer", fmt.Sprintf("-peer-nodes=%d", n), fmt.Sprintf("-peer-slow=%v", slow)}, cfg.optionFlags()...)
	if cfg.cpuProfile != "" || cfg.tracePath != "" {
		peerProfiles++
	}
	if cfg.cpuProfile != "" {
		args = append(args, fmt.Sprintf("-cpuprofile=%s.peer%d", cfg.cpuProfile, peerProfiles))
	}
	if cfg.tracePath != "" {
		args = append(args, fmt.Sprintf("-trace=%s.peer%d", cfg.tracePath, peerProfiles))
	}
	cmd := exec.Command(exe, args...)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "ADDR ") {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		return nil, fmt.Errorf("peer process did not report its address: %q %v", line, err)
	}
	return &child{cmd: cmd, stdin: stdin, addrs: strings.Split(strings.TrimSpace(line[5:]), ",")}, nil
}

func (c *child) stop() {
	_ = c.stdin.Close()
	done := make(chan struct{})
	go func() { _ = c.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		_ = c.cmd.Process.Kill()
		<-done
	}
}

// reporter asks peers for reports over courier and waits for the answers.
type reporter struct {
	mu      sync.Mutex
	waiting map[uint64]chan report
	next    atomic.Uint64
}

func newReporter() *reporter { return &reporter{waiting: map[uint64]chan report{}} }

// handle takes report envelopes; it is part of the sending node's handler.
func (r *reporter) handle(env *manager.Envelope) {
	if env.TypeName != reportType {
		return
	}
	var rep report
	if err := json.Unmarshal(env.Payload, &rep); err != nil {
		return
	}
	r.mu.Lock()
	ch := r.waiting[env.RequestID]
	delete(r.waiting, env.RequestID)
	r.mu.Unlock()
	if ch != nil {
		ch <- rep
	}
}

// ask sends a report request to addr from m and waits for the answer.
func (r *reporter) ask(m *manager.Manager, addr string) (report, error) {
	id := r.next.Add(1)
	ch := make(chan report, 1)
	r.mu.Lock()
	r.waiting[id] = ch
	r.mu.Unlock()
	req := &manager.Envelope{Target: "bench", SenderID: "bench", TypeName: reportType, Lane: batch.LaneSystem, RequestID: id}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := m.Send(ctx, addr, req); err != nil {
		return report{}, err
	}
	select {
	case rep := <-ch:
		return rep, nil
	case <-ctx.Done():
		return report{}, fmt.Errorf("no report from %s: %w", addr, ctx.Err())
	}
}

// reset clears a peer's latency record.
func reset(m *manager.Manager, addr string) error {
	return m.Send(context.Background(), addr, &manager.Envelope{Target: "bench", TypeName: resetType, Lane: batch.LaneSystem})
}
