package fuzz

import (
	"bytes"
	"testing"

	courierv1 "github.com/courier-go/courier/proto/courier/v1"
	"google.golang.org/protobuf/proto"
)

// frameSeeds are protobuf-encoded Frames of every kind, plus a few broken
// encodings.
func frameSeeds() []seedFile {
	limits := &courierv1.Limits{MaxFrameBytes: 1 << 20, MaxBatchEnvelopes: 256, MaxDictionaryEntries: 1024}
	frames := map[string]*courierv1.Frame{
		"hello": {Kind: &courierv1.Frame_Hello{Hello: &courierv1.Hello{
			ProtocolVersion: 1, SystemId: "a", Incarnation: 7, Address: "127.0.0.1:1",
			Lane: courierv1.Lane_LANE_USER, Limits: limits, Capabilities: []string{"x"},
		}}},
		"welcome": {Kind: &courierv1.Frame_Welcome{Welcome: &courierv1.Welcome{
			Accepted: true, SystemId: "b", Incarnation: 9, Limits: limits, ProtocolVersion: 1,
		}}},
		"batch": {Kind: &courierv1.Frame_Batch{Batch: &courierv1.Batch{
			Position: 1, NewStrings: [][]byte{[]byte("actor/1"), []byte("pkg.Msg")},
			Envelopes: []*courierv1.Envelope{
				{Target: 1, TypeName: 2, Payload: []byte("hi"), Header: []*courierv1.Header{{Key: 2, Value: []byte("v")}}},
				{Target: 1, TypeName: 2, SystemKind: courierv1.SystemKind_SYSTEM_KIND_TERMINATED, DataPosition: 1},
			},
		}}},
		"ack":       {Kind: &courierv1.Frame_Ack{Ack: &courierv1.Ack{Position: 5}}},
		"heartbeat": {Kind: &courierv1.Frame_Heartbeat{Heartbeat: &courierv1.Heartbeat{Nanos: 1, Reply: true}}},
		"goodbye":   {Kind: &courierv1.Frame_Goodbye{Goodbye: &courierv1.Goodbye{Reason: "bye"}}},
	}
	var seeds []seedFile
	for name, f := range frames {
		b, err := f.MarshalVT()
		if err != nil {
			panic(err)
		}
		seeds = append(seeds, seedFile{name, b})
	}
	batch := seeds[0].data
	for _, s := range seeds {
		if s.name == "batch" {
			batch = s.data
		}
	}
	seeds = append(seeds,
		seedFile{"empty", nil},
		seedFile{"truncated-batch", batch[:len(batch)/2]},
		seedFile{"huge-length", []byte{0x1a, 0xff, 0xff, 0xff, 0xff, 0x0f}},
		seedFile{"bad-wire-type", []byte{0x0f}},
		// An unknown field behind an overlong tag: decoders keep its raw
		// bytes differently, so only known fields are compared.
		seedFile{"overlong-unknown-tag", []byte("\xe5\x000000")},
	)
	return seeds
}

func TestFrameProtoCorpus(t *testing.T) { checkCorpus(t, "FuzzFrameProto", frameSeeds()) }

// known returns the known fields of f: unknown fields are kept as raw bytes,
// and decoders may keep them differently.
func known(t *testing.T, f *courierv1.Frame) *courierv1.Frame {
	b, err := proto.Marshal(f)
	if err != nil {
		t.Fatal(err)
	}
	out := new(courierv1.Frame)
	if err := (proto.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(b, out); err != nil {
		t.Fatal(err)
	}
	return out
}

// FuzzFrameProto feeds arbitrary bytes to the generated Frame decoders, the
// copying and the aliasing one, and to stock protobuf. None may panic; when
// they accept an input they must agree on what it says.
func FuzzFrameProto(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		var vt, unsafe courierv1.Frame
		stock := new(courierv1.Frame)
		errVT := vt.UnmarshalVT(data)
		// The aliasing decoder gets its own copy: it keeps slices of it.
		errUnsafe := unsafe.UnmarshalVTUnsafe(bytes.Clone(data))
		errStock := proto.Unmarshal(data, stock)
		if (errVT == nil) != (errUnsafe == nil) {
			t.Fatalf("UnmarshalVT: %v, UnmarshalVTUnsafe: %v", errVT, errUnsafe)
		}
		if errVT != nil {
			return
		}
		if !vt.EqualVT(&unsafe) {
			t.Fatalf("copying and aliasing decoders disagree:\n%v\n%v", &vt, &unsafe)
		}
		if errStock == nil && !proto.Equal(known(t, &vt), known(t, stock)) {
			t.Fatalf("vtproto and stock protobuf disagree:\n%v\n%v", &vt, stock)
		}
		// What was decoded encodes to something that decodes to the same.
		again, err := vt.MarshalVT()
		if err != nil {
			t.Fatal(err)
		}
		var back courierv1.Frame
		if err := back.UnmarshalVT(again); err != nil || !back.EqualVT(&vt) {
			t.Fatalf("re-encoded frame does not round trip: %v", err)
		}
	})
}
