// Command compare runs courier and the references it is measured against on
// the same machine, in the same way, interleaved, and prints one table with
// the ratios to courier:
//
//   - courier;
//   - protoactor-go remote, with its default settings and with its batch
//     size as large as courier's;
//   - raw gRPC: a bidi stream, one message per SendMsg, stock protobuf;
//   - lean batched gRPC: the same messages encoded one by one with stock
//     protobuf and packed a thousand per SendMsg;
//   - gRPC's ceiling: one stream carrying ready-made messages of courier's
//     frame size through a codec that passes bytes through (bytes/s only),
//     the most gRPC's transport carries;
//   - raw TCP: one connection writing 64 KiB buffers (bytes/s only), the
//     ceiling of loopback.
//
// The receiving side of each runs in a child process. Each implementation
// runs once per round, rounds interleaved; the table shows medians and the
// spread (min–max). It lives in its own module so that courier never
// depends on what it is compared with.
//
//	cd bench/compare && go run . [-rounds 3] [-duration 2s] [-json results.json]
//
// With -baseline REV, the implementations -baseline-impls names are also
// built from commit REV (a git worktree, removed at the end) and run once
// per round next to the current tree's, alternating which goes first, with
// the same flags: their rows are named impl@commit, and the ratio columns
// read as the current tree over the baseline. With -cpuprofile, the
// baseline's profiles are written with ".baseline" appended.
//
//	cd bench/compare && go run . -baseline main~3 -impls courier -scenarios throughput -payloads 64
//
// The JSON file is an object: "provenance" (the commit, Go version,
// platform, every flag's value, cores and start time of the run; see
// bench/internal/provenance) and "samples", one per implementation, job and
// round. The older files in results/ (2026-11-28-2vcpu.json and the
// 2026-12-03 ones) hold the samples alone, as a top-level array.
package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"runtime/trace"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/courier-go/courier/bench/internal/provenance"
)

// impl is one implementation under comparison.
type impl interface {
	name() string
	// serve runs in the child process: it listens on 127.0.0.1:0, counts
	// delivered messages in delivered, and returns its address. A slow
	// receiver sleeps that long per message.
	serve(slow time.Duration) (addr string, err error)
	// dial runs in the parent: a sender to addr whose send may be called
	// from many goroutines.
	dial(addr string) (sender, error)
}

type sender interface {
	send(payload []byte) error
	close()
}

// prober is an implementation that can time control signals while its
// data path is flooded: it returns one latency per probe.
// A probe that gets no answer within timeout counts as timeout and ends
// the probing with errProbeTimeout: what waits behind a flood may wait for
// minutes.
type prober interface {
	probe(s sender, n int, timeout time.Duration) (map[string][]time.Duration, error)
}

// byteCounter is a ceiling: one writer, whose sends each move unit bytes
// and whose receiver counts bytes, not messages.
type byteCounter interface{ unit() int64 }

var errProbeTimeout = errors.New("probe timed out")

// oneWayProbe names the latencies the child measured, from the sender's
// Send to delivery in the child: the definition of the priority
// figure. A round trip adds the answer's way back.
const oneWayProbe = "system Send → delivery"

// probeTimeout bounds each control probe.
const probeTimeout = 5 * time.Second

// probeGap is the pause between two control probes.
const probeGap = 10 * time.Millisecond

var impls = map[string]impl{}

var traceFile, cpuProfile *string

// startTrace writes an execution trace to path until the returned stop.
func startTrace(path string) (stop func(), err error) {
	return startProfile(path, trace.Start, trace.Stop)
}

// startCPUProfile writes a CPU profile to path until the returned stop.
func startCPUProfile(path string) (stop func(), err error) {
	return startProfile(path, pprof.StartCPUProfile, pprof.StopCPUProfile)
}

// startProfile creates path and writes a profile to it from start until
// the returned stop.
func startProfile(path string, start func(io.Writer) error, end func()) (stop func(), err error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	if err := start(f); err != nil {
		f.Close()
		return nil, err
	}
	return func() { end(); f.Close() }, nil
}

func register(i impl) { impls[i.name()] = i }

var delivered atomic.Int64 // in the child

