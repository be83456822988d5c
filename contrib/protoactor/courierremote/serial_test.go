package courierremote

import (
	"bytes"
	"context"
	"errors"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/asynkron/protoactor-go/remote"
	"github.com/courier-go/courier/manager"
	courierv1 "github.com/courier-go/courier/proto/courier/v1"
	"github.com/courier-go/courier/serial"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// countingJSON is serial's JSON serializer, counting what it encodes and
// decodes, to prove which serializer a message travelled with.
type countingJSON struct {
	serial.Serializer
	appends, decodes atomic.Int64
}

func (c *countingJSON) Append(dst []byte, msg proto.Message) ([]byte, error) {
	c.appends.Add(1)
	return c.Serializer.Append(dst, msg)
}

func (c *countingJSON) Decode(data []byte, msg proto.Message) error {
	c.decodes.Add(1)
	return c.Serializer.Decode(data, msg)
}

func jsonRegistry(t *testing.T) (*serial.Registry, *countingJSON) {
	t.Helper()
	c := &countingJSON{Serializer: serial.JSON()}
	reg, err := serial.New(serial.WithSerializer(c))
	if err != nil {
		t.Fatal(err)
	}
	return reg, c
}

// narrowRegistry is a registry that knows only the given messages' types.
func narrowRegistry(t *testing.T, msgs ...proto.Message) *serial.Registry {
	t.Helper()
	types := new(protoregistry.Types)
	for _, m := range msgs {
		if err := types.RegisterMessage(m.ProtoReflect().Type()); err != nil {
			t.Fatal(err)
		}
	}
	reg, err := serial.New(serial.WithTypes(types))
	if err != nil {
		t.Fatal(err)
	}
	return reg
}

// echoBoth answers a StringValue as echo does and an Int64Value with its
// successor.
func echoBoth(ctx actor.Context) {
	if m, ok := ctx.Message().(*wrapperspb.Int64Value); ok {
		ctx.Respond(wrapperspb.Int64(m.Value + 1))
		return
	}
	echo(ctx)
}

func requestString(t *testing.T, n *node, pid *actor.PID, s string) string {
	t.Helper()
	res, err := n.system.Root.RequestFuture(pid, wrapperspb.String(s), 10*time.Second).Result()
	if err != nil {
		t.Fatalf("request %q to %v: %v", s, pid, err)
	}
	v, ok := res.(*wrapperspb.StringValue)
	if !ok {
		t.Fatalf("request %q to %v: answer %T %v", s, pid, res, res)
	}
	return v.Value
}

func TestJSONSerializerRoundTrip(t *testing.T) {
	regA, jsonA := jsonRegistry(t)
	regB, jsonB := jsonRegistry(t)
	a := startNode(t, Configure("127.0.0.1", 0, WithSerializers(regA), WithSerializerID(serial.JSONID)))
	b := startNode(t, Configure("127.0.0.1", 0, WithSerializers(regB), WithSerializerID(serial.JSONID)))
	b.spawn("echo", echo)

	if got := requestString(t, a, b.remotePID("echo"), "json"); !strings.HasPrefix(got, "JSON from=future$") {
		t.Fatalf("reply %q", got)
	}
	// Both ways went as JSON: a encoded the request, b decoded it, b
	// encoded the reply, a decoded it.
	if jsonA.appends.Load() == 0 || jsonB.decodes.Load() == 0 || jsonB.appends.Load() == 0 || jsonA.decodes.Load() == 0 {
		t.Fatalf("JSON not used both ways: a encoded %d decoded %d, b encoded %d decoded %d",
			jsonA.appends.Load(), jsonA.decodes.Load(), jsonB.appends.Load(), jsonB.decodes.Load())
	}

	// A JSON sender and a protobuf (default) receiver understand each
	// other: the serializer id travels with every envelope.
	c := startNode(t, nil)
	c.spawn("echo", echo)
	before := jsonA.appends.Load()
	if got := requestString(t, a, c.remotePID("echo"), "mixed"); !strings.HasPrefix(got, "MIXED") {
		t.Fatalf("reply %q", got)
	}
	if jsonA.appends.Load() == before {
		t.Fatal("a did not encode its request to c as JSON")
	}
}

func TestUnknownTypeAtTheReceiver(t *testing.T) {
	a := startNode(t, nil)
	// b knows Int64Value only: a StringValue is a type it has never heard
	// of.
	b := startNode(t, Configure("127.0.0.1", 0, WithSerializers(narrowRegistry(t, &wrapperspb.Int64Value{}))))
	b.spawn("echo", echoBoth)
	ours := record[*DeadLetterEvent](t, b)
	theirs := record[*actor.DeadLetterEvent](t, b)

	_, err := a.system.Root.RequestFuture(b.remotePID("echo"), wrapperspb.String("x"), 20*time.Second).Result()
	if !errors.Is(err, actor.ErrDeadLetter) {
		t.Fatalf("request of an unknown type: %v, want actor.ErrDeadLetter (not a timeout)", err)
	}
	dl := ours.wait(t, "unknown-type dead letter", 5*time.Second, func(e *DeadLetterEvent) bool { return e.PID.GetId() == "echo" })
	if dl.Reason != ReasonUnknownType || !errors.Is(dl.Err, serial.ErrUnknownType) {
		t.Fatalf("dead letter reason %q err %v, want %q wrapping serial.ErrUnknownType", dl.Reason, dl.Err, ReasonUnknownType)
	}
	u, ok := dl.Message.(*Undecodable)
	if !ok || u.TypeName != "google.protobuf.StringValue" || u.SerializerID != serial.ProtobufID || !errors.Is(u.Err, serial.ErrUnknownType) {
		t.Fatalf("dead letter message %#v, want an *Undecodable of google.protobuf.StringValue", dl.Message)
	}
	if dl.Sender == nil || dl.Sender.Address != a.r.Address() {
		t.Fatalf("dead letter sender %v, want the future on %s", dl.Sender, a.r.Address())
	}
	sys := theirs.wait(t, "actor.DeadLetterEvent", 5*time.Second, func(e *actor.DeadLetterEvent) bool { return e.PID.GetId() == "echo" })
	if _, ok := sys.Message.(*Undecodable); !ok {
		t.Fatalf("actor.DeadLetterEvent message %T, want *Undecodable", sys.Message)
	}

	// b goes on serving what it knows.
	res, err := a.system.Root.RequestFuture(b.remotePID("echo"), wrapperspb.Int64(41), 10*time.Second).Result()
	if err != nil || res.(*wrapperspb.Int64Value).GetValue() != 42 {
		t.Fatalf("later request: %v %v, want 42", res, err)
	}
}

func TestUndecodablePayload(t *testing.T) {
	a, b := startNode(t, nil), startNode(t, nil)
	b.spawn("echo", echo)
	ours := record[*DeadLetterEvent](t, b)
	theirs := record[*actor.DeadLetterEvent](t, b)

	garbage := []byte{0xff, 0xff, 0xff}
	env := &manager.Envelope{Target: "echo", TypeName: "google.protobuf.StringValue", Payload: garbage}
	if err := a.r.Manager().Send(context.Background(), b.r.Address(), env); err != nil {
		t.Fatalf("raw Send: %v", err)
	}
	dl := ours.wait(t, "undecodable dead letter", 5*time.Second, func(*DeadLetterEvent) bool { return true })
	if dl.Reason != ReasonUndecodable || !errors.Is(dl.Err, serial.ErrDecode) || dl.PID.GetId() != "echo" {
		t.Fatalf("dead letter %q for %v, err %v: want %q wrapping serial.ErrDecode", dl.Reason, dl.PID, dl.Err, ReasonUndecodable)
	}
	if u, ok := dl.Message.(*Undecodable); !ok || !bytes.Equal(u.Payload, garbage) || u.TypeName != env.TypeName {
		t.Fatalf("dead letter message %#v, want the payload as it came", dl.Message)
	}
	theirs.wait(t, "actor.DeadLetterEvent", 5*time.Second, func(e *actor.DeadLetterEvent) bool {
		_, ok := e.Message.(*Undecodable)
		return ok && e.PID.GetId() == "echo"
	})
	if got := requestString(t, a, b.remotePID("echo"), "after"); !strings.HasPrefix(got, "AFTER") {
		t.Fatalf("later request answered %q", got)
	}
}

// notAProto is a message no serializer takes.
type notAProto struct{ N int }

func TestUnserializableAtTheSender(t *testing.T) {
	a, b := startNode(t, nil), startNode(t, nil)
	b.spawn("echo", echoBoth)
	// A PID caches the process it resolved to, whichever actor system
	// resolved it: each system gets PIDs of its own.
	target := func() *actor.PID { return b.remotePID("echo") }

	if err := a.r.Send(target(), notAProto{1}); !errors.Is(err, serial.ErrUnsupported) {
		t.Fatalf("Remote.Send of a non-protobuf value: %v, want serial.ErrUnsupported", err)
	}

	// A sender whose registry lacks the type refuses to send it.
	n := startNode(t, Configure("127.0.0.1", 0, WithSerializers(narrowRegistry(t, &wrapperspb.Int64Value{}))))
	if err := n.r.Send(target(), wrapperspb.String("x")); !errors.Is(err, serial.ErrUnknownType) {
		t.Fatalf("Remote.Send of an unregistered type: %v, want serial.ErrUnknownType", err)
	}

	// Through the actor API the same sends are dead letters on the
	// sender, with the reason.
	for _, c := range []struct {
		name string
		from *node
		msg  any
		is   error
	}{
		{"not a proto", a, notAProto{2}, serial.ErrUnsupported},
		{"unregistered type", n, wrapperspb.String("y"), serial.ErrUnknownType},
	} {
		ours := record[*DeadLetterEvent](t, c.from)
		theirs := record[*actor.DeadLetterEvent](t, c.from)
		c.from.system.Root.Send(target(), c.msg)
		dl := ours.wait(t, c.name+" dead letter", 5*time.Second, func(*DeadLetterEvent) bool { return true })
		if dl.Reason != ReasonUnserializable || !errors.Is(dl.Err, c.is) || dl.PID.GetId() != "echo" {
			t.Fatalf("%s: dead letter %q for %v, err %v; want %q wrapping %v", c.name, dl.Reason, dl.PID, dl.Err, ReasonUnserializable, c.is)
		}
		theirs.wait(t, c.name+" actor.DeadLetterEvent", 5*time.Second, func(e *actor.DeadLetterEvent) bool {
			return e.PID.GetId() == "echo" && e.Message == c.msg
		})
		if _, err := c.from.system.Root.RequestFuture(target(), c.msg, 20*time.Second).Result(); !errors.Is(err, actor.ErrDeadLetter) {
			t.Fatalf("%s: RequestFuture: %v, want actor.ErrDeadLetter", c.name, err)
		}
	}
	// What n can encode still goes.
	res, err := n.system.Root.RequestFuture(target(), wrapperspb.Int64(1), 10*time.Second).Result()
	if err != nil || res.(*wrapperspb.Int64Value).GetValue() != 2 {
		t.Fatalf("request of a registered type: %v %v, want 2", res, err)
	}
}

// Messages with vtprotobuf's methods are decoded by them, their bytes
// aliasing chunks shared with their neighbours (decodeUser): every message
// a receiver keeps must stay as it was sent, whatever came after it, small
// ones carved from chunks and large ones alone.
func TestKeptMessagesStayIntact(t *testing.T) {
	const n = 5000
	a, b := startNode(t, nil), startNode(t, nil)
	var kept []*courierv1.Envelope
	all := make(chan struct{})
	b.spawn("keeper", func(ctx actor.Context) {
		if m, ok := ctx.Message().(*courierv1.Envelope); ok {
			if kept = append(kept, m); len(kept) == n {
				close(all)
			}
		}
	})
	size := func(i int) int { return 1 + i*37%(3*arenaMax) } // up to past arenaMax
	fill := func(i int) []byte { return bytes.Repeat([]byte{byte(i), byte(i >> 8)}, size(i))[:size(i)] }
	keeper := b.remotePID("keeper")
	for i := range n {
		a.system.Root.Send(keeper, &courierv1.Envelope{RequestId: uint64(i), Payload: fill(i),
			Header: []*courierv1.Header{{Key: uint32(i), Value: fill(n - i)}}})
	}
	select {
	case <-all:
	case <-time.After(20 * time.Second):
		t.Fatal("not all messages arrived")
	}
	runtime.GC()
	for j, m := range kept {
		i := int(m.GetRequestId())
		if i != j {
			t.Fatalf("message %d arrived as %d", i, j)
		}
		if !bytes.Equal(m.GetPayload(), fill(i)) || len(m.GetHeader()) != 1 ||
			m.GetHeader()[0].GetKey() != uint32(i) || !bytes.Equal(m.GetHeader()[0].GetValue(), fill(n-i)) {
			t.Fatalf("message %d changed after it arrived (payload of %d bytes, %d header entries)", i, len(m.GetPayload()), len(m.GetHeader()))
		}
	}
}

// The registry numbers and names as protoactor-go's remote does: what one
// serializes with protobuf (id 0), the other decodes under the same id and
// type name, both ways. (protoactor-go's JSON serializer, id 1 there as
// here, is gogo's jsonpb, which names today's generated messages "": it
// cannot be checked against, and the adapter's JSON is protojson.)
func TestSerializersMatchProtoactorGo(t *testing.T) {
	reg, err := serial.New()
	if err != nil {
		t.Fatal(err)
	}
	msgs := []proto.Message{
		&courierv1.Envelope{RequestId: 7, Payload: []byte("payload"), Header: []*courierv1.Header{{Key: 3, Value: []byte("v")}}},
		wrapperspb.String("hello"),
	}
	const id = serial.ProtobufID
	for _, msg := range msgs {
		theirs, theirName, err := remote.Serialize(msg, int32(id))
		if err != nil {
			t.Fatalf("protoactor-go's Serialize(%T, %d): %v", msg, id, err)
		}
		ours, ourName, err := reg.Marshal(msg, id)
		if err != nil {
			t.Fatalf("Marshal(%T, %d): %v", msg, id, err)
		}
		if ourName != theirName {
			t.Fatalf("serializer %d names %T %q, protoactor-go %q", id, msg, ourName, theirName)
		}
		got, err := reg.Unmarshal(theirName, id, theirs)
		if err != nil || !proto.Equal(got, msg) {
			t.Fatalf("serializer %d: protoactor-go's %T decoded as %v, %v", id, msg, got, err)
		}
		back, err := remote.Deserialize(ours, ourName, int32(id))
		if m, ok := back.(proto.Message); err != nil || !ok || !proto.Equal(m, msg) {
			t.Fatalf("serializer %d: our %T decoded by protoactor-go as %v, %v", id, msg, back, err)
		}
	}
}
