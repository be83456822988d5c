package courierv1

import (
	"bytes"
	"testing"

	"go.uber.org/goleak"
	"google.golang.org/protobuf/proto"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// vtMessage is what protoc-gen-go-vtproto adds to every message.
type vtMessage interface {
	proto.Message
	MarshalVT() ([]byte, error)
	SizeVT() int
}

func limits() *Limits {
	return &Limits{
		MaxFrameBytes: 4 << 20, MaxBatchEnvelopes: 1024, MaxDictionaryEntries: 65536,
		MaxDictionaryBytes: 1 << 20, MaxStringBytes: 4096, MaxHeaderEntries: 64,
	}
}

func envelope() *Envelope {
	return &Envelope{
		Target: 1, RequestId: 1<<63 + 5, SenderAddress: 2, SenderId: 3, TypeName: 300,
		SerializerId: 7, Payload: []byte{0, 1, 2, 0xff},
		Header:     []*Header{{Key: 4, Value: []byte("trace-ü")}, {Key: 5}},
		SystemKind: SystemKind_SYSTEM_KIND_TERMINATED, DataPosition: 1 << 40,
	}
}

// messages returns one fully populated value of every message, and frames
// of every kind, plus empty values.
func messages() map[string]vtMessage {
	hello := &Hello{
		ProtocolVersion: 1, SystemId: "orders", Incarnation: 0xdeadbeefcafe, Address: "127.0.0.1:4000",
		Lane: Lane_LANE_SYSTEM, Limits: limits(), Capabilities: []string{"s2", "terminated-position"},
	}
	welcome := &Welcome{
		Accepted: false, RefuseReason: RefuseReason_REFUSE_REASON_BLOCKED, Message: "system id blocked",
		SystemId: "billing", Incarnation: 42, Address: "127.0.0.1:5000", Limits: limits(), ProtocolVersion: 1,
	}
	batch := &Batch{
		Position: 99, NewStrings: [][]byte{[]byte("a"), {}, []byte("日本語"), {0, 0xff}},
		Envelopes: []*Envelope{envelope(), {Target: 1, Payload: []byte{}}, {}}, ResetDictionary: true,
	}
	return map[string]vtMessage{
		"Limits":          limits(),
		"Hello":           hello,
		"Welcome":         welcome,
		"Batch":           batch,
		"Envelope":        envelope(),
		"Header":          &Header{Key: 1, Value: []byte{0xff}},
		"Ack":             &Ack{Position: 1 << 62},
		"Heartbeat":       &Heartbeat{Nanos: 123456789, Reply: true},
		"Goodbye":         &Goodbye{Reason: "shutdown"},
		"Frame/hello":     &Frame{Kind: &Frame_Hello{Hello: hello}},
		"Frame/welcome":   &Frame{Kind: &Frame_Welcome{Welcome: welcome}},
		"Frame/batch":     &Frame{Kind: &Frame_Batch{Batch: batch}},
		"Frame/ack":       &Frame{Kind: &Frame_Ack{Ack: &Ack{Position: 3}}},
		"Frame/heartbeat": &Frame{Kind: &Frame_Heartbeat{Heartbeat: &Heartbeat{Nanos: 1}}},
		"Frame/goodbye":   &Frame{Kind: &Frame_Goodbye{Goodbye: &Goodbye{Reason: "bye"}}},
		"Frame/empty":     &Frame{},
		"Batch/empty":     &Batch{},
	}
}

// TestVTProtoAgreesWithStockProtobuf proves that the vtproto code and stock
// protobuf encode every message to the same bytes, and that each decodes
// what the other encodes, through the copying and the aliasing unmarshal.
func TestVTProtoAgreesWithStockProtobuf(t *testing.T) {
	for name, msg := range messages() {
		t.Run(name, func(t *testing.T) {
			vt, err := msg.MarshalVT()
			if err != nil {
				t.Fatal(err)
			}
			stock, err := proto.MarshalOptions{Deterministic: true}.Marshal(msg)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(vt, stock) {
				t.Fatalf("encodings differ\nvtproto %x\nstock   %x", vt, stock)
			}
			if msg.SizeVT() != len(vt) {
				t.Fatalf("SizeVT %d, encoded %d bytes", msg.SizeVT(), len(vt))
			}

			decoders := map[string]func([]byte) (proto.Message, error){
				"stock": func(b []byte) (proto.Message, error) {
					m := msg.ProtoReflect().New().Interface()
					return m, proto.Unmarshal(b, m)
				},
				"vtproto": func(b []byte) (proto.Message, error) {
					m := msg.ProtoReflect().New().Interface()
					return m, m.(interface{ UnmarshalVT([]byte) error }).UnmarshalVT(b)
				},
				"vtproto-unsafe": func(b []byte) (proto.Message, error) {
					m := msg.ProtoReflect().New().Interface()
					return m, m.(interface{ UnmarshalVTUnsafe([]byte) error }).UnmarshalVTUnsafe(b)
				},
			}
			for dname, decode := range decoders {
				buf := bytes.Clone(vt)
				got, err := decode(buf)
				if err != nil {
					t.Fatalf("%s decode: %v", dname, err)
				}
				if !proto.Equal(got, msg) {
					t.Fatalf("%s decode differs:\n got %v\nwant %v", dname, got, msg)
				}
				again, err := got.(vtMessage).MarshalVT()
				if err != nil || !bytes.Equal(again, vt) {
					t.Fatalf("%s decode re-encodes to %x, want %x (%v)", dname, again, vt, err)
				}
			}
		})
	}
}

// TestUnsafeUnmarshalAliases documents the property the frame decoder relies
// on: UnmarshalVTUnsafe takes bytes and strings from the input buffer
// without copying them.
func TestUnsafeUnmarshalAliases(t *testing.T) {
	in := &Envelope{Target: 1, Payload: []byte("payload")}
	buf, err := in.MarshalVT()
	if err != nil {
		t.Fatal(err)
	}
	var out Envelope
	if err := out.UnmarshalVTUnsafe(buf); err != nil {
		t.Fatal(err)
	}
	i := bytes.Index(buf, []byte("payload"))
	buf[i] = 'P'
	if string(out.Payload) != "Payload" {
		t.Fatalf("payload %q does not alias the input buffer", out.Payload)
	}
	var copied Envelope
	if err := copied.UnmarshalVT(buf); err != nil {
		t.Fatal(err)
	}
	buf[i] = 'X'
	if string(copied.Payload) != "Payload" {
		t.Fatalf("UnmarshalVT payload %q aliases the input buffer", copied.Payload)
	}
}