// oneWay holds, in the child, how long the probes that carry their send
// time took from the sender's Send to delivery here; a report takes them.
var oneWay struct {
	sync.Mutex
	lat []int64
}

// arrived records a one-way probe sent at sentNanos (Unix nanoseconds: both
// processes read the same clock).
func arrived(sentNanos int64) {
	d := time.Now().UnixNano() - sentNanos
	oneWay.Lock()
	oneWay.lat = append(oneWay.lat, d)
	oneWay.Unlock()
}

type usage struct {
	Delivered int64   `json:"delivered"`
	CPU       int64   `json:"cpu_ns"`
	Mallocs   uint64  `json:"mallocs"`
	OneWay    []int64 `json:"one_way_ns,omitempty"` // since the last report
	// RSS is the process's resident set now and PeakRSS its most, in bytes.
	RSS     int64 `json:"rss"`
	PeakRSS int64 `json:"peak_rss"`
}

// peakResidentBytes reads the process's peak resident set size (VmHWM)
// from /proc, 0 where there is none. getrusage's maxrss would not do: a
// child process inherits its parent's across fork and exec.
func peakResidentBytes() int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			var kib int64
			if _, err := fmt.Sscan(rest, &kib); err == nil {
				return kib << 10
			}
		}
	}
	return 0
}

// residentBytes reads the process's resident set size from /proc, 0 where
// there is none.
func residentBytes() int64 {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0
	}
	var size, resident int64
	if _, err := fmt.Sscan(string(b), &size, &resident); err != nil {
		return 0
	}
	return resident * int64(os.Getpagesize())
}

func readUsage() usage {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	oneWay.Lock()
	lat := oneWay.lat
	oneWay.lat = nil
	oneWay.Unlock()
	return usage{Delivered: delivered.Load(), CPU: ru.Utime.Nano() + ru.Stime.Nano(), Mallocs: ms.Mallocs, OneWay: lat,
		RSS: residentBytes(), PeakRSS: peakResidentBytes()}
}

// child side: serve, print the address, answer "report" lines on stdin with
// a usage line on stdout, exit when stdin closes.
func runChild(name string, slow time.Duration) error {
	im, ok := impls[name]
	if !ok {
		return fmt.Errorf("unknown implementation %q", name)
	}
	addr, err := im.serve(slow)
	if err != nil {
		return err
	}
	fmt.Println("ADDR", addr)
	in := bufio.NewScanner(os.Stdin)
	out := json.NewEncoder(os.Stdout)
	for in.Scan() {
		if in.Text() == "report" {
			_ = out.Encode(readUsage())
		}
	}
	return nil
}

type child struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	out   *bufio.Reader
	addr  string
}

func startChild(name string, slow time.Duration) (*child, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	args := []string{"-child", name, fmt.Sprintf("-child-slow=%v", slow)}
	if *cpuProfile != "" {
		args = append(args, "-cpuprofile", *cpuProfile+".child")
	}
	if *traceFile != "" {
		args = append(args, "-trace", *traceFile+".child")
	}
	cmd := exec.Command(exe, args...)
	cmd.Stderr = os.Stderr
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	c := &child{cmd: cmd, stdin: stdin, out: bufio.NewReader(stdout)}
	line, err := c.out.ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "ADDR ") {
		c.stop()
		return nil, fmt.Errorf("%s: child did not start: %q %v", name, line, err)
	}
	c.addr = strings.TrimSpace(line[5:])
	return c, nil
}

