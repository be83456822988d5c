package manager

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/courier-go/courier/batch"
	"github.com/courier-go/courier/internal/wire"
	courierv1 "github.com/courier-go/courier/proto/courier/v1"
	"github.com/courier-go/courier/proto/courier/v1/transportv1"
	"github.com/courier-go/courier/reader"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
)

// rawPeer is a hand-driven client of a node's Transport service.
type rawPeer struct {
	conn *grpc.ClientConn
	s    transportv1.Transport_ConnectClient
}

func dialRaw(t *testing.T, addr string) *rawPeer {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	s, err := transportv1.NewTransportClient(conn).Connect(context.Background(), grpc.ForceCodecV2(wire.Codec{}))
	if err != nil {
		t.Fatal(err)
	}
	return &rawPeer{conn: conn, s: s}
}

func goodHello() *courierv1.Hello {
	return &courierv1.Hello{
		ProtocolVersion: wire.ProtocolVersion, SystemId: "raw", Incarnation: 99,
		Address: "127.0.0.1:1", Lane: courierv1.Lane_LANE_USER, Limits: batch.DefaultLimits().Proto(),
	}
}

// handshake sends hello and returns the Welcome or the refusal.
func (p *rawPeer) handshake(hello *courierv1.Hello) (*courierv1.Welcome, error) {
	return wire.Dial(p.s, hello)
}

// sendRaw sends frame bytes as they are.
func (p *rawPeer) sendRaw(t *testing.T, frame []byte) {
	t.Helper()
	buf := batch.GetBuffer(len(frame))
	copy(buf.B, frame)
	if err := p.s.SendMsg(buf); err != nil {
		t.Fatal(err)
	}
}

// end waits for the stream to end and returns its status code. A stream
// still open after patience fails the test, instead of hanging it.
func (p *rawPeer) end(t *testing.T) codes.Code {
	t.Helper()
	ended := make(chan codes.Code, 1)
	go func() {
		var in wire.InFrame
		defer in.Free()
		for {
			if err := p.s.RecvMsg(&in); err != nil {
				ended <- status.Code(err)
				return
			}
		}
	}()
	timer := time.NewTimer(patience)
	defer timer.Stop()
	select {
	case code := <-ended:
		return code
	case <-timer.C:
		p.conn.Close() // ends the receiving goroutine
		<-ended
		t.Fatalf("the stream is still open after %v", patience)
		return codes.OK
	}
}

func TestRefusesWrongProtocolVersion(t *testing.T) {
	t.Parallel()
	node := newNode(t, newCollector())
	log := watch(node)
	p := dialRaw(t, node.Addr())
	hello := goodHello()
	hello.ProtocolVersion = 2
	_, err := p.handshake(hello)
	if !errors.Is(err, ErrVersion) || !errors.Is(err, ErrRefused) {
		t.Fatalf("handshake = %v, want a version refusal", err)
	}
	if code := p.end(t); code != codes.FailedPrecondition {
		t.Fatalf("stream ended with %v", code)
	}
	ev := log.waitFor(t, "peer refused", 5*time.Second, func(e Event) bool { return e.Type == EventPeerRefused })
	if !errors.Is(ev.Err, ErrVersion) || ev.Peer.SystemID != "raw" {
		t.Fatalf("event %+v", ev)
	}
}

func TestRefusesInvalidHello(t *testing.T) {
	t.Parallel()
	node := newNode(t, newCollector())
	for name, mutate := range map[string]func(*courierv1.Hello){
		"no system id":   func(h *courierv1.Hello) { h.SystemId = "" },
		"no incarnation": func(h *courierv1.Hello) { h.Incarnation = 0 },
		"no lane":        func(h *courierv1.Hello) { h.Lane = courierv1.Lane_LANE_UNSPECIFIED },
	} {
		t.Run(name, func(t *testing.T) {
			h := goodHello()
			mutate(h)
			if _, err := dialRaw(t, node.Addr()).handshake(h); !errors.Is(err, wire.ErrInvalidHello) {
				t.Fatalf("handshake = %v, want ErrInvalidHello", err)
			}
		})
	}
}

