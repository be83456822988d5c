// Command courier-bench runs courier's benchmark scenarios on 127.0.0.1 and
// prints a table of the results; it can also write them as JSON and as a
// self-contained SVG chart. The JSON is an object: "provenance" (the commit,
// Go version, platform, every flag's value, cores and start time of the
// run; see bench/internal/provenance) and "results", the table's rows.
//
// Scenarios:
//
//   - throughput: one node sends to a node in a child process as fast as it
//     can; msgs/s, MB/s, CPU and allocations per message of both processes.
//   - priority: the child's user handler is slow and the user lane is flooded
//     past its capacity; system envelopes sent meanwhile are timed from Send
//     to delivery.
//   - fan-out: one node sends to 64 nodes (in a child process): throughput,
//     and heap in use per endpoint, idle and busy.
//   - fan-in: 16 nodes send to one.
//   - idle-peers (not run by default): one node with an endpoint to each of
//     1,000 peers (one child process, a listener each), every endpoint
//     idle: the node's heap in all and its goroutines.
//
// Usage:
//
//	go run ./bench/cmd/courier-bench [flags]
//
// With no flags it runs every scenario in under a minute on two cores. The
// tuning flags carry the names of the manager's options.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"runtime/pprof"
	"runtime/trace"
	"strconv"
	"strings"
	"time"

	"github.com/courier-go/courier/bench/internal/provenance"
	"github.com/courier-go/courier/manager"
)

type config struct {
	scenarios      []string
	duration       time.Duration
	payloads       []int
	senders        []int
	userQueue      int
	systemQueue    int
	batchEnvelopes int
	batchBytes     int
	linger         time.Duration
	compression    int
	overflow       string
	maxFrameBytes  int
	streamWindow   int
	connWindow     int
	readBuffer     int
	writeBuffer    int
	fanOutPeers    []int
	idlePeers      int
	fanInNodes     int
	jsonPath       string
	chartPath      string
	chartFrom      string
	cpuProfile     string
	heapProfile    string
	tracePath      string
	// flags is the parsed flag set, for the provenance of the JSON.
	flags *flag.FlagSet

	peer      bool
	peerNodes int
	peerSlow  time.Duration
}