func (c *child) report() (usage, error) {
	var u usage
	if _, err := io.WriteString(c.stdin, "report\n"); err != nil {
		return u, err
	}
	line, err := c.out.ReadString('\n')
	if err != nil {
		return u, err
	}
	return u, json.Unmarshal([]byte(line), &u)
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

// sample is one run of one implementation.
type sample struct {
	Impl      string                   `json:"impl"`
	Scenario  string                   `json:"scenario"`
	Payload   int                      `json:"payload"`
	Senders   int                      `json:"senders"`
	MsgsPerS  float64                  `json:"msgs_per_s"`
	BytesPerS float64                  `json:"bytes_per_s"`
	CPUPerMsg float64                  `json:"cpu_ns_per_msg"`
	Allocs    float64                  `json:"allocs_per_msg"`
	BytesPer  float64                  `json:"alloc_bytes_per_msg"`
	RSS       int64                    `json:"receiver_rss,omitempty"`
	PeakRSS   int64                    `json:"receiver_peak_rss,omitempty"`
	Probes    map[string]time.Duration `json:"probe_p99_ns,omitempty"`
	ProbeP50  map[string]time.Duration `json:"probe_p50_ns,omitempty"`
}

// receiver is the receiving side of a run: a child process, or this
// process for an in-process reference.
type receiver interface {
	report() (usage, error)
	stop()
}

// inProcess is an implementation whose receiver runs in this process, a
// reference with no transport at all.
type inProcess interface{ inProcess() }

// here is the receiver of an in-process implementation: its deliveries
// are counted in this process, whose CPU and allocations the run counts
// already.
type here struct{}

func (here) report() (usage, error) { return usage{Delivered: delivered.Load()}, nil }
func (here) stop()                  {}

// connect starts name's receiving child and dials it; done closes the
// sender, then stops the child.
func connect(name string, slow time.Duration) (c receiver, snd sender, done func(), err error) {
	if _, ok := impls[name].(inProcess); ok {
		snd, err := impls[name].dial("")
		if err != nil {
			return nil, nil, nil, err
		}
		return here{}, snd, snd.close, nil
	}
	ch, err := startChild(name, slow)
	if err != nil {
		return nil, nil, nil, err
	}
	snd, err = impls[name].dial(ch.addr)
	if err != nil {
		ch.stop()
		return nil, nil, nil, err
	}
	return ch, snd, func() { snd.close(); ch.stop() }, nil
}

// throughput sends payload-sized messages from senders goroutines for d and
// measures what the child delivered.
func throughput(name string, payload, senders int, d time.Duration) (sample, error) {
	s := sample{Impl: name, Scenario: "throughput", Payload: payload, Senders: senders}
	c, snd, done, err := connect(name, 0)
	if err != nil {
		return s, err
	}
	defer done()
	msg := make([]byte, payload)
	unit := int64(1)
	if u, ok := impls[name].(byteCounter); ok {
		// The ceilings: one writer, and their counts are bytes.
		unit, senders, s.Senders = u.unit(), 1, 1
	}
	run := func(d time.Duration) (int64, error) {
		var sent atomic.Int64
		var wg sync.WaitGroup
		var firstErr atomic.Value
		stop := time.Now().Add(d)
		for range senders {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for time.Now().Before(stop) {
					for range 64 {
						if err := snd.send(msg); err != nil {
							firstErr.CompareAndSwap(nil, err)
							return
						}
						sent.Add(unit)
					}
				}
			}()
		}
		wg.Wait()
		if err, _ := firstErr.Load().(error); err != nil {
			return 0, err
		}
		if f, ok := snd.(interface{ flush() error }); ok {
			if err := f.flush(); err != nil {
				return 0, err
			}
		}
		return sent.Load(), nil
	}
	if _, err := run(d / 5); err != nil { // warm up
		return s, err
	}
	base, err := waitFor(c, -1)
	if err != nil {
		return s, err
	}
	m := startMeter(base)
	n, err := run(d)
	if err != nil {
		return s, err
	}
	final, err := waitFor(c, base.Delivered+n)
	if err != nil {
		return s, err
	}
	elapsed := time.Since(m.start)
	got := final.Delivered - base.Delivered
	s.MsgsPerS = float64(got) / elapsed.Seconds()
	s.BytesPerS = s.MsgsPerS * float64(payload)
	if unit > 1 {
		s.BytesPerS = s.MsgsPerS // counts are bytes
		got = max(got/int64(payload), 1)
	}
	m.finish(&s, final, float64(got))
	return s, nil
}

// meter measures what both processes spend over a run: CPU, allocations
// and bytes allocated.
type meter struct {
	base  usage // the receiver's, at the start
	ms0   runtime.MemStats
	u0    usage
	start time.Time
}

// startMeter starts measuring; base is the receiver's usage now.
func startMeter(base usage) *meter {
	m := &meter{base: base}
	runtime.ReadMemStats(&m.ms0)
	m.u0 = readUsage()
	m.start = time.Now()
	return m
}