func TestHandshakeTimeout(t *testing.T) {
	t.Parallel()
	node := newNode(t, newCollector(), WithHandshakeTimeout(100*time.Millisecond))
	log := watch(node)
	p := dialRaw(t, node.Addr())
	start := time.Now()
	if code := p.end(t); code != codes.DeadlineExceeded {
		t.Fatalf("silent stream ended with %v, want DeadlineExceeded", code)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("silent stream lasted %v", d)
	}
	ev := log.waitFor(t, "peer refused", 5*time.Second, func(e Event) bool { return e.Type == EventPeerRefused })
	if !errors.Is(ev.Err, wire.ErrHandshake) {
		t.Fatalf("event error %v", ev.Err)
	}
}

// TestBadFramesCloseTheStream: after a good handshake, each kind of bad
// frame closes that stream with a status and an event carrying the typed
// error, and the node goes on serving other peers.
func TestBadFramesCloseTheStream(t *testing.T) {
	t.Parallel()
	recv := newCollector()
	node := newNode(t, recv)
	log := watch(node)
	small := batch.DefaultLimits()
	small.MaxFrameBytes = 4096
	small.MaxDictionaryEntries = 16

	manyStrings := &courierv1.Batch{Position: 1}
	for i := range 17 {
		manyStrings.NewStrings = append(manyStrings.NewStrings, []byte(fmt.Sprint("s", i)))
	}
	big := &courierv1.Batch{Position: 1, NewStrings: [][]byte{[]byte("t")},
		Envelopes: []*courierv1.Envelope{{Target: 1, Payload: make([]byte, 8000)}}}
	frame := func(b *courierv1.Batch) []byte {
		body, err := (&courierv1.Frame{Kind: &courierv1.Frame_Batch{Batch: b}}).MarshalVT()
		if err != nil {
			t.Fatal(err)
		}
		return append([]byte{0}, body...)
	}
	cases := []struct {
		name  string
		frame []byte
		code  codes.Code
		err   error
	}{
		{"garbage", []byte{0, 0xff, 0xff, 0xff}, codes.InvalidArgument, batch.ErrCorruptFrame},
		{"reserved flags", []byte{0x40, 0x1a, 0}, codes.InvalidArgument, batch.ErrCorruptFrame},
		{"oversize frame", frame(big), codes.ResourceExhausted, batch.ErrFrameTooLarge},
		{"dictionary overflow", frame(manyStrings), codes.ResourceExhausted, batch.ErrDictionaryOverflow},
		{"unknown string", frame(&courierv1.Batch{Position: 1, Envelopes: []*courierv1.Envelope{{Target: 3}}}), codes.InvalidArgument, batch.ErrUnknownString},
		{"second hello", append([]byte{0}, mustMarshal(t, &courierv1.Frame{Kind: &courierv1.Frame_Hello{Hello: goodHello()}})...), codes.InvalidArgument, nil},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := dialRaw(t, node.Addr())
			h := goodHello()
			h.Incarnation = uint64(1000 + i)
			h.Limits = small.Proto()
			if _, err := p.handshake(h); err != nil {
				t.Fatal(err)
			}
			p.sendRaw(t, c.frame)
			if code := p.end(t); code != c.code {
				t.Fatalf("stream ended with %v, want %v", code, c.code)
			}
			ev := log.waitFor(t, "stream error", 5*time.Second, func(e Event) bool {
				return e.Type == EventStreamError && e.Peer.Incarnation == h.Incarnation
			})
			if c.err != nil && !errors.Is(ev.Err, c.err) {
				t.Fatalf("event error %v, want %v", ev.Err, c.err)
			}
		})
	}
	// The node still serves a well-behaved peer.
	a := newNode(t, newCollector())
	if err := a.Send(context.Background(), node.Addr(), &Envelope{Target: "ok"}); err != nil {
		t.Fatal(err)
	}
	recv.wait(t, 1, 10*time.Second)
}

