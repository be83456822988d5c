package manager

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/courier-go/courier/batch"
	"github.com/courier-go/courier/internal/testutil"
	"github.com/courier-go/courier/internal/wire"
	courierv1 "github.com/courier-go/courier/proto/courier/v1"
	"github.com/courier-go/courier/proto/courier/v1/transportv1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
)

// tryRaw opens a connection of its own to addr, one stream on it, and runs
// the handshake with h.
func tryRaw(t *testing.T, addr string, h *courierv1.Hello) (*rawPeer, error) {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	s, err := transportv1.NewTransportClient(conn).Connect(context.Background(), grpc.ForceCodecV2(wire.Codec{}))
	if err == nil {
		_, err = wire.Dial(s, h)
	}
	if err != nil {
		// A refused client must not go on reconnecting in the background.
		conn.Close()
		return nil, err
	}
	t.Cleanup(func() { conn.Close() })
	return &rawPeer{conn: conn, s: s}, nil
}

// helloFrom is a good Hello from the system id and incarnation.
func helloFrom(systemID string, incarnation uint64) *courierv1.Hello {
	h := goodHello()
	h.SystemId, h.Incarnation = systemID, incarnation
	return h
}

// eventuallyAccepted retries the handshake h with the node at addr until it
// is accepted, and fails the test, with the last refusal, if it is not
// within d.
func eventuallyAccepted(t *testing.T, what, addr string, h *courierv1.Hello, d time.Duration) {
	t.Helper()
	var err error
	defer func() {
		if err != nil {
			t.Logf("last refusal: %v", err)
		}
	}()
	testutil.Eventually(t, what, d, func() bool {
		_, err = tryRaw(t, addr, h)
		return err == nil
	})
}

// streamsFrom returns the node's accepted streams from systemID.
func streamsFrom(m *Manager, systemID string) []*liveStream {
	return m.streamsOf(func(l *liveStream) bool { return l.peer.SystemID == systemID })
}

// killed counts the streams the node has killed (Block, a limit, the idle
// watchdog). A kill is done when the killing call returns; the stream's end,
// and the event that reports it, come later.
func killed(streams []*liveStream) int {
	n := 0
	for _, l := range streams {
		select {
		case <-l.ch:
			n++
		default:
		}
	}
	return n
}

// TestMaxInboundConnections: a connection beyond the limit is closed at
// once, with an event; when a connection closes, its slot is free again.
func TestMaxInboundConnections(t *testing.T) {
	t.Parallel()
	node := newNode(t, newCollector(), WithMaxInboundConnections(2))
	log := watch(node)
	p1, err := tryRaw(t, node.Addr(), helloFrom("one", 1))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tryRaw(t, node.Addr(), helloFrom("two", 2)); err != nil {
		t.Fatal(err)
	}
	if _, err := tryRaw(t, node.Addr(), helloFrom("three", 3)); err == nil {
		t.Fatal("a third connection was served")
	}
	ev := log.waitFor(t, "peer refused", 5*time.Second, func(e Event) bool {
		return e.Type == EventPeerRefused && errors.Is(e.Err, ErrTooManyConnections)
	})
	if ev.Address == "" {
		t.Fatal("the refusal does not say who was refused")
	}
	p1.conn.Close()
	eventuallyAccepted(t, "a connection after one closed", node.Addr(), helloFrom("four", 4), 10*time.Second)
}

// TestMaxStreamsPerPeer: a system at its stream limit is refused with
// reason "unavailable", whichever connection it uses; other systems are
// not; a stream that ends frees its slot.
func TestMaxStreamsPerPeer(t *testing.T) {
	t.Parallel()
	node := newNode(t, newCollector(), WithMaxStreamsPerPeer(2))
	log := watch(node)
	p1, err := tryRaw(t, node.Addr(), helloFrom("greedy", 1))
	if err != nil {
		t.Fatal(err)
	}
	h := helloFrom("greedy", 1)
	h.Lane = courierv1.Lane_LANE_SYSTEM
	if _, err := tryRaw(t, node.Addr(), h); err != nil {
		t.Fatal(err)
	}
	_, err = tryRaw(t, node.Addr(), helloFrom("greedy", 2))
	if !errors.Is(err, ErrRefused) || !errors.Is(err, wire.ErrUnavailable) {
		t.Fatalf("third stream: %v, want a refusal with reason unavailable", err)
	}
	log.waitFor(t, "peer refused", 5*time.Second, func(e Event) bool {
		return e.Type == EventPeerRefused && errors.Is(e.Err, ErrTooManyStreams) && e.Peer.SystemID == "greedy"
	})
	if _, err := tryRaw(t, node.Addr(), helloFrom("modest", 1)); err != nil {
		t.Fatalf("another system: %v", err)
	}
	p1.conn.Close()
	eventuallyAccepted(t, "a stream after one ended", node.Addr(), helloFrom("greedy", 3), 10*time.Second)
}

