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

// end waits for the stream to end and returns its status code.
func (p *rawPeer) end(t *testing.T) codes.Code {
	t.Helper()
	var in wire.InFrame
	defer in.Free()
	for {
		err := p.s.RecvMsg(&in)
		if err != nil {
			return status.Code(err)
		}
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
			if err := a.Send(context.Background(), addr, &Envelope{Target: "t"}); err != nil {
				t.Fatal(err)
			}
			ev := log.waitFor(t, "peer refused", 5*time.Second, func(e Event) bool { return e.Type == EventPeerRefused })
			if !errors.Is(ev.Err, c.err) {
				t.Fatalf("event error %v, want %v", ev.Err, c.err)
			}
			log.waitFor(t, "terminated", 5*time.Second, func(e Event) bool { return e.Type == EventTerminated })
			select {
			case d := <-dead:
				if d.Reason != c.dead || d.Envelope.Target != "t" {
					t.Fatalf("dead letter %+v", d)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("the queued envelope was not dead-lettered")
			}
			if err := a.Send(context.Background(), addr, &Envelope{Target: "t"}); !errors.Is(err, ErrEndpointTerminated) {
				t.Fatalf("Send to a refused peer = %v, want ErrEndpointTerminated", err)
			}
			time.Sleep(200 * time.Millisecond)
			if n := srv.attempts.Load(); n > 2 {
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