func parseFlags(args []string) (*config, error) {
	fs := flag.NewFlagSet("courier-bench", flag.ContinueOnError)
	c := &config{flags: fs}
	scenarios := fs.String("scenarios", "throughput,priority,fan-out,fan-in", "scenarios to run, comma-separated")
	payloads := fs.String("payloads", "64,1024,16384", "payload sizes in bytes for throughput, comma-separated")
	senders := fs.String("senders", "1,16", "sending goroutines for throughput, comma-separated")
	fs.DurationVar(&c.duration, "duration", 2*time.Second, "how long each run sends")
	fs.IntVar(&c.userQueue, "user-queue", manager.DefaultUserQueue, "WithUserQueue: user queue capacity per peer, a power of two")
	fs.IntVar(&c.systemQueue, "system-queue", manager.DefaultSystemQueue, "WithSystemQueue: system queue capacity per peer, a power of two")
	fs.IntVar(&c.batchEnvelopes, "batch-envelopes", manager.DefaultBatchEnvelopes, "WithBatchEnvelopes: envelopes per frame at most")
	fs.IntVar(&c.batchBytes, "batch-bytes", manager.DefaultBatchBytes, "WithBatchBytes: bytes per frame at most")
	fs.DurationVar(&c.linger, "linger", 0, "WithLinger: how long a frame that is not full may wait")
	fs.IntVar(&c.compression, "compression", 0, "WithCompression: compress frames from this many bytes; 0 is off")
	fs.StringVar(&c.overflow, "overflow-policy", "block", "WithOverflowPolicy for throughput runs: drop-newest, block or fail")
	fs.IntVar(&c.maxFrameBytes, "max-frame-bytes", 4<<20, "WithMaxFrameBytes")
	windows := fs.String("flow-control-windows", fmt.Sprintf("%d,%d", manager.DefaultStreamWindow, manager.DefaultConnWindow), "WithFlowControlWindows: stream and connection windows in bytes, comma-separated; 0,0 is gRPC's dynamic windows")
	buffers := fs.String("socket-buffers", fmt.Sprintf("%d,%d", manager.DefaultSocketBuffer, manager.DefaultSocketBuffer), "WithSocketBuffers: gRPC's read and write buffer sizes in bytes, comma-separated")
	fanOutPeers := fs.String("fan-out-peers", "64", "peers in the fan-out scenario, comma-separated: a run for each")
	fs.IntVar(&c.idlePeers, "idle-peers", 1000, "peers in the idle-peers scenario (not run by default): one node, an endpoint to each of them, all idle; the node's heap and goroutines")
	fs.IntVar(&c.fanInNodes, "fan-in-nodes", 16, "sending nodes in the fan-in scenario")
	fs.StringVar(&c.jsonPath, "json", "", `write the results as JSON to this file: {"provenance": {commit, Go version, flags, cores, start...}, "results": [...]}`)
	fs.StringVar(&c.chartPath, "chart", "", "write an SVG chart of the results to this file")
	fs.StringVar(&c.chartFrom, "chart-from", "", "run nothing: draw the -chart of the results in this JSON file (one -json wrote)")
	fs.StringVar(&c.cpuProfile, "cpuprofile", "", "write a CPU profile of this process to this file, and one of each peer process to this file with .peerN appended")
	fs.StringVar(&c.heapProfile, "heapprofile", "", "write a heap profile of this process to this file in the fan-out scenario, when its endpoints are idle")
	fs.StringVar(&c.tracePath, "trace", "", "write an execution trace of this process to this file, and one of each peer process to this file with .peerN appended")
	fs.BoolVar(&c.peer, "peer", false, "run as the peer process (internal)")
	fs.IntVar(&c.peerNodes, "peer-nodes", 1, "nodes in the peer process (internal)")
	fs.DurationVar(&c.peerSlow, "peer-slow", 0, "user handler delay in the peer process (internal)")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	c.scenarios = strings.Split(*scenarios, ",")
	var err error
	if c.payloads, err = ints(*payloads); err != nil {
		return nil, fmt.Errorf("-payloads: %w", err)
	}
	if c.senders, err = ints(*senders); err != nil {
		return nil, fmt.Errorf("-senders: %w", err)
	}
	if c.fanOutPeers, err = ints(*fanOutPeers); err != nil {
		return nil, fmt.Errorf("-fan-out-peers: %w", err)
	}
	if c.streamWindow, c.connWindow, err = pair(*windows); err != nil {
		return nil, fmt.Errorf("-flow-control-windows: %w", err)
	}
	if c.readBuffer, c.writeBuffer, err = pair(*buffers); err != nil {
		return nil, fmt.Errorf("-socket-buffers: %w", err)
	}
	for _, s := range c.scenarios {
		switch s {
		case "throughput", "priority", "fan-out", "fan-in", "idle-peers":
		default:
			return nil, fmt.Errorf("-scenarios: unknown scenario %q", s)
		}
	}
	if _, err := manager.ParseOverflowPolicy(c.overflow); err != nil {
		return nil, err
	}
	// Let the library validate the tuning, so that errors read the same.
	m, err := manager.New(append(c.options(), manager.WithHandler(manager.HandlerFunc(func(manager.Peer, *manager.Envelope) {})))...)
	if err != nil {
		return nil, err
	}
	_ = m.Close(context.Background()) // never started: ends its event goroutine
	return c, nil
}

func ints(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n <= 0 {
			return nil, fmt.Errorf("%q is not a positive number", f)
		}
		out = append(out, n)
	}
	return out, nil
}

// pair parses two comma-separated non-negative numbers.
func pair(s string) (int, int, error) {
	a, b, ok := strings.Cut(s, ",")
	x, err1 := strconv.Atoi(strings.TrimSpace(a))
	y, err2 := strconv.Atoi(strings.TrimSpace(b))
	if !ok || err1 != nil || err2 != nil || x < 0 || y < 0 || x > math.MaxInt32 || y > math.MaxInt32 {
		return 0, 0, fmt.Errorf("%q is not two comma-separated numbers", s)
	}
	return x, y, nil
}

