package courierremote

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/courier-go/courier/manager"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// echo answers every StringValue with the same text upper-cased, and
// tells the header "trace" back as a second reply field when present.
func echo(ctx actor.Context) {
	if m, ok := ctx.Message().(*wrapperspb.StringValue); ok {
		reply := strings.ToUpper(m.Value)
		if h := ctx.MessageHeader(); h != nil && h.Get("trace") != "" {
			reply += " trace=" + h.Get("trace")
		}
		if ctx.Sender() != nil {
			reply += " from=" + ctx.Sender().Id + "@" + ctx.Sender().Address
		}
		ctx.Respond(wrapperspb.String(reply))
	}
}

func TestStartSetsTheSystemsAddress(t *testing.T) {
	n := startNode(t, nil)
	if n.system.Address() != n.r.Address() || n.r.Address() != n.r.Manager().Addr() {
		t.Fatalf("system %q, remote %q, courier %q: want one address", n.system.Address(), n.r.Address(), n.r.Manager().Addr())
	}
	if GetRemote(n.system) != n.r {
		t.Fatal("GetRemote does not return the remote")
	}
	if _, err := Start(context.Background(), n.system, Configure("127.0.0.1", 0)); !errors.Is(err, ErrAlreadyStarted) {
		t.Fatalf("second Start: %v, want ErrAlreadyStarted", err)
	}
}

func TestStartValidates(t *testing.T) {
	system := quietSystem()
	defer system.Shutdown()
	_, err := Start(context.Background(), system, Configure("127.0.0.1", 70000, WithKinds(nil)))
	if !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("port 70000: %v, want ErrInvalidConfig", err)
	}
	if _, err := Start(context.Background(), system, nil); !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("nil config: %v, want ErrInvalidConfig", err)
	}
	if _, err := Start(context.Background(), system, Configure("127.0.0.1", 0, WithSerializerID(9))); !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("serializer 9: %v, want ErrInvalidConfig", err)
	}
}

func TestRequestFutureAcrossNodes(t *testing.T) {
	a, b := startNode(t, nil), startNode(t, nil)
	pid := b.spawn("echo", echo)
	remotePID := actor.NewPID(b.r.Address(), pid.Id)
	res, err := a.system.Root.RequestFuture(remotePID, wrapperspb.String("hello"), 5*time.Second).Result()
	if err != nil {
		t.Fatalf("RequestFuture: %v", err)
	}
	got := res.(*wrapperspb.StringValue).Value
	if !strings.HasPrefix(got, "HELLO from=future$") {
		t.Fatalf("reply %q, want HELLO from the future", got)
	}
}

func TestRequestCarriesSenderAndHeaders(t *testing.T) {
	a, b := startNode(t, nil), startNode(t, nil)
	b.spawn("echo", echo)
	replies := newInbox()
	client := a.spawn("client", func(ctx actor.Context) {
		switch m := ctx.Message().(type) {
		case *wrapperspb.BytesValue: // the test's command: send the request
			env := &actor.MessageEnvelope{Header: map[string]string{"trace": "t-17"},
				Message: wrapperspb.String(string(m.Value)), Sender: ctx.Self()}
			ctx.Send(actor.NewPID(b.r.Address(), "echo"), env)
		case *wrapperspb.StringValue:
			replies.ch <- fmt.Sprintf("%s sender=%v", m.Value, ctx.Sender())
		}
	})
	a.system.Root.Send(client, wrapperspb.Bytes([]byte("ping")))
	got := replies.next(t, 5*time.Second).(string)
	// Respond sends no sender, as protoactor-go's own remote.
	want := fmt.Sprintf("PING trace=t-17 from=client@%s sender=<nil>", a.r.Address())
	if got != want {
		t.Fatalf("got %q, want %q", got, want)
	}
	// Headers travel without a sender too.
	seen := newInbox()
	b.spawn("headers", func(ctx actor.Context) {
		if m, ok := ctx.Message().(*wrapperspb.StringValue); ok {
			seen.ch <- fmt.Sprintf("%s trace=%s sender=%v", m.Value, ctx.MessageHeader().Get("trace"), ctx.Sender())
		}
	})
	a.system.Root.Send(actor.NewPID(b.r.Address(), "headers"),
		&actor.MessageEnvelope{Header: map[string]string{"trace": "t-18"}, Message: wrapperspb.String("alone")})
	if got, want := seen.next(t, 5*time.Second), "alone trace=t-18 sender=<nil>"; got != want {
		t.Fatalf("got %q, want %q", got, want)
	}
}

