package courierremote

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/courier-go/courier/batch"
	"github.com/courier-go/courier/manager"
	transportv1 "github.com/courier-go/courier/proto/courier/v1/transportv1"
	"github.com/courier-go/courier/serial"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// plainNode starts a courier node that is not an actor system: what it
// receives goes to got.
func plainNode(t *testing.T) (*manager.Manager, chan manager.Envelope) {
	t.Helper()
	got := make(chan manager.Envelope, 64)
	m, err := manager.New(manager.WithListenAddress("127.0.0.1:0"), fastGiveUp,
		manager.WithHandler(manager.HandlerFunc(func(_ manager.Peer, env *manager.Envelope) { got <- env.Clone() })))
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := m.Close(ctx); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return m, got
}

func TestGarbageFromAPlainCourierNode(t *testing.T) {
	b := startNode(t, nil)
	b.spawn("echo", echo)
	ours := record[*DeadLetterEvent](t, b)
	theirs := record[*actor.DeadLetterEvent](t, b)
	plain, got := plainNode(t)
	ctx := context.Background()

	good, err := serial.New()
	if err != nil {
		t.Fatal(err)
	}
	valid := func(target string) *manager.Envelope {
		env := &manager.Envelope{Target: target, SenderID: "me"}
		if err := good.Encode(env, wrapperspb.String(target), serial.ProtobufID); err != nil {
			t.Fatal(err)
		}
		return env
	}
	for _, c := range []struct {
		name   string
		env    *manager.Envelope
		reason string
		is     error
	}{
		{"unknown type", &manager.Envelope{Target: "echo", SenderID: "me", TypeName: "no.such.Type", Payload: []byte{1, 2, 3}},
			ReasonUnknownType, serial.ErrUnknownType},
		{"unknown serializer", &manager.Envelope{Target: "echo", TypeName: "google.protobuf.StringValue", SerializerID: 77, Payload: []byte{}},
			ReasonUnknownType, serial.ErrUnknownSerializer},
		{"garbage payload", &manager.Envelope{Target: "echo", TypeName: "google.protobuf.StringValue", Payload: []byte{0xff, 0xff, 0xff}},
			ReasonUndecodable, serial.ErrDecode},
		{"garbage JSON", &manager.Envelope{Target: "echo", TypeName: "google.protobuf.StringValue", SerializerID: serial.JSONID, Payload: []byte("{nope")},
			ReasonUndecodable, serial.ErrDecode},
		{"no such process", valid("nobody"), ReasonNoSuchProcess, ErrNoSuchProcess},
		{"system lane garbage", &manager.Envelope{Target: "echo", Lane: batch.LaneSystem, TypeName: "no.such.Type", Payload: []byte{9}},
			ReasonUnknownType, serial.ErrUnknownType},
		{"stop of no such process", &manager.Envelope{Target: "nobody", Lane: batch.LaneSystem, Kind: batch.KindStop},
			ReasonNoSuchProcess, ErrNoSuchProcess},
	} {
		before := len(ours.all())
		if err := plain.Send(ctx, b.r.Address(), c.env); err != nil {
			t.Fatalf("%s: Send: %v", c.name, err)
		}
		ours.wait(t, c.name+" dead letter", 5*time.Second, func(*DeadLetterEvent) bool { return len(ours.all()) > before })
		dl := ours.all()[before]
		if dl.Reason != c.reason || !errors.Is(dl.Err, c.is) || dl.PID.GetId() != c.env.Target || dl.PID.GetAddress() != b.r.Address() {
			t.Fatalf("%s: dead letter %q for %v, err %v; want %q wrapping %v for %s", c.name, dl.Reason, dl.PID, dl.Err, c.reason, c.is, c.env.Target)
		}
		if c.env.SenderID != "" && (dl.Sender.GetId() != c.env.SenderID || dl.Sender.GetAddress() != plain.AdvertisedAddress()) {
			t.Fatalf("%s: dead letter sender %v, want me@%s", c.name, dl.Sender, plain.AdvertisedAddress())
		}
		theirs.wait(t, c.name+" actor.DeadLetterEvent", 5*time.Second, func(e *actor.DeadLetterEvent) bool {
			return e.PID.GetId() == c.env.Target && e.Message == dl.Message
		})
	}

	// The requests that had a sender were answered with a
	// DeadLetterResponse, the way a future learns of its dead letter.
	deadAnswers := 0
	for deadAnswers < 2 {
		env := nextEnvelope(t, got)
		if env.TypeName != "actor.DeadLetterResponse" || env.Target != "me" {
			t.Fatalf("plain node got %s for %q, want actor.DeadLetterResponse for me", env.TypeName, env.Target)
		}
		deadAnswers++
	}

	// b goes on serving a proper request.
	if err := plain.Send(ctx, b.r.Address(), valid("echo")); err != nil {
		t.Fatal(err)
	}
	env := nextEnvelope(t, got)
	msg, err := good.Decode(&env)
	if err != nil {
		t.Fatalf("reply: %v", err)
	}
	want := "ECHO from=me@" + plain.AdvertisedAddress()
	if v, ok := msg.(*wrapperspb.StringValue); !ok || v.Value != want || env.Target != "me" {
		t.Fatalf("reply %v to %q, want %q to me", msg, env.Target, want)
	}
}