func mustMarshal(t *testing.T, f *courierv1.Frame) []byte {
	b, err := f.MarshalVT()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// refusingServer answers every Hello with a refusal and counts attempts.
type refusingServer struct {
	transportv1.UnimplementedTransportServer
	reason   courierv1.RefuseReason
	attempts atomic.Int64
}

func (s *refusingServer) Connect(stream transportv1.Transport_ConnectServer) error {
	s.attempts.Add(1)
	_, _, err := wire.Accept(stream.Context(), stream, time.Second, func(*courierv1.Hello) (*courierv1.Welcome, error) {
		return nil, wire.Refuse(s.reason, "go away")
	})
	return status.Error(codes.PermissionDenied, err.Error())
}

// TestDialerSurfacesRefusal: a node whose peer refuses it reports the
// refusal as an event and a terminated endpoint, dead-letters what it
// queued, and does not retry in a loop.
func TestDialerSurfacesRefusal(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		reason courierv1.RefuseReason
		err    error
		dead   DeadLetterReason
	}{
		{courierv1.RefuseReason_REFUSE_REASON_VERSION, ErrVersion, ReasonEndpointTerminated},
		{courierv1.RefuseReason_REFUSE_REASON_BLOCKED, ErrBlocked, ReasonBlocked},
	} {
		t.Run(c.err.Error(), func(t *testing.T) {
			srv := &refusingServer{reason: c.reason}
			addr := serveFake(t, srv)
			dead := make(chan DeadLetter, 10)
			a := newNode(t, newCollector(), WithDeadLetterHandler(func(d DeadLetter) { dead <- d }))
			log := watch(a)
			queued := sendToRefuser(t, a, addr)
			ep := endpointOf(t, a, addr)
			ev := log.waitFor(t, "peer refused", 5*time.Second, func(e Event) bool { return e.Type == EventPeerRefused })
			if !errors.Is(ev.Err, c.err) {
				t.Fatalf("event error %v, want %v", ev.Err, c.err)
			}
			log.waitFor(t, "terminated", 5*time.Second, func(e Event) bool { return e.Type == EventTerminated })
			if queued {
				select {
				case d := <-dead:
					if d.Reason != c.dead || d.Envelope.Target != "t" {
						t.Fatalf("dead letter %+v", d)
					}
				case <-time.After(5 * time.Second):
					t.Fatal("the queued envelope was not dead-lettered")
				}
			}
			if err := a.Send(context.Background(), addr, &Envelope{Target: "t"}); !errors.Is(err, ErrEndpointTerminated) {
				t.Fatalf("Send to a refused peer = %v, want ErrEndpointTerminated", err)
			}
			// The endpoint's goroutine has returned, so it dials no more, and
			// no Send replaced it. It reports each attempt's refusal before
			// its end, and events arrive in order: with its terminated event
			// in, so is every refusal it reported.
			endpointEnded(t, ep)
			if endpointOf(t, a, addr) != ep {
				t.Fatal("a Send to the refusing peer made a new endpoint, which dials it again")
			}
			if n := log.count(func(e Event) bool { return e.Type == EventPeerRefused }); n != 1 {
				t.Fatalf("%d refusals: the dialer retried", n)
			}
			if n := srv.attempts.Load(); n > 2 { // a stream per lane
				t.Fatalf("%d connection attempts after a refusal", n)
			}
		})
	}
}

func serveFake(t *testing.T, srv transportv1.TransportServer) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer()
	transportv1.RegisterTransportServer(g, srv)
	go func() { _ = g.Serve(lis) }()
	t.Cleanup(g.Stop)
	return lis.Addr().String()
}

// hostileBatch is a self-contained batch frame at pos: it resets the
// dictionary and defines one string per envelope, its target. targets[i]
// becomes envelope i, of system kind kinds[i] when kinds is long enough; an
// empty target is sent as dictionary id 0, "no target".
func hostileBatch(t *testing.T, pos uint64, targets []string, kinds ...courierv1.SystemKind) []byte {
	t.Helper()
	b := &courierv1.Batch{Position: pos, ResetDictionary: true}
	for i, target := range targets {
		env := &courierv1.Envelope{Payload: []byte(target)}
		if target != "" {
			b.NewStrings = append(b.NewStrings, []byte(target))
			env.Target = uint32(len(b.NewStrings))
		}
		if i < len(kinds) {
			env.SystemKind = kinds[i]
		}
		b.Envelopes = append(b.Envelopes, env)
	}
	return append([]byte{0}, mustMarshal(t, &courierv1.Frame{Kind: &courierv1.Frame_Batch{Batch: b}})...)
}