func TestRequestWithoutFutureIsAnsweredToTheSender(t *testing.T) {
	a, b := startNode(t, nil), startNode(t, nil)
	b.spawn("echo", echo)
	got := newInbox()
	asker := a.spawn("asker", func(ctx actor.Context) {
		switch m := ctx.Message().(type) {
		case *wrapperspb.BytesValue:
			ctx.Request(actor.NewPID(b.r.Address(), "echo"), wrapperspb.String("q"))
		case *wrapperspb.StringValue:
			got.ch <- m.Value
		}
	})
	a.system.Root.Send(asker, wrapperspb.Bytes(nil))
	if v, want := got.next(t, 5*time.Second), "Q from=asker@"+a.r.Address(); v != want {
		t.Fatalf("got %v, want %q", v, want)
	}
}

func TestLocalPIDsNeverReachTheTransport(t *testing.T) {
	a := startNode(t, nil)
	a.spawn("echo", echo)
	for _, pid := range []*actor.PID{actor.NewPID(a.r.Address(), "echo"), a.system.NewLocalPID("echo")} {
		res, err := a.system.Root.RequestFuture(pid, wrapperspb.String("x"), 5*time.Second).Result()
		if err != nil || !strings.HasPrefix(res.(*wrapperspb.StringValue).Value, "X") {
			t.Fatalf("local request to %v: %v %v", pid, res, err)
		}
	}
	if err := a.r.Send(actor.NewPID(a.r.Address(), "echo"), wrapperspb.String("y")); err != nil {
		t.Fatalf("Remote.Send to a local PID: %v", err)
	}
	if eps := a.r.Manager().AllStats(); len(eps) != 0 {
		t.Fatalf("local sends created %d courier endpoints: %+v", len(eps), eps)
	}
}

func TestShutdownFlushesWithinItsContext(t *testing.T) {
	a, b := startNode(t, nil), startNode(t, nil)
	const n = 2000
	got := make(chan struct{}, n)
	b.spawn("sink", func(ctx actor.Context) {
		if _, ok := ctx.Message().(*wrapperspb.Int64Value); ok {
			got <- struct{}{}
		}
	})
	sink := actor.NewPID(b.r.Address(), "sink")
	for i := range n {
		a.system.Root.Send(sink, wrapperspb.Int64(int64(i)))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := a.r.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	timer := time.NewTimer(5 * time.Second)
	defer timer.Stop()
	for i := range n {
		select {
		case <-got:
		case <-timer.C:
			t.Fatalf("%d of %d delivered after Shutdown returned", i, n)
		}
	}
	// After Shutdown, a remote send is a dead letter, never a panic.
	if err := a.r.Send(sink, wrapperspb.Int64(0)); !errors.Is(err, ErrStopped) {
		t.Fatalf("Send after Shutdown: %v, want ErrStopped", err)
	}
	dead := record[*actor.DeadLetterEvent](t, a)
	a.system.Root.Send(sink, wrapperspb.Int64(1))
	dead.wait(t, "dead letter after shutdown", 5*time.Second, func(*actor.DeadLetterEvent) bool { return true })
}

// childEnv names the variable that makes the test binary a child node.
const childEnv = "COURIERREMOTE_TEST_CHILD"

// runChild is the child process's node: an echo actor, its address on
// stdout, until stdin closes.
// childPortEnv, if set, is the port the child node listens on.
const childPortEnv = "COURIERREMOTE_TEST_CHILD_PORT"

func runChild() {
	system := quietSystem()
	port, _ := strconv.Atoi(os.Getenv(childPortEnv))
	r, err := Start(context.Background(), system, Configure("127.0.0.1", port))
	if err != nil {
		fmt.Println("ERR", err)
		os.Exit(1)
	}
	if _, err := system.Root.SpawnNamed(actor.PropsFromFunc(echo), "echo"); err != nil {
		fmt.Println("ERR", err)
		os.Exit(1)
	}
	fmt.Println("ADDR", r.Address())
	_, _ = io.Copy(io.Discard, os.Stdin)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = r.Shutdown(ctx)
	system.Shutdown()
	os.Exit(0)
}

// child is a node in a child process: this test binary, run as runChild.
type child struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	addr  string
}