// finish records in s what the run spent per message, for msgs messages,
// with final the receiver's usage at the end.
func (m *meter) finish(s *sample, final usage, msgs float64) {
	var ms1 runtime.MemStats
	runtime.ReadMemStats(&ms1)
	u1 := readUsage()
	s.CPUPerMsg = float64(u1.CPU-m.u0.CPU+final.CPU-m.base.CPU) / msgs
	s.Allocs = float64(u1.Mallocs-m.u0.Mallocs+final.Mallocs-m.base.Mallocs) / msgs
	s.BytesPer = float64(ms1.TotalAlloc-m.ms0.TotalAlloc) / msgs
}

// waitFor polls the child until it has delivered want messages (or, for
// want < 0, until its count stops moving) and returns its last report.
func waitFor(c receiver, want int64) (usage, error) {
	deadline := time.Now().Add(60 * time.Second)
	var last usage
	for i := 0; ; i++ {
		u, err := c.report()
		if err != nil {
			return u, err
		}
		if (want >= 0 && u.Delivered >= want) || (want < 0 && i > 0 && u.Delivered == last.Delivered) {
			return u, nil
		}
		if time.Now().After(deadline) {
			return u, fmt.Errorf("child delivered %d, want %d", u.Delivered, want)
		}
		last = u
		time.Sleep(50 * time.Millisecond)
	}
}

// settle collects what the row before left in this process and returns it
// to the operating system, so that a row's figures do not carry the heap
// of the one before it (protoactor-go's control scenario leaves gigabytes).
func settle() {
	runtime.GC()
	debug.FreeOSMemory()
}

// priority floods the data path of a slow receiver and times control
// signals meanwhile.
func priority(name string, senders int, d time.Duration) (sample, error) {
	s := sample{Impl: name, Scenario: "priority", Payload: 1024, Senders: senders}
	p, ok := impls[name].(prober)
	if !ok {
		return s, errSkip
	}
	c, snd, done, err := connect(name, 200*time.Microsecond)
	if err != nil {
		return s, err
	}
	defer done()
	msg := make([]byte, s.Payload)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range s.Senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				if snd.send(msg) != nil {
					return
				}
			}
		}()
	}
	time.Sleep(d / 2) // the flood builds up
	lat, err := p.probe(snd, probes, probeTimeout)
	close(stop)
	wg.Wait()
	if err != nil && !errors.Is(err, errProbeTimeout) {
		return s, err
	}
	// Probes that carried their send time were also timed on arrival.
	u, rerr := c.report()
	if rerr != nil {
		return s, rerr
	}
	s.RSS, s.PeakRSS = u.RSS, u.PeakRSS // the flood's hold on the receiver's memory
	if lat == nil {
		lat = map[string][]time.Duration{}
	}
	for _, d := range u.OneWay {
		lat[oneWayProbe] = append(lat[oneWayProbe], time.Duration(d))
	}
	s.Probes, s.ProbeP50 = map[string]time.Duration{}, map[string]time.Duration{}
	for k, l := range lat {
		if len(l) == 0 {
			continue
		}
		slices.Sort(l)
		s.Probes[k] = l[int(0.99*float64(len(l)-1))]
		s.ProbeP50[k] = l[len(l)/2]
	}
	return s, nil
}