// probe sends a heartbeat behind every frame sent before it and reads until
// the node answers it or ends the stream. The node handles a stream's
// frames in order, so an answer means it accepted all of them: probe then
// returns codes.OK; otherwise the code the stream ended with.
func (p *rawPeer) probe(t *testing.T) codes.Code {
	t.Helper()
	hb, err := batch.EncodeControl(&courierv1.Frame{Kind: &courierv1.Frame_Heartbeat{Heartbeat: &courierv1.Heartbeat{Nanos: 1}}})
	if err != nil {
		t.Fatal(err)
	}
	_ = p.s.SendMsg(hb) // fails if the node has ended the stream: RecvMsg says how
	dec, err := batch.NewDecoder(batch.DecoderConfig{})
	if err != nil {
		t.Fatal(err)
	}
	defer dec.Close()
	var in wire.InFrame
	defer in.Free()
	for {
		if err := p.s.RecvMsg(&in); err != nil {
			return status.Code(err)
		}
		d, err := dec.DecodeSegments(in.Segments())
		if err != nil {
			t.Fatalf("frame from the node: %v", err)
		}
		if d.Kind == batch.FrameHeartbeat && d.Control.GetHeartbeat().GetReply() {
			return codes.OK
		}
	}
}

// deliveredFrom returns the targets c received from a peer incarnation, in
// order.
func (c *collector) deliveredFrom(incarnation uint64) []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for i, p := range c.from {
		if p.Incarnation == incarnation {
			out = append(out, c.envs[i].Target)
		}
	}
	return out
}

// hostileCase is a run of frames a peer sends after a valid handshake, and
// how the node must answer: with the targets it delivers, and, unless want
// is nil, a closed stream with an InvalidArgument status and a stream-error
// event whose error wraps want.
type hostileCase struct {
	name   string
	lane   courierv1.Lane
	frames func(t *testing.T) [][]byte
	want   error
	got    []string
}

func runHostile(t *testing.T, cases []hostileCase) {
	t.Helper()
	recv := newCollector()
	node := newNode(t, recv)
	log := watch(node)
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := dialRaw(t, node.Addr())
			h := goodHello()
			h.Incarnation = uint64(2000 + i)
			if c.lane != courierv1.Lane_LANE_UNSPECIFIED {
				h.Lane = c.lane
			}
			if _, err := p.handshake(h); err != nil {
				t.Fatal(err)
			}
			for _, f := range c.frames(t) {
				p.sendRaw(t, f)
			}
			code := p.probe(t)
			// The stream has ended or answered: what it delivered is final.
			if got := recv.deliveredFrom(h.Incarnation); fmt.Sprintf("%q", got) != fmt.Sprintf("%q", c.got) {
				t.Errorf("delivered %q, want %q", got, c.got)
			}
			if c.want == nil {
				if code != codes.OK {
					t.Fatalf("stream ended with %v, want it open", code)
				}
				return
			}
			if code != codes.InvalidArgument {
				t.Fatalf("stream ended with %v, want InvalidArgument", code)
			}
			ev := log.waitFor(t, "stream error", 5*time.Second, func(e Event) bool {
				return e.Type == EventStreamError && e.Peer.Incarnation == h.Incarnation
			})
			if !errors.Is(ev.Err, c.want) || !errors.Is(ev.Err, reader.ErrProtocol) {
				t.Fatalf("event error %v, want %v", ev.Err, c.want)
			}
		})
	}
}

func frames(fs ...func(t *testing.T) []byte) func(t *testing.T) [][]byte {
	return func(t *testing.T) [][]byte {
		var out [][]byte
		for _, f := range fs {
			out = append(out, f(t))
		}
		return out
	}
}

func at(pos uint64, targets ...string) func(t *testing.T) []byte {
	return func(t *testing.T) []byte { return hostileBatch(t, pos, targets) }
}

func kinded(pos uint64, target string, kind courierv1.SystemKind) func(t *testing.T) []byte {
	return func(t *testing.T) []byte { return hostileBatch(t, pos, []string{target}, kind) }
}

