package serial_test

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"unsafe"

	"github.com/courier-go/courier/batch"
	courierv1 "github.com/courier-go/courier/proto/courier/v1"
	"github.com/courier-go/courier/serial"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

func newRegistry(t testing.TB, opts ...serial.Option) *serial.Registry {
	t.Helper()
	r, err := serial.New(opts...)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// vtEnvelope has vtprotobuf's generated methods; its payload and header
// value are bytes fields, which a decoder could alias.
func vtEnvelope() *courierv1.Envelope {
	return &courierv1.Envelope{
		Target: 1, RequestId: 1 << 40, SenderAddress: 2, SenderId: 3, TypeName: 4, SerializerId: 1,
		Payload:    bytes.Repeat([]byte("payload!"), 32),
		Header:     []*courierv1.Header{{Key: 5, Value: []byte("trace-id")}},
		SystemKind: courierv1.SystemKind_SYSTEM_KIND_WATCH, DataPosition: 9,
	}
}

func plainStruct(t testing.TB) *structpb.Struct {
	s, err := structpb.NewStruct(map[string]any{
		"name": "counter", "n": 42.5, "ok": true, "tags": []any{"a", "b"}, "nested": map[string]any{"x": nil},
	})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// testMessages are the messages every round trip covers: two with
// vtprotobuf's methods, two without.
func testMessages(t testing.TB) []proto.Message {
	return []proto.Message{
		vtEnvelope(),
		&courierv1.Batch{Position: 3, NewStrings: [][]byte{[]byte("a/1")}, Envelopes: []*courierv1.Envelope{vtEnvelope(), {}}},
		wrapperspb.Bytes([]byte("\x00\x01plain bytes\xff")),
		plainStruct(t),
	}
}

func TestRoundTrip(t *testing.T) {
	r := newRegistry(t)
	for _, id := range []uint32{serial.ProtobufID, serial.JSONID} {
		for _, msg := range testMessages(t) {
			name := string(msg.ProtoReflect().Descriptor().FullName())
			t.Run(fmt.Sprintf("serializer=%d/type=%s", id, name), func(t *testing.T) {
				payload, typeName, err := r.Marshal(msg, id)
				if err != nil {
					t.Fatal(err)
				}
				if typeName != name {
					t.Fatalf("type name %q, want %q", typeName, name)
				}
				got, err := r.Unmarshal(typeName, id, payload)
				if err != nil {
					t.Fatal(err)
				}
				if !proto.Equal(got, msg) {
					t.Fatalf("round trip changed the message:\n got %v\nwant %v", got, msg)
				}

				var env batch.Envelope
				if err := r.Encode(&env, msg, id); err != nil {
					t.Fatal(err)
				}
				if env.TypeName != name || env.SerializerID != id || len(env.Payload) == 0 {
					t.Fatalf("Encode set %q, %d, %d bytes", env.TypeName, env.SerializerID, len(env.Payload))
				}
				got, err = r.Decode(&env)
				if err != nil {
					t.Fatal(err)
				}
				if !proto.Equal(got, msg) {
					t.Fatalf("Encode/Decode changed the message:\n got %v\nwant %v", got, msg)
				}
			})
		}
	}
}

// The two Protobuf paths write the same wire format, so a vtprotobuf sender
// and a stock receiver (or the reverse) understand each other.
func TestProtobufPathsAgree(t *testing.T) {
	msg := vtEnvelope()
	fast, err := serial.Protobuf().Append(nil, msg)
	if err != nil {
		t.Fatal(err)
	}
	stock := new(courierv1.Envelope)
	if err := proto.Unmarshal(fast, stock); err != nil || !proto.Equal(stock, msg) {
		t.Fatalf("stock decoding of the fast path's bytes: %v, %v", err, stock)
	}
	slow, err := proto.Marshal(msg)
	if err != nil {
		t.Fatal(err)
	}
	back := new(courierv1.Envelope)
	if err := serial.Protobuf().Decode(slow, back); err != nil || !proto.Equal(back, msg) {
		t.Fatalf("fast decoding of stock bytes: %v, %v", err, back)
	}
}

// countingEnvelope is a courier.v1.Envelope whose vtprotobuf methods count
// their calls: it proves which path Protobuf takes.
type countingEnvelope struct {
	*courierv1.Envelope
	marshals, unmarshals int
}

func (c *countingEnvelope) MarshalToSizedBufferVT(b []byte) (int, error) {
	c.marshals++
	return c.Envelope.MarshalToSizedBufferVT(b)
}

func (c *countingEnvelope) UnmarshalVT(b []byte) error {
	c.unmarshals++
	return c.Envelope.UnmarshalVT(b)
}

func TestVTFastPath(t *testing.T) {
	r := newRegistry(t)
	msg := &countingEnvelope{Envelope: vtEnvelope()}
	payload, name, err := r.Marshal(msg, serial.ProtobufID)
	if err != nil {
		t.Fatal(err)
	}
	if msg.marshals != 1 || name != "courier.v1.Envelope" {
		t.Fatalf("Marshal: %d calls to MarshalToSizedBufferVT, type %q", msg.marshals, name)
	}
	back := &countingEnvelope{Envelope: new(courierv1.Envelope)}
	if err := serial.Protobuf().Decode(payload, back); err != nil {
		t.Fatal(err)
	}
	if back.unmarshals != 1 || !proto.Equal(back.Envelope, msg.Envelope) {
		t.Fatalf("Decode: %d calls to UnmarshalVT, got %v", back.unmarshals, back.Envelope)
	}
}

func TestAllocations(t *testing.T) {
	if testing.CoverMode() != "" {
		t.Skip("coverage counters change allocation counts")
	}
	r := newRegistry(t)
	env := vtEnvelope()
	buf := make([]byte, 0, 1024)
	var err error
	if n := testing.AllocsPerRun(100, func() {
		buf, _, err = r.Append(buf[:0], env, serial.ProtobufID)
	}); n != 0 || err != nil {
		t.Errorf("Append of a vtprotobuf message into spare capacity: %v allocations, %v", n, err)
	}
	if n := testing.AllocsPerRun(100, func() { _, err = r.TypeName(env) }); n != 0 || err != nil {
		t.Errorf("TypeName: %v allocations, %v", n, err)
	}
	// An Ack decodes into its own struct and nothing else: one allocation,
	// the message, and none for finding its type.
	data, _ := (&courierv1.Ack{Position: 77}).MarshalVT()
	name := string([]byte("courier.v1.Ack")) // not the string the cache holds
	if n := testing.AllocsPerRun(100, func() { _, err = r.Unmarshal(name, serial.ProtobufID, data) }); n != 1 || err != nil {
		t.Errorf("Unmarshal of a cached type: %v allocations, want 1 (the message); %v", n, err)
	}
}

// TypeName hands out one string per type, so that the batch encoder's
// address-keyed dictionary cache hits.
func TestTypeNameStable(t *testing.T) {
	r := newRegistry(t)
	a, err := r.TypeName(vtEnvelope())
	if err != nil {
		t.Fatal(err)
	}
	_, b, err := r.Marshal(&courierv1.Envelope{Target: 9}, serial.JSONID)
	if err != nil {
		t.Fatal(err)
	}
	if a != b || unsafe.StringData(a) != unsafe.StringData(b) {
		t.Fatalf("type names %q and %q do not share memory", a, b)
	}
}

func TestAppendKeepsPrefix(t *testing.T) {
	r := newRegistry(t)
	for _, msg := range testMessages(t) {
		dst := []byte("prefix")
		out, _, err := r.Append(dst, msg, serial.ProtobufID)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.HasPrefix(out, []byte("prefix")) {
			t.Fatalf("Append lost the prefix: %q", out)
		}
		// Map order varies from one encoding to the next: compare messages.
		got := msg.ProtoReflect().New().Interface()
		if err := proto.Unmarshal(out[6:], got); err != nil || !proto.Equal(got, msg) {
			t.Fatalf("what Append added decodes to %v, %v", got, err)
		}
	}
}

func TestUnknownType(t *testing.T) {
	r := newRegistry(t)
	long := strings.Repeat("a.", 100_000) + "Msg"
	for _, name := range []string{"no.such.Type", "", "1bad", "courier.v1.", long} {
		_, err := r.Unmarshal(name, serial.ProtobufID, nil)
		if !errors.Is(err, serial.ErrUnknownType) {
			t.Errorf("Unmarshal(%.20q): %v, want ErrUnknownType", name, err)
			continue
		}
		if len(err.Error()) > 300 {
			t.Errorf("Unmarshal(%.20q): the error quotes %d bytes", name, len(err.Error()))
		}
	}
	if names := serial.CachedNames(r); len(names) != 0 {
		t.Errorf("unknown names were cached: %q", names)
	}
}

func TestUnknownSerializer(t *testing.T) {
	r := newRegistry(t)
	dst := []byte("keep")
	out, name, err := r.Append(dst, vtEnvelope(), 7)
	if !errors.Is(err, serial.ErrUnknownSerializer) || string(out) != "keep" || name != "" {
		t.Errorf("Append: %q, %q, %v; want dst back and ErrUnknownSerializer", out, name, err)
	}
	if err != nil && !strings.Contains(err.Error(), "7") {
		t.Errorf("the error does not name the id: %v", err)
	}
	if _, err := r.Unmarshal("courier.v1.Envelope", 7, nil); !errors.Is(err, serial.ErrUnknownSerializer) {
		t.Errorf("Unmarshal: %v, want ErrUnknownSerializer", err)
	}
	env := batch.Envelope{TypeName: "x", Payload: []byte("old")}
	if err := r.Encode(&env, vtEnvelope(), 7); !errors.Is(err, serial.ErrUnknownSerializer) {
		t.Errorf("Encode: %v, want ErrUnknownSerializer", err)
	}
	if env.TypeName != "x" || string(env.Payload) != "old" {
		t.Errorf("a failed Encode changed the envelope: %+v", env)
	}
	if _, ok := r.Serializer(7); ok {
		t.Error("Serializer(7) found")
	}
}

func TestGarbage(t *testing.T) {
	r := newRegistry(t)
	cases := []struct {
		typeName string
		id       uint32
		data     []byte
	}{
		{"courier.v1.Envelope", serial.ProtobufID, []byte{0xff, 0xff, 0xff}},
		{"courier.v1.Envelope", serial.ProtobufID, []byte{0x3a, 0x10, 'x'}}, // payload longer than the input
		{"google.protobuf.Struct", serial.ProtobufID, []byte{0x0a, 0x80}},
		{"courier.v1.Envelope", serial.JSONID, []byte("{")},
		{"google.protobuf.Struct", serial.JSONID, []byte(`[1, 2]`)},
		{"courier.v1.Ack", serial.JSONID, nil},
	}
	for _, c := range cases {
		_, err := r.Unmarshal(c.typeName, c.id, c.data)
		if !errors.Is(err, serial.ErrDecode) {
			t.Errorf("Unmarshal(%q, %d, %q): %v, want ErrDecode", c.typeName, c.id, c.data, err)
			continue
		}
		if msg := err.Error(); !strings.Contains(msg, c.typeName) || !strings.Contains(msg, fmt.Sprintf("serializer %d", c.id)) {
			t.Errorf("the error lacks the type or the serializer: %v", err)
		}
		if u, ok := err.(interface{ Unwrap() []error }); !ok || len(u.Unwrap()) != 2 {
			t.Errorf("the error does not wrap the serializer's cause: %v", err)
		}
	}
}

func TestJSONDiscardsUnknownFields(t *testing.T) {
	r := newRegistry(t)
	got, err := r.Unmarshal("courier.v1.Ack", serial.JSONID, []byte(`{"position":"5","addedLater":{"x":1}}`))
	if err != nil {
		t.Fatal(err)
	}
	if got.(*courierv1.Ack).GetPosition() != 5 {
		t.Fatalf("got %v", got)
	}
}

func TestUnsupported(t *testing.T) {
	r := newRegistry(t)
	for _, v := range []any{nil, "a string", 42, (*courierv1.Envelope)(nil), (*wrapperspb.BytesValue)(nil), struct{}{}} {
		if _, err := r.TypeName(v); !errors.Is(err, serial.ErrUnsupported) {
			t.Errorf("TypeName(%#v): %v, want ErrUnsupported", v, err)
		}
		if _, _, err := r.Marshal(v, serial.ProtobufID); !errors.Is(err, serial.ErrUnsupported) {
			t.Errorf("Marshal(%#v): %v, want ErrUnsupported", v, err)
		}
	}
}

func TestWithTypes(t *testing.T) {
	narrow := new(protoregistry.Types)
	if err := narrow.RegisterMessage((&courierv1.Ack{}).ProtoReflect().Type()); err != nil {
		t.Fatal(err)
	}
	r := newRegistry(t, serial.WithTypes(narrow))
	payload, name, err := r.Marshal(&courierv1.Ack{Position: 3}, serial.ProtobufID)
	if err != nil || name != "courier.v1.Ack" {
		t.Fatalf("Marshal of a registered type: %q, %v", name, err)
	}
	if got, err := r.Unmarshal(name, serial.ProtobufID, payload); err != nil || got.(*courierv1.Ack).GetPosition() != 3 {
		t.Fatalf("Unmarshal of a registered type: %v, %v", got, err)
	}

	other := vtEnvelope()
	if _, err := r.TypeName(other); !errors.Is(err, serial.ErrUnknownType) {
		t.Errorf("TypeName of an unregistered type: %v, want ErrUnknownType", err)
	}
	if out, _, err := r.Append(nil, other, serial.ProtobufID); !errors.Is(err, serial.ErrUnknownType) || out != nil {
		t.Errorf("Append of an unregistered type: %q, %v, want ErrUnknownType", out, err)
	}
	data, _ := proto.Marshal(other)
	if _, err := r.Unmarshal("courier.v1.Envelope", serial.ProtobufID, data); !errors.Is(err, serial.ErrUnknownType) {
		t.Errorf("Unmarshal of an unregistered type: %v, want ErrUnknownType", err)
	}
	// A second look is refused as well: refusals are not cached as anything.
	if _, err := r.TypeName(other); !errors.Is(err, serial.ErrUnknownType) {
		t.Errorf("TypeName again: %v, want ErrUnknownType", err)
	}
}

// fixedSerializer is a Serializer that only has an id.
type fixedSerializer struct{ id uint32 }

func (s fixedSerializer) ID() uint32 { return s.id }
func (fixedSerializer) Append(dst []byte, _ proto.Message) ([]byte, error) {
	return append(dst, "fixed"...), nil
}
func (fixedSerializer) Decode([]byte, proto.Message) error { return errors.New("cannot") }

func TestNew(t *testing.T) {
	r := newRegistry(t)
	for _, id := range []uint32{serial.ProtobufID, serial.JSONID} {
		if s, ok := r.Serializer(id); !ok || s.ID() != id {
			t.Errorf("default serializer %d: %v, %v", id, s, ok)
		}
	}

	r = newRegistry(t, serial.WithSerializer(fixedSerializer{serial.ProtobufID}), serial.WithSerializer(fixedSerializer{40}))
	if s, _ := r.Serializer(serial.ProtobufID); s != (fixedSerializer{serial.ProtobufID}) {
		t.Errorf("WithSerializer did not replace the default of id 0: %v", s)
	}
	if out, _, err := r.Marshal(vtEnvelope(), 40); err != nil || string(out) != "fixed" {
		t.Errorf("custom serializer 40: %q, %v", out, err)
	}
	if _, err := r.Unmarshal("courier.v1.Ack", 40, nil); !errors.Is(err, serial.ErrDecode) {
		t.Errorf("custom serializer's error: %v, want ErrDecode", err)
	}

	_, err := serial.New(
		nil,
		serial.WithSerializer(nil),
		serial.WithSerializer(fixedSerializer{7}),
		serial.WithSerializer(fixedSerializer{7}),
		serial.WithSerializer(fixedSerializer{serial.JSONID}),
		serial.WithSerializer(serial.JSON()),
		serial.WithTypes(nil),
	)
	if err == nil {
		t.Fatal("New accepted invalid options")
	}
	if !errors.Is(err, serial.ErrDuplicate) || !errors.Is(err, serial.ErrInvalidOption) {
		t.Fatalf("New: %v, want ErrDuplicate and ErrInvalidOption", err)
	}
	// Every problem, each on its line.
	for _, want := range []string{"option 0 is nil", "WithSerializer(nil)", "7 given twice", "1 given twice", "WithTypes(nil)"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("New's error lacks %q:\n%v", want, err)
		}
	}
}

// eachEncoded calls f with every test message encoded by both serializers.
func eachEncoded(t *testing.T, r *serial.Registry, f func(id uint32, name string, msg proto.Message, data []byte)) {
	t.Helper()
	for _, id := range []uint32{serial.ProtobufID, serial.JSONID} {
		for _, msg := range testMessages(t) {
			data, name, err := r.Marshal(msg, id)
			if err != nil {
				t.Fatal(err)
			}
			f(id, name, msg, data)
		}
	}
}

func TestUnmarshalDoesNotAlias(t *testing.T) {
	r := newRegistry(t)
	eachEncoded(t, r, func(id uint32, name string, msg proto.Message, data []byte) {
		got, err := r.Unmarshal(name, id, data)
		if err != nil {
			t.Fatal(err)
		}
		for i := range data {
			data[i] = 'A'
		}
		if !proto.Equal(got, msg) {
			t.Errorf("serializer %d, %s: the message changed with the payload's bytes:\n%v", id, name, got)
		}
	})
}

// The type name given to Unmarshal may alias a network buffer; the cache
// must keep a copy, not the caller's memory.
func TestUnmarshalDoesNotKeepTypeName(t *testing.T) {
	r := newRegistry(t)
	buf := []byte("courier.v1.Envelope")
	name := unsafe.String(&buf[0], len(buf))
	if _, err := r.Unmarshal(name, serial.ProtobufID, nil); err != nil {
		t.Fatal(err)
	}
	copy(buf, "google.protobuf.Any") // as long, and a registered type too
	if got := serial.CachedNames(r); !slices.Equal(got, []string{"courier.v1.Envelope"}) {
		t.Fatalf("the cache holds %q", got)
	}
	got, err := r.Unmarshal("google.protobuf.Any", serial.ProtobufID, nil)
	if _, ok := got.(*anypb.Any); !ok || err != nil {
		t.Fatalf("Unmarshal(google.protobuf.Any) gave %T, %v", got, err)
	}
}

func TestConcurrent(t *testing.T) {
	r := newRegistry(t) // fresh: the goroutines race to fill the caches
	msgs := testMessages(t)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			var buf []byte
			for i := range 200 {
				msg := msgs[(g+i)%len(msgs)]
				id := uint32(i % 2)
				var name string
				var err error
				buf, name, err = r.Append(buf[:0], msg, id)
				if err != nil {
					t.Error(err)
					return
				}
				got, err := r.Unmarshal(name, id, buf)
				if err != nil || !proto.Equal(got, msg) {
					t.Errorf("round trip of %s: %v", name, err)
					return
				}
				if _, err := r.Unmarshal("no.such.Type", id, buf); !errors.Is(err, serial.ErrUnknownType) {
					t.Errorf("unknown type: %v", err)
					return
				}
			}
		})
	}
	wg.Wait()
	want := make([]string, 0, len(msgs))
	for _, m := range msgs {
		want = append(want, string(m.ProtoReflect().Descriptor().FullName()))
	}
	slices.Sort(want)
	if got := serial.CachedNames(r); !slices.Equal(got, want) {
		t.Errorf("the cache holds %q, want %q", got, want)
	}
}