func nextEnvelope(t *testing.T, got chan manager.Envelope) manager.Envelope {
	t.Helper()
	select {
	case env := <-got:
		return env
	case <-time.After(10 * time.Second):
		t.Fatal("the plain node received nothing")
		return manager.Envelope{}
	}
}

// rawCodec sends a Connect stream's frames as the bytes given, under
// courier's content subtype, so that the peer's own codec reads them.
type rawCodec struct{}

func (rawCodec) Name() string { return "courier" }

func (rawCodec) Marshal(v any) (mem.BufferSlice, error) {
	b, ok := v.(*[]byte)
	if !ok {
		return nil, fmt.Errorf("rawCodec: %T", v)
	}
	return mem.BufferSlice{mem.SliceBuffer(*b)}, nil
}

func (rawCodec) Unmarshal(data mem.BufferSlice, v any) error {
	b, ok := v.(*[]byte)
	if !ok {
		return fmt.Errorf("rawCodec: %T", v)
	}
	*b = data.Materialize()
	return nil
}

func TestJunkOnTheCourierPort(t *testing.T) {
	a, b := startNode(t, nil), startNode(t, nil)
	b.spawn("echo", echo)
	rng := rand.New(rand.NewPCG(1, 2))
	junk := make([]byte, 4096)
	for i := range junk {
		junk[i] = byte(rng.Uint32())
	}

	// Random bytes on a raw TCP connection: not even HTTP/2.
	conn, err := net.Dial("tcp", b.r.Address())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Write(junk); err != nil {
		t.Fatalf("write: %v", err)
	}
	// The node hangs up on it.
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, 1024)
	for {
		if _, err := conn.Read(buf); err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				t.Fatal("the node kept a connection that sent junk")
			}
			break
		}
	}
	conn.Close()

	// Malformed frames on a proper Connect stream, where the Hello should
	// be: random bytes, a frame whose flags are clear but whose body is
	// junk, and an empty one.
	cc, err := grpc.NewClient(b.r.Address(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	for _, frame := range [][]byte{junk[:64], {0x00, 0xff, 0xff, 0xff, 0xff, 0x01}, {}} {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		stream, err := transportv1.NewTransportClient(cc).Connect(ctx, grpc.ForceCodecV2(rawCodec{}))
		if err != nil {
			cancel()
			t.Fatalf("Connect: %v", err)
		}
		if err := stream.SendMsg(&frame); err != nil {
			cancel()
			t.Fatalf("SendMsg: %v", err)
		}
		var reply []byte
		err = stream.RecvMsg(&reply)
		ours := ctx.Err() // nil: the node ended the stream, not our deadline
		cancel()
		if err == nil || ours != nil {
			t.Fatalf("after a malformed frame %x the stream answered %x, %v (our context: %v); want the node to end it", frame, reply, err, ours)
		}
		t.Logf("malformed frame %x: %v", frame[:min(len(frame), 8)], err)
	}

	// The node goes on serving.
	if got := requestString(t, a, b.remotePID("echo"), "still"); !strings.HasPrefix(got, "STILL") {
		t.Fatalf("request after the junk answered %q", got)
	}
}

func TestOversizedMessage(t *testing.T) {
	a := startNode(t, nil, manager.WithMaxFrameBytes(64<<10))
	b := startNode(t, nil)
	b.spawn("echo", echo)
	big := wrapperspb.Bytes(make([]byte, 100<<10))
	target := func() *actor.PID { return b.remotePID("echo") }

	if err := a.r.Send(target(), big); !errors.Is(err, manager.ErrTooLarge) {
		t.Fatalf("Remote.Send of %d bytes: %v, want manager.ErrTooLarge", len(big.Value), err)
	}
	ours := record[*DeadLetterEvent](t, a)
	theirs := record[*actor.DeadLetterEvent](t, a)
	a.system.Root.Send(target(), big)
	dl := ours.wait(t, "too-large dead letter", 5*time.Second, func(*DeadLetterEvent) bool { return true })
	if dl.Reason != manager.ReasonTooLarge.String() || !errors.Is(dl.Err, manager.ErrTooLarge) || dl.Message != big {
		t.Fatalf("dead letter %q, err %v, message %T; want %q wrapping manager.ErrTooLarge", dl.Reason, dl.Err, dl.Message, manager.ReasonTooLarge)
	}
	theirs.wait(t, "actor.DeadLetterEvent", 5*time.Second, func(e *actor.DeadLetterEvent) bool { return e.Message == big })
	if _, err := a.system.Root.RequestFuture(target(), big, 20*time.Second).Result(); !errors.Is(err, actor.ErrDeadLetter) {
		t.Fatalf("RequestFuture of a too-large message: %v, want actor.ErrDeadLetter", err)
	}
	// A message that fits still goes.
	if got := requestString(t, a, target(), "small"); !strings.HasPrefix(got, "SMALL") {
		t.Fatalf("small request answered %q", got)
	}
}

func TestMessageToAMissingRemoteProcess(t *testing.T) {
	a, b := startNode(t, nil), startNode(t, nil)
	ours := record[*DeadLetterEvent](t, b)
	theirs := record[*actor.DeadLetterEvent](t, b)
	ghost := func() *actor.PID { return b.remotePID("ghost") }

	a.system.Root.Send(ghost(), wrapperspb.String("boo"))
	dl := ours.wait(t, "no-such-process dead letter", 5*time.Second, func(*DeadLetterEvent) bool { return true })
	if dl.Reason != ReasonNoSuchProcess || !errors.Is(dl.Err, ErrNoSuchProcess) || dl.PID.GetId() != "ghost" || dl.PID.GetAddress() != b.r.Address() {
		t.Fatalf("dead letter %q for %v, err %v; want %q for ghost", dl.Reason, dl.PID, dl.Err, ReasonNoSuchProcess)
	}
	if m, ok := dl.Message.(*wrapperspb.StringValue); !ok || m.Value != "boo" {
		t.Fatalf("dead letter message %v, want the decoded message", dl.Message)
	}
	theirs.wait(t, "actor.DeadLetterEvent", 5*time.Second, func(e *actor.DeadLetterEvent) bool {
		m, ok := e.Message.(*wrapperspb.StringValue)
		return ok && m.Value == "boo" && e.PID.GetId() == "ghost"
	})
	if _, err := a.system.Root.RequestFuture(ghost(), wrapperspb.String("anyone?"), 20*time.Second).Result(); !errors.Is(err, actor.ErrDeadLetter) {
		t.Fatalf("RequestFuture to a missing process: %v, want actor.ErrDeadLetter", err)
	}
}

// A message the receiving node's frame limit refuses, though the sender's
// own would take it: courier learns the peer's limit at the handshake, and
// the message is a dead letter "too large" at the sender, not a broken
// stream; both nodes go on serving.
func TestOversizedForTheReceiver(t *testing.T) {
	a := startNode(t, nil)
	b := startNode(t, nil, manager.WithMaxFrameBytes(64<<10))
	b.spawn("echo", echo)
	target := b.remotePID("echo")
	if got := requestString(t, a, target, "hello"); !strings.HasPrefix(got, "HELLO") {
		t.Fatalf("first request answered %q", got)
	}
	big := wrapperspb.Bytes(make([]byte, 100<<10))
	ours := record[*DeadLetterEvent](t, a)
	if err := a.r.Send(target, big); err != nil && !errors.Is(err, manager.ErrTooLarge) {
		t.Fatalf("Remote.Send of %d bytes: %v, want nil or manager.ErrTooLarge", len(big.Value), err)
	} else if err == nil {
		dl := ours.wait(t, "too-large dead letter", 5*time.Second, func(*DeadLetterEvent) bool { return true })
		if dl.Reason != manager.ReasonTooLarge.String() {
			t.Fatalf("dead letter %q, want %q", dl.Reason, manager.ReasonTooLarge)
		}
	}
	if _, err := a.system.Root.RequestFuture(target, big, 20*time.Second).Result(); !errors.Is(err, actor.ErrDeadLetter) {
		t.Fatalf("RequestFuture of a message too large for the receiver: %v, want actor.ErrDeadLetter", err)
	}
	if got := requestString(t, a, target, "small"); !strings.HasPrefix(got, "SMALL") {
		t.Fatalf("small request after answered %q", got)
	}
}
