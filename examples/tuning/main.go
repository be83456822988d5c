// Command tuning runs one workload under a few configurations of the
// sending node, to show what courier's knobs do. 16 goroutines send n
// envelopes of text (64 bytes, or 1 KiB) from node A to node B; a run ends
// when B has received every envelope or A has dead-lettered it, and every
// run has fresh nodes. For each it prints the envelopes delivered and
// dead-lettered, the time, delivered messages per second, the frames A
// sent (Stats().User.Batches), envelopes per frame, and bytes out:
//
//   - the defaults: a 4096-envelope user queue per peer and overflow policy
//     DropNewest. Send never waits, so a flood that outruns the connection
//     is dead-lettered ("queue full") instead of slowing the senders;
//   - WithUserQueue(256), DropNewest then Block: a small queue drops even
//     more, or, with Block, loses nothing but sends smaller frames and
//     makes the senders wait;
//   - Block with the default queue: the baseline for the rows below;
//   - WithLinger(200µs), WithBatchEnvelopes(4096), WithBatchBytes(1 MiB)
//     and a 16384 queue: fewer, fuller frames. The queue also holds the
//     envelopes sent but not yet acknowledged, so a batch needs a queue
//     several times its size;
//   - 1 KiB payloads without and with WithCompression(0) (S2 for frames of
//     4 KiB and more): compare bytes out.
//
// It is a demonstration, not a measurement: on a shared machine the times
// move a lot from run to run, while the counts of frames and bytes do not.
// The bench command measures these knobs properly, with the receiver in a
// separate process and CPU and allocation figures:
// go run ./bench/cmd/courier-bench -h
//
// Run it with:
//
//	go run ./examples/tuning [-n 100000]
//
// Built with -race it sends a tenth as many by default.
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"math/rand/v2"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/courier-go/courier/manager"
)

// patience bounds each wait: generous, since a loaded machine can be slow.
const patience = 30 * time.Second

const senders = 16

type config struct {
	name    string
	payload int
	div     int // the run sends n/div envelopes
	opts    []manager.Option
}

func main() {
	def := 100000
	if raceEnabled() {
		def = 10000 // the race detector slows courier down tenfold and more
	}
	n := flag.Int("n", def, "envelopes per 64-byte run (a quarter of it for 1 KiB runs)")
	flag.Parse()
	block := manager.WithOverflowPolicy(manager.Block)
	configs := []config{
		{"defaults (4096, drop-newest)", 64, 1, nil},
		{"queue 256, drop-newest", 64, 1, []manager.Option{manager.WithUserQueue(256)}},
		{"queue 256, block", 64, 1, []manager.Option{manager.WithUserQueue(256), block}},
		{"queue 4096, block", 64, 1, []manager.Option{block}},
		{"queue 16384, block, linger, 4096/frame", 64, 1, []manager.Option{block, manager.WithUserQueue(16384),
			manager.WithLinger(200 * time.Microsecond), manager.WithBatchEnvelopes(4096), manager.WithBatchBytes(1 << 20)}},
		{"queue 4096, block", 1024, 4, []manager.Option{block}},
		{"queue 4096, block, compression(0)", 1024, 4, []manager.Option{block, manager.WithCompression(0)}},
	}
	fmt.Printf("%-38s %7s %7s %9s %7s %8s %10s %7s %9s %10s\n",
		"config", "payload", "sent", "delivered", "dead", "time", "msgs/s", "frames", "env/frame", "bytes out")
	for _, c := range configs {
		if err := measure(c, *n/c.div); err != nil {
			log.Fatalf("%s: %v", c.name, err)
		}
	}
}

// measure runs the workload once under c with fresh nodes and prints a row.
func measure(c config, n int) error {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()

	// Every envelope settles once: received by B or dead-lettered by A.
	var received, dead, settled atomic.Int64
	done := make(chan struct{})
	settle := func() {
		if settled.Add(1) == int64(n) {
			close(done)
		}
	}
	b, err := manager.New(
		manager.WithListenAddress("127.0.0.1:0"),
		manager.WithHandler(manager.HandlerFunc(func(_ manager.Peer, env *manager.Envelope) {
			if env.Target == "sink" {
				received.Add(1)
				settle()
			}
		})),
	)
	if err != nil {
		return err
	}
	if err := b.Start(ctx); err != nil {
		return err
	}
	defer closeNode(b)
	opts := append([]manager.Option{
		manager.WithHandler(manager.HandlerFunc(func(manager.Peer, *manager.Envelope) {})),
		manager.WithDeadLetterHandler(func(manager.DeadLetter) { dead.Add(1); settle() }),
	}, c.opts...)
	a, err := manager.New(opts...) // client-only: it only sends
	if err != nil {
		return err
	}
	defer closeNode(a)

	// Connect first, so that the run does not time the handshake.
	if err := a.Send(ctx, b.Addr(), &manager.Envelope{Target: "warm-up"}); err != nil {
		return err
	}
	for deadline := time.Now().Add(patience); ; time.Sleep(time.Millisecond) {
		if s, ok := a.Stats(b.Addr()); ok && s.User.Acked == 1 {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no connection to %s within %v", b.Addr(), patience)
		}
	}

	payloads := texts(c.payload)
	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, senders)
	for g := range senders {
		count := n / senders
		if g < n%senders {
			count++
		}
		wg.Go(func() {
			env := &manager.Envelope{Target: "sink", TypeName: "example.Work"}
			for i := range count {
				// Send copies env, but not the payload: the payloads are
				// never changed.
				env.Payload = payloads[(g+i*senders)%len(payloads)]
				if err := a.Send(ctx, b.Addr(), env); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return err
	}
	select {
	case <-done:
	case <-time.After(patience):
		return fmt.Errorf("after %v only %d of %d envelopes received or dead-lettered", patience, settled.Load(), n)
	}
	elapsed := time.Since(start)

	s, _ := a.Stats(b.Addr())
	frames := s.User.Batches - 1 // less the warm-up's
	got := received.Load()
	fmt.Printf("%-38s %6dB %7d %9d %7d %8s %10.0f %7d %9.1f %10d\n", c.name, c.payload, n, got, dead.Load(),
		elapsed.Round(time.Millisecond), float64(got)/elapsed.Seconds(), frames,
		float64(got)/float64(max(frames, 1)), s.User.BytesOut)
	return nil
}

// raceEnabled reports whether the program was built with -race.
func raceEnabled() bool {
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, kv := range bi.Settings {
			if kv.Key == "-race" && kv.Value == "true" {
				return true
			}
		}
	}
	return false
}

// texts returns 1024 different payloads of size bytes: words picked at
// random, which compress about as well as text does.
func texts(size int) [][]byte {
	words := []string{"courier", "envelope", "frame", "batch", "lane", "queue", "node", "peer",
		"ack", "stream", "order", "id", "status", "shipped", "pending", "42", "1337", "2024",
		"{", "}", "\"name\":", "\"qty\":", "true", "false", "null"}
	r := rand.New(rand.NewPCG(1, 2))
	out := make([][]byte, 1024)
	for i := range out {
		b := make([]byte, 0, size+16)
		for len(b) < size {
			b = append(append(b, words[r.IntN(len(words))]...), ' ')
		}
		out[i] = b[:size]
	}
	return out
}

// closeNode flushes and stops m, giving it 5s.
func closeNode(m *manager.Manager) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := m.Close(ctx); err != nil {
		log.Printf("close %s: %v", m.SystemID(), err)
	}
}