// TestIdleTimeout: a peer that sends nothing after its handshake loses the
// stream after the idle timeout, with a status and an event.
func TestIdleTimeout(t *testing.T) {
	t.Parallel()
	const idle = time.Second
	node := newNode(t, newCollector(), WithHeartbeatInterval(100*time.Millisecond), WithIdleTimeout(idle))
	log := watch(node)
	start := time.Now()
	silent, err := tryRaw(t, node.Addr(), helloFrom("silent", 1))
	if err != nil {
		t.Fatal(err)
	}
	if code := silent.end(t); code != codes.DeadlineExceeded {
		t.Fatalf("silent stream ended with %v, want DeadlineExceeded", code)
	}
	if d := time.Since(start); d < idle {
		t.Fatalf("silent stream closed after %v, before the idle timeout %v", d, idle)
	}
	ev := log.waitFor(t, "stream error", 5*time.Second, func(e Event) bool {
		return e.Type == EventStreamError && e.Peer.SystemID == "silent"
	})
	if !errors.Is(ev.Err, ErrIdle) {
		t.Fatalf("event error %v, want ErrIdle", ev.Err)
	}
}

// beat sends a heartbeat on p's stream and waits for the node's reply, so
// that the node has received it.
func (p *rawPeer) beat(t *testing.T) {
	t.Helper()
	buf, err := batch.EncodeControl(&courierv1.Frame{Kind: &courierv1.Frame_Heartbeat{Heartbeat: &courierv1.Heartbeat{Nanos: 1}}})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.s.SendMsg(buf); err != nil {
		t.Fatal(err)
	}
	var in wire.InFrame
	defer in.Free()
	if err := p.s.RecvMsg(&in); err != nil {
		t.Fatalf("no heartbeat reply: %v", err)
	}
}

// TestIdleWatchdog drives the idle watchdog with a clock of its own: a
// peer counts as idle only when none of its streams has received anything
// for the idle timeout, and a peer that keeps sending heartbeats stays.
func TestIdleWatchdog(t *testing.T) {
	t.Parallel()
	node := newNode(t, newCollector()) // the default idle timeout, far off in real time
	idle := node.o.idleTimeout
	silent, err := tryRaw(t, node.Addr(), helloFrom("silent", 1))
	if err != nil {
		t.Fatal(err)
	}
	beating, err := tryRaw(t, node.Addr(), helloFrom("beating", 1))
	if err != nil {
		t.Fatal(err)
	}
	// A second stream of the beating peer that never sends: the peer is
	// alive as long as any of its streams receives.
	h := helloFrom("beating", 1)
	h.Lane = courierv1.Lane_LANE_SYSTEM
	quiet, err := tryRaw(t, node.Addr(), h)
	if err != nil {
		t.Fatal(err)
	}
	// The node tracks a stream just after its Welcome.
	var beatings []*liveStream
	testutil.Eventually(t, "the node to track the three streams", patience, func() bool {
		beatings = streamsFrom(node, "beating")
		return len(beatings) == 2 && len(streamsFrom(node, "silent")) == 1
	})
	t0 := time.Now()
	node.closeIdle(t0)
	for i := 1; i <= 4; i++ {
		beating.beat(t)
		node.closeIdle(t0.Add(time.Duration(i) * idle / 2))
	}
	if code := silent.end(t); code != codes.DeadlineExceeded {
		t.Fatalf("silent stream ended with %v, want DeadlineExceeded", code)
	}
	beating.beat(t) // still open
	if n := killed(beatings); n != 0 {
		t.Fatalf("the watchdog killed %d of the beating peer's streams", n)
	}
	// Once it stops, it is idle too, on both streams. Its receive loops
	// must be back in RecvMsg first: one still finishing the last heartbeat
	// looks busy to the watchdog, and would restart its idle time.
	testutil.Eventually(t, "the beating peer's receive loops to wait for frames", patience, func() bool {
		for _, l := range beatings {
			if l.rcv.Waits()&1 == 0 {
				return false
			}
		}
		return true
	})
	node.closeIdle(t0.Add(4*idle + idle/2))
	node.closeIdle(t0.Add(6 * idle))
	for _, p := range []*rawPeer{beating, quiet} {
		if code := p.end(t); code != codes.DeadlineExceeded {
			t.Fatalf("stream ended with %v after the heartbeats stopped, want DeadlineExceeded", code)
		}
	}
}

