package fuzz

import (
	"bytes"
	"errors"
	"testing"

	courierv1 "github.com/courier-go/courier/proto/courier/v1"
	"github.com/courier-go/courier/serial"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	_ "google.golang.org/protobuf/types/known/durationpb" // google.protobuf.Duration, for a JSON seed
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// Bounds on FuzzSerialUnmarshal's input: enough for nested messages and
// long names, small enough to keep each run fast.
const (
	maxSerialTypeName = 256
	maxSerialData     = 64 << 10
)

var serialSentinels = []error{serial.ErrUnknownSerializer, serial.ErrUnknownType, serial.ErrDecode}

// serialSeed is one seed of FuzzSerialUnmarshal: its arguments are typeName,
// serializerID and data.
type serialSeed struct {
	name     string
	typeName string
	id       uint32
	data     []byte
	fails    error // the sentinel Unmarshal returns, nil when it decodes
}

// mustProto encodes m deterministically: a seed must not change from one run
// of the corpus check to the next, and map order would.
func mustProto(m proto.Message) []byte {
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(m)
	if err != nil {
		panic(err)
	}
	return b
}

// serialSeeds are messages of the types linked into this package, with and
// without vtprotobuf's methods, in both serializers, and a few that fail in
// each of the ways Unmarshal can. JSON seeds are written out by hand:
// protojson's output varies on purpose.
func serialSeeds() []serialSeed {
	env := &courierv1.Envelope{Target: 1, RequestId: 7, TypeName: 2, Payload: []byte("hi"),
		Header: []*courierv1.Header{{Key: 3, Value: []byte("v")}}, SystemKind: courierv1.SystemKind_SYSTEM_KIND_TERMINATED, DataPosition: 4}
	frame := &courierv1.Frame{Kind: &courierv1.Frame_Hello{Hello: &courierv1.Hello{
		ProtocolVersion: 1, SystemId: "a", Incarnation: 7, Address: "127.0.0.1:1", Capabilities: []string{"x"},
	}}}
	st, err := structpb.NewStruct(map[string]any{"a": []any{1.5, "x", nil, map[string]any{"b": true}}})
	if err != nil {
		panic(err)
	}
	inner, err := anypb.New(wrapperspb.String("packed"))
	if err != nil {
		panic(err)
	}
	nested := structpb.NewNullValue()
	for range 50 {
		nested = structpb.NewListValue(&structpb.ListValue{Values: []*structpb.Value{nested}})
	}
	// An Ack with a field it does not know, kept as unknown bytes.
	unknown := protowire.AppendTag(mustProto(&courierv1.Ack{Position: 3}), 99, protowire.BytesType)
	unknown = protowire.AppendBytes(unknown, []byte("later"))

	return []serialSeed{
		{"envelope", "courier.v1.Envelope", serial.ProtobufID, mustProto(env), nil},
		{"batch", "courier.v1.Batch", serial.ProtobufID, mustProto(&courierv1.Batch{Position: 1, NewStrings: [][]byte{[]byte("t")}, Envelopes: []*courierv1.Envelope{env, {}}}), nil},
		{"frame-hello", "courier.v1.Frame", serial.ProtobufID, mustProto(frame), nil},
		{"ack-unknown-field", "courier.v1.Ack", serial.ProtobufID, unknown, nil},
		{"struct", "google.protobuf.Struct", serial.ProtobufID, mustProto(st), nil},
		{"any", "google.protobuf.Any", serial.ProtobufID, mustProto(inner), nil},
		{"nested-list", "google.protobuf.Value", serial.ProtobufID, mustProto(nested), nil},
		{"struct-json", "google.protobuf.Struct", serial.JSONID, []byte(`{"a": [1.5, "x", null, {"b": true}]}`), nil},
		{"any-json", "google.protobuf.Any", serial.JSONID, []byte(`{"@type": "type.googleapis.com/google.protobuf.StringValue", "value": "packed"}`), nil},
		{"envelope-json", "courier.v1.Envelope", serial.JSONID, []byte(`{"target": 1, "payload": "aGk=", "header": [{"key": 3, "value": "dg=="}], "addedLater": [1]}`), nil},
		{"truncated", "courier.v1.Envelope", serial.ProtobufID, mustProto(env)[:5], serial.ErrDecode},
		{"garbage", "courier.v1.Envelope", serial.ProtobufID, []byte{0xff, 0xff, 0xff}, serial.ErrDecode},
		{"unknown-type", "no.such.Type", serial.ProtobufID, nil, serial.ErrUnknownType},
		{"unknown-serializer", "courier.v1.Ack", 7, nil, serial.ErrUnknownSerializer},
	}
}

func TestSerialCorpus(t *testing.T) {
	var seeds []seedArgs
	for _, s := range serialSeeds() {
		seeds = append(seeds, seedArgs{s.name, []any{s.typeName, s.id, s.data}})
	}
	checkCorpusArgs(t, "FuzzSerialUnmarshal", seeds)

	// Seeds meant to decode do: they take the fuzzer past the type lookup.
	reg, err := serial.New()
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range serialSeeds() {
		if _, err := reg.Unmarshal(s.typeName, s.id, s.data); !errors.Is(err, s.fails) {
			t.Errorf("seed %s: %v, want %v", s.name, err, s.fails)
		}
	}
}

// FuzzSerialUnmarshal feeds a type name, a serializer id and bytes, all
// arbitrary, to Registry.Unmarshal. It must return a message or an error
// wrapping one of serial's sentinels, never panic; the message must not
// alias the bytes; and a message decoded from protobuf must encode and
// decode back to an equal one.
func FuzzSerialUnmarshal(f *testing.F) {
	reg, err := serial.New()
	if err != nil {
		f.Fatal(err)
	}
	f.Add("", uint32(0), []byte(nil))
	f.Add("google.protobuf.BytesValue", uint32(0), []byte("\x0a\x02hi"))
	f.Add("google.protobuf.Duration", uint32(1), []byte(`"1.5s"`))
	f.Add("courier.v1.Heartbeat", uint32(1<<32-1), []byte("\x08\x01"))
	f.Fuzz(func(t *testing.T, typeName string, serializerID uint32, data []byte) {
		if len(typeName) > maxSerialTypeName || len(data) > maxSerialData {
			return
		}
		// The fuzzer's own bytes are not ours to change; a copy is.
		in := bytes.Clone(data)
		// The aliasing decoder accepts and refuses what the copying one
		// does, and decodes the same message.
		aliased, aliasErr := reg.UnmarshalAliasing(typeName, serializerID, bytes.Clone(data))
		msg, err := reg.Unmarshal(typeName, serializerID, in)
		if (err == nil) != (aliasErr == nil) || (err == nil && !proto.Equal(msg, aliased)) {
			t.Fatalf("Unmarshal: %v, %v; UnmarshalAliasing: %v, %v", msg, err, aliased, aliasErr)
		}
		if err != nil {
			if msg != nil {
				t.Fatalf("Unmarshal returned a message and an error: %v", err)
			}
			for _, s := range serialSentinels {
				if errors.Is(err, s) {
					return
				}
			}
			t.Fatalf("error %v wraps none of serial's sentinels", err)
		}
		if msg == nil {
			t.Fatal("Unmarshal returned neither a message nor an error")
		}

		snapshot := proto.Clone(msg)
		for i := range in {
			in[i] ^= 0xff
		}
		if !proto.Equal(msg, snapshot) {
			t.Fatalf("the decoded message changed with the bytes it came from")
		}

		if serializerID != serial.ProtobufID {
			return
		}
		again, name, err := reg.Marshal(msg, serial.ProtobufID)
		if err != nil {
			t.Fatalf("re-encoding a decoded %s: %v", typeName, err)
		}
		if name != typeName {
			t.Fatalf("decoded %q, re-encoded as %q", typeName, name)
		}
		back, err := reg.Unmarshal(name, serial.ProtobufID, again)
		if err != nil {
			t.Fatalf("decoding a re-encoded %s: %v", name, err)
		}
		if !proto.Equal(back, msg) {
			t.Fatalf("%s changed in a round trip:\n got %v\nwant %v", name, back, msg)
		}
	})
}