// startChild starts a child node listening on port (0: any) and returns
// once it listens, with an echo actor. The test stops it at its end if it
// has not.
func startChild(t *testing.T, port int) *child {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	c := &child{cmd: exec.Command(exe, "-test.run=^$")}
	c.cmd.Env = append(os.Environ(), childEnv+"=1", childPortEnv+"="+strconv.Itoa(port))
	c.stdin, _ = c.cmd.StdinPipe()
	stdout, _ := c.cmd.StdoutPipe()
	c.cmd.Stderr = os.Stderr
	if err := c.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if c.cmd.ProcessState == nil {
			c.stop(t)
		}
	})
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "ADDR ") {
		t.Fatalf("child said %q, %v", line, err)
	}
	c.addr = strings.TrimSpace(strings.TrimPrefix(line, "ADDR "))
	return c
}

// stop asks the child to shut down and waits for it.
func (c *child) stop(t *testing.T) {
	t.Helper()
	c.stdin.Close()
	if err := c.cmd.Wait(); err != nil {
		t.Errorf("child: %v", err)
	}
}

// kill ends the child at once, without a word to its peers.
func (c *child) kill(t *testing.T) {
	t.Helper()
	if err := c.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = c.cmd.Wait()
}

// port returns the port the child listens on.
func (c *child) port(t *testing.T) int {
	t.Helper()
	_, p, err := net.SplitHostPort(c.addr)
	if err != nil {
		t.Fatal(err)
	}
	n, _ := strconv.Atoi(p)
	return n
}

func TestNodeInAChildProcess(t *testing.T) {
	addr := startChild(t, 0).addr
	a := startNode(t, nil)
	res, err := a.system.Root.RequestFuture(actor.NewPID(addr, "echo"), wrapperspb.String("child"), 10*time.Second).Result()
	if err != nil {
		t.Fatalf("request to the child: %v", err)
	}
	if v := res.(*wrapperspb.StringValue).Value; !strings.HasPrefix(v, "CHILD") {
		t.Fatalf("child answered %q", v)
	}
}

// TestUserQueueDefault: the adapter gives courier DefaultUserQueue, and a
// WithUserQueue among Start's options overrides it.
func TestUserQueueDefault(t *testing.T) {
	b := startNode(t, nil)
	b.spawn("echo", echo)
	for _, c := range []struct {
		opts []manager.Option
		want int
	}{{nil, DefaultUserQueue}, {[]manager.Option{manager.WithUserQueue(1024)}, 1024}} {
		a := startNode(t, nil, c.opts...)
		if got := requestString(t, a, b.remotePID("echo"), "hi"); got == "" {
			t.Fatal("no answer")
		}
		st, ok := a.r.Manager().Stats(b.r.Address())
		if !ok || st.User.Capacity != c.want {
			t.Fatalf("user queue of %d (endpoint %v), want %d", st.User.Capacity, ok, c.want)
		}
	}
}