// TestIdleTimeoutSparesSlowHandler: a stream whose frames wait for this
// node's own slow handler is not idle, however long the handler takes. The
// watchdog runs on a clock of its own.
func TestIdleTimeoutSparesSlowHandler(t *testing.T) {
	t.Parallel()
	recv := newCollector()
	entered, release := make(chan struct{}), make(chan struct{})
	node := newNode(t, HandlerFunc(func(p Peer, env *Envelope) {
		if string(env.Payload) == "slow" {
			close(entered)
			<-release
		}
		recv.Deliver(p, env)
	}))
	idle := node.o.idleTimeout
	p, err := tryRaw(t, node.Addr(), helloFrom("raw", 1))
	if err != nil {
		t.Fatal(err)
	}
	var raws []*liveStream
	testutil.Eventually(t, "the node to track the stream", patience, func() bool {
		raws = streamsFrom(node, "raw")
		return len(raws) == 1
	})
	send := func(pos uint64, payload string, strs ...string) {
		t.Helper()
		b := &courierv1.Batch{Position: pos, Envelopes: []*courierv1.Envelope{{Target: 1, Payload: []byte(payload)}}}
		for _, s := range strs {
			b.NewStrings = append(b.NewStrings, []byte(s))
		}
		p.sendRaw(t, append([]byte{0}, mustMarshal(t, &courierv1.Frame{Kind: &courierv1.Frame_Batch{Batch: b}})...))
	}
	t0 := time.Now()
	node.closeIdle(t0)
	send(1, "slow", "t")
	<-entered
	for i := 1; i <= 6; i++ { // the handler holds the stream for 3 idle timeouts
		node.closeIdle(t0.Add(time.Duration(i) * idle / 2))
	}
	close(release)
	send(2, "after")
	got := recv.wait(t, 2, 10*time.Second)
	if string(got[1].Payload) != "after" {
		t.Fatalf("second delivery %q", got[1].Payload)
	}
	if killed(raws) != 0 {
		t.Fatal("the watchdog killed the stream while the handler was slow")
	}
}

// TestIdleTimeoutSparesQuietPeers: two nodes with nothing to say to each
// other for many idle timeouts stay connected: the control stream's
// heartbeats keep the peer alive, its silent user stream too. b's idle
// watchdog runs on a clock of its own, and looks again only once a has had
// a heartbeat answered, that is once b has received one.
func TestIdleTimeoutSparesQuietPeers(t *testing.T) {
	t.Parallel()
	recv := newCollector()
	b := newNode(t, recv)
	idle := b.o.idleTimeout
	a := newNode(t, newCollector(), WithHeartbeatInterval(20*time.Millisecond))
	if err := a.Send(context.Background(), b.Addr(), &Envelope{Target: "x", Payload: []byte("1")}); err != nil {
		t.Fatal(err)
	}
	recv.wait(t, 1, 10*time.Second)
	var streams []*liveStream
	testutil.Eventually(t, "b to track both of a's streams", patience, func() bool {
		streams = streamsFrom(b, a.SystemID())
		return len(streams) == 2
	})
	ep := endpointOf(t, a, b.Addr())
	replies := func() uint64 { return ep.Stats().ControlFrames }
	t0 := time.Now()
	b.closeIdle(t0)
	for i := 1; i <= 6; i++ {
		n := replies()
		testutil.Eventually(t, "a heartbeat answered", 10*time.Second, func() bool { return replies() != n })
		b.closeIdle(t0.Add(time.Duration(i) * idle / 2))
	}
	if n := killed(streams); n != 0 {
		t.Fatalf("the watchdog killed %d of a quiet peer's streams", n)
	}
	if err := a.Send(context.Background(), b.Addr(), &Envelope{Target: "x", Payload: []byte("2")}); err != nil {
		t.Fatal(err)
	}
	recv.wait(t, 2, 10*time.Second)
}