// TestRefusesEnvelopeWithoutTarget: the schema requires a target, and Send
// refuses an envelope without one; one that arrives anyway closes the
// stream, and is not delivered.
func TestRefusesEnvelopeWithoutTarget(t *testing.T) {
	t.Parallel()
	runHostile(t, []hostileCase{
		{name: "target id 0", frames: frames(at(1, "ok"), at(2, "")), want: reader.ErrInvalidEnvelope, got: []string{"ok"}},
		{name: "target defined empty", frames: frames(at(1, "ok"), func(t *testing.T) []byte {
			return append([]byte{0}, mustMarshal(t, &courierv1.Frame{Kind: &courierv1.Frame_Batch{Batch: &courierv1.Batch{
				Position: 2, NewStrings: [][]byte{{}}, Envelopes: []*courierv1.Envelope{{Target: 2}},
			}}})...)
		}), want: reader.ErrInvalidEnvelope, got: []string{"ok"}},
		{name: "after valid ones in the same batch", frames: frames(at(1, "a", "b", "")), want: reader.ErrInvalidEnvelope},
		{name: "system lane", lane: courierv1.Lane_LANE_SYSTEM, frames: frames(at(1, "")), want: reader.ErrInvalidEnvelope},
	})
}

// TestRefusesBadPositions: a batch whose positions would lose or reorder
// envelopes, or that wraps, closes the stream instead of being delivered
// or dropped as duplicates.
func TestRefusesBadPositions(t *testing.T) {
	t.Parallel()
	const top = ^uint64(0)
	runHostile(t, []hostileCase{
		{name: "position 0", frames: frames(at(0, "a")), want: reader.ErrBadPosition},
		{name: "empty batch at 0", frames: frames(at(0)), want: reader.ErrBadPosition},
		{name: "gap at the start", frames: frames(at(5, "a")), want: reader.ErrBadPosition},
		{name: "gap after a delivery", frames: frames(at(1, "a"), at(3, "b")), want: reader.ErrBadPosition, got: []string{"a"}},
		{name: "gap after a skip", frames: frames(at(10), at(12, "b")), want: reader.ErrBadPosition},
		{name: "wraps past 2^64", frames: frames(at(top), at(top, "a", "b")), want: reader.ErrBadPosition},
		{name: "wraps from the start", frames: frames(at(top-1, "a", "b", "c")), want: reader.ErrBadPosition},
		{name: "system lane gap", lane: courierv1.Lane_LANE_SYSTEM, frames: frames(at(1, "a"), at(5, "b")), want: reader.ErrBadPosition, got: []string{"a"}},
	})
}

// TestAcceptsPositionRules: what courier's own writer sends stays accepted:
// resends that overlap what was delivered, stale skips, skips forward, and
// the last position there is.
func TestAcceptsPositionRules(t *testing.T) {
	t.Parallel()
	const top = ^uint64(0)
	runHostile(t, []hostileCase{{
		name: "resends and skips",
		frames: frames(at(1, "a", "b"), at(2, "b", "c"), at(1, "a"), at(2), at(4, "d"),
			at(10), at(3), at(10, "e"), at(top), at(top, "f"), at(top-1, "e2", "f2")),
		got: []string{"a", "b", "c", "d", "e", "f"},
	}})
}

// TestRefusesKindOffLane: the user lane carries only kind none, the system
// lane the kinds courier knows and none; any other closes the stream.
func TestRefusesKindOffLane(t *testing.T) {
	t.Parallel()
	sys := courierv1.Lane_LANE_SYSTEM
	runHostile(t, []hostileCase{
		{name: "watch on the user lane", frames: frames(at(1, "ok"), kinded(2, "w", courierv1.SystemKind_SYSTEM_KIND_WATCH)),
			want: reader.ErrInvalidEnvelope, got: []string{"ok"}},
		{name: "stop on the user lane", frames: frames(kinded(1, "s", courierv1.SystemKind_SYSTEM_KIND_STOP)), want: reader.ErrInvalidEnvelope},
		{name: "unknown kind on the user lane", frames: frames(kinded(1, "x", 9)), want: reader.ErrInvalidEnvelope},
		{name: "unknown kind on the system lane", lane: sys,
			frames: frames(kinded(1, "s", courierv1.SystemKind_SYSTEM_KIND_STOP), at(2, "n"), kinded(3, "x", 9)),
			want:   reader.ErrInvalidEnvelope, got: []string{"s", "n"}},
		{name: "kind 255 on the system lane", lane: sys, frames: frames(kinded(1, "x", 255)), want: reader.ErrInvalidEnvelope},
	})
}