// A resolver that fails otherwise than with NotFound still yields
// ErrUnknownType, with its error wrapped.
type failingResolver struct{}

var errResolver = errors.New("resolver down")

func (failingResolver) FindMessageByName(protoreflect.FullName) (protoreflect.MessageType, error) {
	return nil, errResolver
}

func TestResolverError(t *testing.T) {
	r := newRegistry(t, serial.WithTypes(failingResolver{}))
	_, err := r.Unmarshal("courier.v1.Ack", serial.ProtobufID, nil)
	if !errors.Is(err, serial.ErrUnknownType) || !errors.Is(err, errResolver) {
		t.Fatalf("Unmarshal: %v, want ErrUnknownType wrapping the resolver's error", err)
	}
	if _, err := r.TypeName(&courierv1.Ack{}); !errors.Is(err, serial.ErrUnknownType) {
		t.Fatalf("TypeName: %v, want ErrUnknownType", err)
	}
}

func TestUnmarshalAliasing(t *testing.T) {
	r := newRegistry(t)
	eachEncoded(t, r, func(id uint32, name string, msg proto.Message, data []byte) {
		got, err := r.UnmarshalAliasing(name, id, data)
		if err != nil {
			t.Fatal(err)
		}
		if !proto.Equal(got, msg) {
			t.Errorf("serializer %d, %s: decoded %v", id, name, got)
		}
	})
	// A vtprotobuf message's bytes alias the input: one allocation fewer
	// than Unmarshal, and the payload field points into data.
	msg := wrapperspb.Bytes(nil)
	env := vtEnvelope()
	data, name, err := r.Marshal(env, serial.ProtobufID)
	if err != nil {
		t.Fatal(err)
	}
	got, err := r.UnmarshalAliasing(name, serial.ProtobufID, data)
	if err != nil {
		t.Fatal(err)
	}
	p := got.(*courierv1.Envelope).Payload
	if !bytes.Contains(data, p) || &p[0] != &data[bytes.Index(data, p)] {
		t.Fatal("the payload field does not alias the input")
	}
	copying := testing.AllocsPerRun(100, func() { _, _ = r.Unmarshal(name, serial.ProtobufID, data) })
	aliasing := testing.AllocsPerRun(100, func() { _, _ = r.UnmarshalAliasing(name, serial.ProtobufID, data) })
	if aliasing >= copying {
		t.Fatalf("UnmarshalAliasing makes %v allocations, Unmarshal %v", aliasing, copying)
	}
	// Errors are Unmarshal's.
	if _, err := r.UnmarshalAliasing("no.such.Type", serial.ProtobufID, nil); !errors.Is(err, serial.ErrUnknownType) {
		t.Fatalf("unknown type: %v", err)
	}
	if _, err := r.UnmarshalAliasing(name, serial.ProtobufID, []byte{0xff, 0xff}); !errors.Is(err, serial.ErrDecode) {
		t.Fatalf("garbage: %v", err)
	}
	if _, err := r.UnmarshalAliasing(string(proto.MessageName(msg)), 7, nil); !errors.Is(err, serial.ErrUnknownSerializer) {
		t.Fatalf("unknown serializer: %v", err)
	}
}