// Shutdown flushes only as long as its context lets it: against a peer that
// takes nothing (a gated actor at its mailbox limit), it returns once the
// context ends, and what it could not flush is dead letters, reason
// shutdown, and fails the futures waiting on it at once.
func TestShutdownEndsWithItsContext(t *testing.T) {
	const n = 3000
	a := startNode(t, nil)
	b := startNode(t, Configure("127.0.0.1", 0, WithMailboxLimit(16)))
	_, sinkPID := b.spawnSink("sink", 0, true, 0)
	sink := actor.NewPID(b.r.Address(), sinkPID.Id)
	b.spawn("echo", echo)
	flood(a, sink, n)
	pending := a.system.Root.RequestFuture(b.remotePID("echo"), wrapperspb.String("late"), time.Minute)
	dead := record[*DeadLetterEvent](t, a)

	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	if err := a.r.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if took := time.Since(start); took > 3*time.Second {
		t.Fatalf("Shutdown took %v with a context of 300ms", took)
	}
	if len(dead.all()) == 0 {
		t.Fatal("no dead letters for what Shutdown could not flush")
	}
	for _, d := range dead.all() {
		if d.Reason != manager.ReasonShutdown.String() {
			t.Fatalf("dead letter %q for %v, want %q", d.Reason, d.PID, manager.ReasonShutdown)
		}
	}
	if _, err := pending.Result(); !errors.Is(err, actor.ErrDeadLetter) {
		t.Fatalf("a request queued behind the flood: %v, want actor.ErrDeadLetter", err)
	}
}

// A sender on a third node travels with its address: a asks c's echo with
// b's actor as the sender, and the answer goes to b.
func TestSenderOnAThirdNode(t *testing.T) {
	a, b, c := startNode(t, nil), startNode(t, nil), startNode(t, nil)
	c.spawn("echo", echo)
	answers := newInbox()
	b.spawn("collector", answers.receive)
	collector := b.remotePID("collector")
	a.system.Root.Send(c.remotePID("echo"), &actor.MessageEnvelope{
		Message: wrapperspb.String("relay"), Sender: actor.NewPID(collector.Address, collector.Id)})
	m, ok := answers.next(t, 5*time.Second).(*wrapperspb.StringValue)
	if want := "RELAY from=collector@" + b.r.Address(); !ok || m.GetValue() != want {
		t.Fatalf("b's collector got %v, want %q", m, want)
	}
}

// An actor spawned before the remote started has a PID on "nonhost"; once
// the remote runs, its requests carry the node's address, and the answers
// find it.
func TestSenderSpawnedBeforeStart(t *testing.T) {
	b := startNode(t, nil)
	b.spawn("echo", echo)
	system := quietSystem()
	answers := newInbox()
	asker, err := system.Root.SpawnNamed(actor.PropsFromFunc(func(ctx actor.Context) {
		switch m := ctx.Message().(type) {
		case *wrapperspb.BytesValue:
			ctx.Request(actor.NewPID(b.r.Address(), "echo"), wrapperspb.String(string(m.Value)))
		case *wrapperspb.StringValue:
			answers.ch <- m.Value
		}
	}), "early")
	if err != nil {
		t.Fatal(err)
	}
	if asker.Address != "nonhost" {
		t.Fatalf("an actor spawned before Start is on %q, want nonhost", asker.Address)
	}
	r, err := Start(context.Background(), system, Configure("127.0.0.1", 0), fastGiveUp)
	if err != nil {
		t.Fatal(err)
	}
	a := &node{t: t, system: system, r: r}
	t.Cleanup(a.stop)
	system.Root.Send(asker, wrapperspb.Bytes([]byte("early")))
	if got, want := answers.next(t, 5*time.Second), "EARLY from=early@"+r.Address(); got != want {
		t.Fatalf("got %v, want %q", got, want)
	}
}