func main() {
	start := time.Now()
	childName := flag.String("child", "", "run as the receiving process of this implementation (internal)")
	childSlow := flag.Duration("child-slow", 0, "receiver delay per message (internal)")
	rounds := flag.Int("rounds", 3, "rounds; every implementation runs once per round, interleaved")
	duration := flag.Duration("duration", 2*time.Second, "how long each run sends")
	only := flag.String("impls", "", "comma-separated implementations to run (default all)")
	scenarios := flag.String("scenarios", "throughput,pingpong,priority,burst", "comma-separated scenarios to run: throughput (one way, 64 B and 1 KiB), pingpong (protoactor-go's remote benchmark shape, the actor runtimes only), priority, burst (2 M messages of 64 B; the receiver's memory after them)")
	pairs := flag.Int("pairs", 16, "actor pairs in the ping/pong scenario")
	payloads := flag.String("payloads", "64,1024", "comma-separated payload sizes in bytes of the throughput scenario")
	senders := flag.String("senders", "16", "comma-separated numbers of sending goroutines of the throughput scenario")
	jsonPath := flag.String("json", "compare.json", `write the samples as JSON to this file (empty: don't): {"provenance": {commit, Go version, flags, cores, start...}, "samples": [...]}`)
	floodSenders := flag.Int("priority-senders", 4, "goroutines flooding the user path in the priority scenario; 0 times the probes on an idle path")
	cpuProfile = flag.String("cpuprofile", "", "write a CPU profile of this process to this file and one of each child process to this file with .child appended (use with one implementation and one round)")
	traceFile = flag.String("trace", "", "write an execution trace of this process to this file and one of each child process to this file with .child appended (use with one implementation and one round)")
	baseRev := flag.String("baseline", "", "also run these implementations built from this commit (a git revision), once per round right after the current tree's, with the same flags; their rows are named impl@commit")
	baseImpls := flag.String("baseline-impls", "courier", "comma-separated implementations the -baseline build runs")
	baseHarness := flag.String("baseline-harness", "current", "which comparison the -baseline build runs: current (this tree's bench/compare over the commit's library, so that only the library differs) or own (the commit's own bench/compare)")
	idle := flag.Bool("idle-floor", false, "only measure how late this machine wakes an idle thread (a 200µs sleep; a TCP ping-pong after 1ms idle; how far the clock jumps between two reads in a tight loop), for -duration each")
	flag.Parse()
	if *idle {
		if err := idleFloor(os.Stdout, *duration); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		return
	}
	if *cpuProfile != "" {
		stop, err := startCPUProfile(*cpuProfile)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		defer stop()
	}
	if *traceFile != "" {
		stop, err := startTrace(*traceFile)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		defer stop()
	}
	if *childName != "" {
		if err := runChild(*childName, *childSlow); err != nil {
			fmt.Fprintln(os.Stderr, "compare child:", err)
			os.Exit(1)
		}
		return
	}
	prov := provenance.Collect(flag.CommandLine, os.Args[1:], start)
	names := []string{"courier", "protoactor-courier", "protoactor-default", "protoactor-batch", "protoactor-local", "grpc-raw", "grpc-batched", "grpc-ceiling", "tcp"}
	if *only != "" {
		names = strings.Split(*only, ",")
	}
	type job struct {
		scenario string
		payload  int
		senders  int
	}
	var all []job
	for _, n := range intList("payloads", *payloads, 0) {
		for _, k := range intList("senders", *senders, 1) {
			all = append(all, job{"throughput", n, k})
		}
	}
	all = append(all, job{"pingpong", 0, *pairs}, job{"priority", 1024, *floodSenders}, job{"burst", 64, 16})
	var jobs []job
	for _, j := range all {
		if slices.Contains(strings.Split(*scenarios, ","), j.scenario) {
			jobs = append(jobs, j)
		}
	}
	var base *baseline
	if *baseRev != "" {
		var err error
		fmt.Fprintf(os.Stderr, "building the baseline %s\n", *baseRev)
		if *baseHarness != "current" && *baseHarness != "own" {
			fmt.Fprintf(os.Stderr, "compare: -baseline-harness %q: want current or own\n", *baseHarness)
			os.Exit(2)
		}
		if base, err = newBaseline(*baseRev, *baseImpls, *baseHarness == "own", flag.CommandLine); err != nil {
			fmt.Fprintln(os.Stderr, "compare:", err)
			os.Exit(1)
		}
		defer base.close()
	}
	var samples []sample
	for round := 1; round <= *rounds; round++ {
		if base != nil && round%2 == 0 {
			// Alternate which build goes first, so that neither always
			// runs on a machine the other has just warmed.
			samples = append(samples, base.mustRound(round)...)
		}
		for _, j := range jobs {
			for _, name := range names {
				fmt.Fprintf(os.Stderr, "round %d: %s %s payload=%d senders=%d\n", round, name, j.scenario, j.payload, j.senders)
				settle()
				var s sample
				var err error
				switch {
				case j.scenario == "throughput":
					s, err = throughput(name, j.payload, j.senders, *duration)
				case j.scenario == "pingpong":
					s, err = pingpong(name, j.senders, *duration)
				case j.scenario == "burst":
					s, err = burst(name)
				default:
					s, err = priority(name, j.senders, *duration)
				}
				if errors.Is(err, errSkip) {
					continue
				}
				if err != nil {
					fmt.Fprintf(os.Stderr, "  %s: %v\n", name, err)
					continue
				}
				samples = append(samples, s)
			}
		}
		if base != nil && round%2 == 1 {
			samples = append(samples, base.mustRound(round)...)
		}
	}
	printTable(os.Stdout, samples)
	if *jsonPath != "" {
		b, _ := json.MarshalIndent(resultsFile{Provenance: prov, Baseline: base, Samples: samples}, "", "  ")
		if err := os.WriteFile(*jsonPath, append(b, '\n'), 0o644); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return
		}
	}
}