// options are the manager options every node of the run uses.
func (c *config) options() []manager.Option {
	opts := []manager.Option{
		manager.WithUserQueue(c.userQueue),
		manager.WithSystemQueue(c.systemQueue),
		manager.WithBatchEnvelopes(c.batchEnvelopes),
		manager.WithBatchBytes(c.batchBytes),
		manager.WithLinger(c.linger),
		manager.WithMaxFrameBytes(c.maxFrameBytes),
		manager.WithFlowControlWindows(int32(c.streamWindow), int32(c.connWindow)),
		manager.WithSocketBuffers(c.readBuffer, c.writeBuffer),
	}
	if c.compression > 0 {
		opts = append(opts, manager.WithCompression(c.compression))
	}
	return opts
}

// optionFlags passes the tuning on to a peer process.
func (c *config) optionFlags() []string {
	return []string{
		fmt.Sprintf("-user-queue=%d", c.userQueue),
		fmt.Sprintf("-system-queue=%d", c.systemQueue),
		fmt.Sprintf("-batch-envelopes=%d", c.batchEnvelopes),
		fmt.Sprintf("-batch-bytes=%d", c.batchBytes),
		fmt.Sprintf("-linger=%v", c.linger),
		fmt.Sprintf("-compression=%d", c.compression),
		fmt.Sprintf("-max-frame-bytes=%d", c.maxFrameBytes),
		fmt.Sprintf("-flow-control-windows=%d,%d", c.streamWindow, c.connWindow),
		fmt.Sprintf("-socket-buffers=%d,%d", c.readBuffer, c.writeBuffer),
	}
}

func main() {
	start := time.Now()
	cfg, err := parseFlags(os.Args[1:])
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0) // -h or -help: the flag set has printed the usage
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "courier-bench:", err)
		os.Exit(2)
	}
	stopProfile, err := startProfiles(cfg.cpuProfile, cfg.tracePath)
	if err != nil {
		fmt.Fprintln(os.Stderr, "courier-bench:", err)
		os.Exit(2)
	}
	if cfg.chartFrom != "" {
		if err := chartFromJSON(cfg.chartFrom, cfg.chartPath); err != nil {
			fmt.Fprintln(os.Stderr, "courier-bench:", err)
			os.Exit(1)
		}
		return
	}
	if cfg.peer {
		err := runPeer(cfg)
		stopProfile()
		if err != nil {
			fmt.Fprintln(os.Stderr, "courier-bench peer:", err)
			os.Exit(1)
		}
		return
	}
	prov := provenance.Collect(cfg.flags, os.Args[1:], start)
	results, err := run(cfg, newProgress(os.Stderr))
	stopProfile()
	printTable(os.Stdout, results)
	if err != nil {
		fmt.Fprintln(os.Stderr, "courier-bench:", err)
		os.Exit(1)
	}
	if cfg.jsonPath != "" {
		if err := writeJSON(cfg.jsonPath, prov, results); err != nil {
			fmt.Fprintln(os.Stderr, "courier-bench:", err)
			os.Exit(1)
		}
	}
	if cfg.chartPath != "" {
		if err := writeChart(cfg.chartPath, results); err != nil {
			fmt.Fprintln(os.Stderr, "courier-bench:", err)
			os.Exit(1)
		}
	}
}

// startProfiles profiles the process's CPU into cpuPath and traces its
// execution into tracePath until the returned func is called. An empty path
// records nothing.
func startProfiles(cpuPath, tracePath string) (stop func(), err error) {
	var files []*os.File
	var stops []func()
	stop = func() {
		for _, s := range stops {
			s()
		}
		for _, f := range files {
			if err := f.Close(); err != nil {
				fmt.Fprintln(os.Stderr, "courier-bench:", err)
			}
		}
	}
	start := func(path string, begin func(io.Writer) error, end func()) error {
		if path == "" {
			return nil
		}
		f, err := os.Create(path)
		if err != nil {
			return err
		}
		files = append(files, f)
		if err := begin(f); err != nil {
			return err
		}
		stops = append(stops, end)
		return nil
	}
	if err := start(cpuPath, pprof.StartCPUProfile, pprof.StopCPUProfile); err != nil {
		stop()
		return nil, err
	}
	if err := start(tracePath, trace.Start, trace.Stop); err != nil {
		stop()
		return nil, err
	}
	return stop, nil
}