// TestClientGoneAfterIdle: the endpoint of a client-only peer that went
// away ends after the idle timeout: what was queued for it is
// dead-lettered, its watchers are told Terminated, the address is
// forgotten, and the same incarnation is refused from then on.
func TestClientGoneAfterIdle(t *testing.T) {
	t.Parallel()
	const idle = time.Second
	srvRecv := newCollector()
	dead := make(chan DeadLetter, 16)
	server := newNode(t, srvRecv, WithHeartbeatInterval(100*time.Millisecond), WithIdleTimeout(idle),
		WithDeadLetterHandler(func(d DeadLetter) { dead <- d }))
	log := watch(server)
	client, err := New(WithHandler(newCollector()), WithSystemID("leaver"))
	if err != nil {
		t.Fatal(err)
	}
	if err := client.Send(context.Background(), server.Addr(), &Envelope{Target: "srv"}); err != nil {
		t.Fatal(err)
	}
	srvRecv.wait(t, 1, 10*time.Second)
	srvRecv.mu.Lock()
	addr := srvRecv.from[0].Address
	srvRecv.mu.Unlock()
	if err := server.Watch(context.Background(), addr, "watcher", "client-actor"); err != nil {
		t.Fatal(err)
	}
	if err := client.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	const queued = 5
	for i := range queued {
		if err := server.Send(context.Background(), addr, &Envelope{Target: "client-actor", Payload: []byte(fmt.Sprint(i))}); err != nil {
			t.Fatalf("send %d before the idle timeout: %v", i, err)
		}
	}
	ev := log.waitFor(t, "terminated", 10*time.Second, func(e Event) bool {
		return e.Type == EventTerminated && e.Address == addr
	})
	if !errors.Is(ev.Err, ErrIdle) {
		t.Fatalf("terminated with %v, want ErrIdle", ev.Err)
	}
	for i := range queued {
		select {
		case d := <-dead:
			if d.Reason != ReasonEndpointTerminated || d.Address != addr {
				t.Fatalf("dead letter %d: %+v", i, d)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("%d of %d queued envelopes dead-lettered", i, queued)
		}
	}
	term := srvRecv.wait(t, 2, 5*time.Second)[1]
	if term.Kind != batch.KindTerminated || term.Target != "watcher" || len(term.Header) != 1 ||
		term.Header[0] != (batch.Header{Key: ReasonHeader, Value: AddressTerminated}) {
		t.Fatalf("watcher got %+v", term)
	}
	testutil.Eventually(t, "the client's address to be forgotten", 5*time.Second, func() bool {
		_, ok := server.Stats(addr)
		return !ok
	})
	if err := server.Send(context.Background(), addr, &Envelope{Target: "client-actor"}); !errors.Is(err, ErrUnknownClient) {
		t.Fatalf("send after the client left: %v, want ErrUnknownClient", err)
	}
	if !server.quarantined(Peer{SystemID: "leaver", Incarnation: client.Incarnation()}) {
		t.Fatal("the client's incarnation is not quarantined")
	}
}

// TestNodeFrameLimits: the node's own frame and dictionary limits hold
// against a peer that proposes larger ones.
func TestNodeFrameLimits(t *testing.T) {
	t.Parallel()
	node := newNode(t, newCollector(), WithMaxFrameBytes(4096), WithDictionaryLimits(16, 1024))
	log := watch(node)
	big := &courierv1.Batch{Position: 1, NewStrings: [][]byte{[]byte("t")},
		Envelopes: []*courierv1.Envelope{{Target: 1, Payload: make([]byte, 4500)}}}
	many := &courierv1.Batch{Position: 1}
	for i := range 17 {
		many.NewStrings = append(many.NewStrings, []byte(fmt.Sprint("s", i)))
	}
	cases := []struct {
		name string
		b    *courierv1.Batch
		err  error
	}{
		{"frame", big, batch.ErrFrameTooLarge},
		{"dictionary", many, batch.ErrDictionaryOverflow},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p, err := tryRaw(t, node.Addr(), helloFrom("big", uint64(10+i))) // proposes the default limits
			if err != nil {
				t.Fatal(err)
			}
			p.sendRaw(t, append([]byte{0}, mustMarshal(t, &courierv1.Frame{Kind: &courierv1.Frame_Batch{Batch: c.b}})...))
			if code := p.end(t); code != codes.ResourceExhausted {
				t.Fatalf("stream ended with %v, want ResourceExhausted", code)
			}
			ev := log.waitFor(t, "stream error", 5*time.Second, func(e Event) bool {
				return e.Type == EventStreamError && e.Peer.Incarnation == uint64(10+i)
			})
			if !errors.Is(ev.Err, c.err) {
				t.Fatalf("event error %v, want %v", ev.Err, c.err)
			}
		})
	}
}

// TestLimitOptionsValidated: New reports each bad limit.
func TestLimitOptionsValidated(t *testing.T) {
	t.Parallel()
	_, err := New(WithHandler(newCollector()), WithMaxInboundConnections(0), WithMaxStreamsPerPeer(1),
		WithHeartbeatInterval(time.Second), WithIdleTimeout(time.Second))
	if !errors.Is(err, ErrInvalidOption) {
		t.Fatalf("New: %v, want ErrInvalidOption", err)
	}
	for _, name := range []string{"WithMaxInboundConnections(0)", "WithMaxStreamsPerPeer(1)", "WithIdleTimeout(1s)"} {
		if !strings.Contains(err.Error(), name) {
			t.Errorf("error %q does not mention %s", err, name)
		}
	}
}