// median returns the median, least and greatest of v, which it sorts.
func median(v []float64) (m, lo, hi float64) {
	slices.Sort(v)
	return v[len(v)/2], v[0], v[len(v)-1]
}

// peakCol is the median and spread of the receiving processes' peak
// resident set in samples, empty where none was read.
func peakCol(samples []sample) string {
	var peak []float64
	for _, s := range samples {
		if s.PeakRSS > 0 {
			peak = append(peak, float64(s.PeakRSS)/(1<<20))
		}
	}
	if len(peak) == 0 {
		return ""
	}
	p, lo, hi := median(peak)
	return fmt.Sprintf("%.0f (%.0f–%.0f)", p, lo, hi)
}

// intList parses flag name's comma-separated integers, each at least min,
// or ends the run.
func intList(name, list string, min int) []int {
	var out []int
	for _, f := range strings.Split(list, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < min {
			fmt.Fprintf(os.Stderr, "compare: -%s: %q is not a number >= %d\n", name, f, min)
			os.Exit(2)
		}
		out = append(out, n)
	}
	return out
}

// resultsFile is the JSON file of a run (-json): where it comes from, and
// every sample in the order it ran. The older files in results/ hold the
// samples alone, a top-level array.
type resultsFile struct {
	Provenance provenance.Provenance `json:"provenance"`
	Baseline   *baseline             `json:"baseline,omitempty"`
	Samples    []sample              `json:"samples"`
}