// TestUnmarshalAliasingSlabs decodes small vtprotobuf messages from
// several goroutines at once: each decode is a message of its own, with its
// own contents, although they are carved from shared slabs, and a message
// costs a small fraction of an allocation.
func TestUnmarshalAliasingSlabs(t *testing.T) {
	r := newRegistry(t)
	name := string(proto.MessageName(&courierv1.Ack{}))
	const workers, each = 4, 3000
	got := make([][]*courierv1.Ack, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range each {
				data, _, err := r.Marshal(&courierv1.Ack{Position: uint64(w*each + i + 1)}, serial.ProtobufID)
				if err != nil {
					t.Error(err)
					return
				}
				m, err := r.UnmarshalAliasing(name, serial.ProtobufID, data)
				if err != nil {
					t.Error(err)
					return
				}
				got[w] = append(got[w], m.(*courierv1.Ack))
			}
		})
	}
	wg.Wait()
	seen := make(map[*courierv1.Ack]bool, workers*each)
	for w, acks := range got {
		for i, a := range acks {
			if want := uint64(w*each + i + 1); a.GetPosition() != want {
				t.Fatalf("worker %d message %d: position %d, want %d (a slab item shared)", w, i, a.GetPosition(), want)
			}
			if seen[a] {
				t.Fatalf("worker %d message %d: the same message handed out twice", w, i)
			}
			seen[a] = true
		}
	}
	data, _, err := r.Marshal(&courierv1.Ack{Position: 7}, serial.ProtobufID)
	if err != nil {
		t.Fatal(err)
	}
	if n := testing.AllocsPerRun(1000, func() { _, _ = r.UnmarshalAliasing(name, serial.ProtobufID, data) }); n > 0.1 {
		t.Fatalf("UnmarshalAliasing of a small message makes %v allocations, want a slab's share", n)
	}
	// Unmarshal still allocates each message alone.
	if n := testing.AllocsPerRun(100, func() { _, _ = r.Unmarshal(name, serial.ProtobufID, data) }); n < 1 {
		t.Fatalf("Unmarshal makes %v allocations", n)
	}
}
