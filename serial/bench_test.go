package serial_test

import (
	"bytes"
	"fmt"
	"testing"

	courierv1 "github.com/courier-go/courier/proto/courier/v1"
	"github.com/courier-go/courier/serial"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// benchMessages are vtprotobuf messages (the fast path) and messages without
// vtprotobuf's methods (the stock path), small and large.
func benchMessages(b *testing.B) []struct {
	name string
	msg  proto.Message
} {
	env := vtEnvelope()
	envs := make([]*courierv1.Envelope, 32)
	for i := range envs {
		envs[i] = vtEnvelope()
	}
	return []struct {
		name string
		msg  proto.Message
	}{
		{"envelope", env},
		{"batch", &courierv1.Batch{Position: 1, Envelopes: envs}},
		{"bytesvalue", wrapperspb.Bytes(bytes.Repeat([]byte("x"), 256))},
		{"struct", plainStruct(b)},
	}
}

// BenchmarkMarshal compares Registry.Append and Marshal with protobuf's own
// MarshalAppend and Marshal on the same messages: dst=reused appends into a
// buffer with room, dst=nil returns a new payload each time.
func BenchmarkMarshal(b *testing.B) {
	r := newRegistry(b)
	for _, c := range benchMessages(b) {
		size := proto.Size(c.msg)
		b.Run("msg="+c.name, func(b *testing.B) {
			b.Run("dst=reused/impl=serial", func(b *testing.B) {
				buf := make([]byte, 0, size)
				b.SetBytes(int64(size))
				b.ReportAllocs()
				for b.Loop() {
					var err error
					if buf, _, err = r.Append(buf[:0], c.msg, serial.ProtobufID); err != nil {
						b.Fatal(err)
					}
				}
			})
			b.Run("dst=reused/impl=proto", func(b *testing.B) {
				buf := make([]byte, 0, size)
				b.SetBytes(int64(size))
				b.ReportAllocs()
				for b.Loop() {
					var err error
					if buf, err = (proto.MarshalOptions{}).MarshalAppend(buf[:0], c.msg); err != nil {
						b.Fatal(err)
					}
				}
			})
			b.Run("dst=nil/impl=serial", func(b *testing.B) {
				b.SetBytes(int64(size))
				b.ReportAllocs()
				for b.Loop() {
					if _, _, err := r.Marshal(c.msg, serial.ProtobufID); err != nil {
						b.Fatal(err)
					}
				}
			})
			b.Run("dst=nil/impl=proto", func(b *testing.B) {
				b.SetBytes(int64(size))
				b.ReportAllocs()
				for b.Loop() {
					if _, err := proto.Marshal(c.msg); err != nil {
						b.Fatal(err)
					}
				}
			})
		})
	}
}

// BenchmarkUnmarshal compares Registry.Unmarshal, which finds the type by
// name, with proto.Unmarshal into a new message of a type known at compile
// time.
func BenchmarkUnmarshal(b *testing.B) {
	r := newRegistry(b)
	for _, c := range benchMessages(b) {
		data, err := proto.Marshal(c.msg)
		if err != nil {
			b.Fatal(err)
		}
		name := string(c.msg.ProtoReflect().Descriptor().FullName())
		b.Run("msg="+c.name, func(b *testing.B) {
			b.Run("impl=serial", func(b *testing.B) {
				b.SetBytes(int64(len(data)))
				b.ReportAllocs()
				for b.Loop() {
					if _, err := r.Unmarshal(name, serial.ProtobufID, data); err != nil {
						b.Fatal(err)
					}
				}
			})
			b.Run("impl=proto", func(b *testing.B) {
				b.SetBytes(int64(len(data)))
				b.ReportAllocs()
				for b.Loop() {
					if err := proto.Unmarshal(data, c.msg.ProtoReflect().New().Interface()); err != nil {
						b.Fatal(err)
					}
				}
			})
		})
	}
}

// BenchmarkUnmarshalParallel shows that the type cache does not contend:
// every goroutine decodes the same type.
func BenchmarkUnmarshalParallel(b *testing.B) {
	r := newRegistry(b)
	data, _ := (&courierv1.Ack{Position: 1 << 30}).MarshalVT()
	b.Run("impl=serial", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := r.Unmarshal("courier.v1.Ack", serial.ProtobufID, data); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
	b.Run("impl=proto", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if err := proto.Unmarshal(data, new(courierv1.Ack)); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
}

// BenchmarkJSON compares the JSON serializer with protojson itself: the
// registry's share of the cost.
func BenchmarkJSON(b *testing.B) {
	r := newRegistry(b)
	for _, c := range benchMessages(b)[:1] {
		data, err := protojson.Marshal(c.msg)
		if err != nil {
			b.Fatal(err)
		}
		name := string(c.msg.ProtoReflect().Descriptor().FullName())
		b.Run(fmt.Sprintf("msg=%s/op=marshal/impl=serial", c.name), func(b *testing.B) {
			buf := make([]byte, 0, 2*len(data))
			b.ReportAllocs()
			for b.Loop() {
				buf, _, _ = r.Append(buf[:0], c.msg, serial.JSONID)
			}
		})
		b.Run(fmt.Sprintf("msg=%s/op=marshal/impl=protojson", c.name), func(b *testing.B) {
			buf := make([]byte, 0, 2*len(data))
			b.ReportAllocs()
			for b.Loop() {
				buf, _ = protojson.MarshalOptions{}.MarshalAppend(buf[:0], c.msg)
			}
		})
		b.Run(fmt.Sprintf("msg=%s/op=unmarshal/impl=serial", c.name), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := r.Unmarshal(name, serial.JSONID, data); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(fmt.Sprintf("msg=%s/op=unmarshal/impl=protojson", c.name), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if err := (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(data, c.msg.ProtoReflect().New().Interface()); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