// printTable prints medians and spreads per implementation and job, and the
// ratio of courier's median to each.
func printTable(w io.Writer, samples []sample) {
	fmt.Fprintf(w, "\n%d cores, %s; medians of the rounds, spread min–max\n\n", runtime.NumCPU(), runtime.Version())
	type key struct {
		scenario string
		payload  int
		senders  int
		impl     string
	}
	groups := map[key][]sample{}
	var order []key
	for _, s := range samples {
		k := key{s.Scenario, s.Payload, s.Senders, s.Impl}
		if _, ok := groups[k]; !ok {
			order = append(order, k)
		}
		groups[k] = append(groups[k], s)
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "payload\timpl\tmsgs/s\tspread\tMB/s\tcourier ×\tpa-courier ×\tCPU ns/msg\tallocs/msg\tB/msg\t")
	// The ratio columns: courier's and protoactor-go over courier's median
	// rate in the same scenario and payload, over each row's.
	type job struct {
		scenario string
		payload  int
		senders  int
	}
	courierRate, paCourierRate := map[job]float64{}, map[job]float64{}
	for _, k := range order {
		if k.scenario == "priority" {
			continue
		}
		var r []float64
		for _, s := range groups[k] {
			r = append(r, s.MsgsPerS)
			if _, ok := impls[k.impl].(byteCounter); ok {
				r[len(r)-1] = s.BytesPerS / float64(max(k.payload, 1))
			}
		}
		switch k.impl {
		case "courier":
			courierRate[job{k.scenario, k.payload, k.senders}], _, _ = median(r)
		case "protoactor-courier":
			paCourierRate[job{k.scenario, k.payload, k.senders}], _, _ = median(r)
		}
	}
	var prio, bursts []key
	for _, k := range order {
		g := groups[k]
		if k.scenario == "priority" {
			prio = append(prio, k)
			continue
		}
		if k.scenario == "burst" {
			bursts = append(bursts, k)
			continue
		}
		var rate, bps, cpu, allocs, bytes []float64
		for _, s := range g {
			rate = append(rate, s.MsgsPerS)
			bps = append(bps, s.BytesPerS)
			cpu = append(cpu, s.CPUPerMsg)
			allocs = append(allocs, s.Allocs)
			bytes = append(bytes, s.BytesPer)
		}
		m, lo, hi := median(rate)
		mb, _, _ := median(bps)
		c, _, _ := median(cpu)
		a, _, _ := median(allocs)
		by, _, _ := median(bytes)
		perSec := m
		rateCol, spread := fmt.Sprintf("%.0f", m), fmt.Sprintf("%.0f–%.0f", lo, hi)
		if _, ok := impls[k.impl].(byteCounter); ok {
			perSec = mb / float64(max(k.payload, 1))
			rateCol, spread = "", ""
		}
		ratio := func(base float64) string {
			if base > 0 && perSec > 0 {
				return fmt.Sprintf("%.2f", base/perSec)
			}
			return ""
		}
		label := fmt.Sprintf("%d B", k.payload)
		if k.senders != 16 {
			label += fmt.Sprintf(" ×%d", k.senders) // senders; 16 unless -senders says otherwise
		}
		if k.scenario == "pingpong" {
			label = "ping/pong"
		}
		j := job{k.scenario, k.payload, k.senders}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%.1f\t%s\t%s\t%.0f\t%.2f\t%.0f\t\n", label, k.impl, rateCol, spread, mb/1e6,
			ratio(courierRate[j]), ratio(paCourierRate[j]), c, a, by)
	}
	tw.Flush()
	if len(bursts) > 0 {
		fmt.Fprintf(w, "\nthe receiving process after a burst of %d messages of 64 B from 16 senders\n\n", burstMessages)
		tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "impl\tmsgs/s\tRSS after MiB\tspread\tpeak RSS MiB\tspread\t")
		for _, k := range bursts {
			var rate, rss, peak []float64
			for _, s := range groups[k] {
				rate = append(rate, s.MsgsPerS)
				rss = append(rss, float64(s.RSS)/(1<<20))
				peak = append(peak, float64(s.PeakRSS)/(1<<20))
			}
			m, _, _ := median(rate)
			r, rlo, rhi := median(rss)
			p, plo, phi := median(peak)
			fmt.Fprintf(tw, "%s\t%.0f\t%.0f\t%.0f–%.0f\t%.0f\t%.0f–%.0f\t\n", k.impl, m, r, rlo, rhi, p, plo, phi)
		}
		tw.Flush()
	}
	if len(prio) == 0 {
		return
	}
	flood := "with no flood, to"
	if n := groups[prio[0]][0].Senders; n > 0 {
		flood = fmt.Sprintf("while %d senders flood", n)
	}
	fmt.Fprintf(w, "\ncontrol signals %s a receiver that takes 200µs per message\n(%v: no answer within the probe timeout; tcp: the machine's floor, a 1-byte\nping-pong on a second loopback connection during a TCP flood)\n\n", flood, probeTimeout)
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "impl\tprobe\tp50\tp99\tworst p99\treceiver peak RSS MiB\t")
	show := func(d float64) string {
		if time.Duration(d) >= probeTimeout {
			return "≥" + probeTimeout.String()
		}
		return time.Duration(d).Round(time.Microsecond).String()
	}
	for _, k := range prio {
		g := groups[k]
		var probes []string
		for _, s := range g {
			for p := range s.Probes {
				if !slices.Contains(probes, p) {
					probes = append(probes, p)
				}
			}
		}
		slices.Sort(probes)
		for _, probe := range probes {
			var p50, p99 []float64
			for _, s := range g {
				if v, ok := s.Probes[probe]; ok {
					p50 = append(p50, float64(s.ProbeP50[probe]))
					p99 = append(p99, float64(v))
				}
			}
			m50, _, _ := median(p50)
			m99, _, hi := median(p99)
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t\n", k.impl, probe, show(m50), show(m99), show(hi), peakCol(g))
		}
	}
	tw.Flush()
}
