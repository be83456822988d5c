package batch

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/courier-go/courier/batch/internal/refpb"
	"google.golang.org/protobuf/proto"
)

// BenchmarkCodec measures encoding and decoding per envelope: ns/op is per
// envelope, MB/s counts payload bytes, wire-B/env is the encoded size per
// envelope. impl=courier is this package with a warm stream dictionary;
// impl=stock is the reference in the same run: the same envelopes in a
// protoactor-go–style batch (string tables per batch, no stream dictionary)
// through stock proto.Marshal and proto.Unmarshal.
func BenchmarkCodec(b *testing.B) {
	for _, payload := range []int{16, 64, 1024, 65536} {
		for _, batch := range []int{1, 64, 1024} {
			if payload*batch > 16<<20 || testing.Short() && payload*batch > 64<<10 {
				continue // -short (CI's smoke run): the small frames only
			}
			for _, op := range []string{"encode", "decode"} {
				for _, c := range []struct{ compress, data string }{
					{"off", "random"}, {"on", "random"}, {"on", "text"},
				} {
					name := fmt.Sprintf("impl=courier/op=%s/payload=%d/batch=%d/compress=%s/data=%s", op, payload, batch, c.compress, c.data)
					b.Run(name, func(b *testing.B) {
						benchCourier(b, op, benchEnvelopes(payload, batch, c.data), c.compress == "on")
					})
				}
				name := fmt.Sprintf("impl=stock/op=%s/payload=%d/batch=%d/compress=off/data=random", op, payload, batch)
				b.Run(name, func(b *testing.B) {
					benchStock(b, op, benchEnvelopes(payload, batch, "random"))
				})
			}
		}
	}
}

// benchEnvelopes returns a batch like an actor system sends: a handful of
// targets, one local sender (so no sender address), one message type, a
// request id.
func benchEnvelopes(payload, n int, data string) []Envelope {
	rng := rand.New(rand.NewPCG(uint64(payload), uint64(n)))
	targets := make([]string, 8)
	for i := range targets {
		targets[i] = fmt.Sprintf("node-1/worker-%d", i)
	}
	envs := make([]Envelope, n)
	for i := range envs {
		p := make([]byte, payload)
		if data == "text" {
			copy(p, bytes.Repeat([]byte("order 1234 shipped to warehouse 7; "), payload/36+1))
		} else {
			for j := range p {
				p[j] = byte(rng.Uint32())
			}
		}
		envs[i] = Envelope{
			Target: targets[i%len(targets)], TypeName: "shop.OrderShipped", SenderID: "orders",
			RequestID: uint64(i % 100), Payload: p,
		}
	}
	return envs
}

func benchLimits() Limits {
	l := DefaultLimits()
	l.MaxFrameBytes = 64 << 20
	return l
}

func benchCourier(b *testing.B, op string, envs []Envelope, compress bool) {
	cfg := EncoderConfig{Limits: benchLimits(), Compress: compress}
	enc, dec := newPair(b, cfg, DecoderConfig{Limits: benchLimits()})
	encodeFrame := func() *Buffer {
		for i := range envs {
			if err := enc.Add(&envs[i]); err != nil {
				b.Fatal(err)
			}
		}
		buf, err := enc.Flush()
		if err != nil {
			b.Fatal(err)
		}
		return buf
	}
	// The first frame defines the strings; measure the steady state.
	first := encodeFrame()
	if _, err := dec.Decode(first.B); err != nil {
		b.Fatal(err)
	}
	first.Release()
	frame := encodeFrame()
	wire := len(frame.B)

	b.SetBytes(int64(len(envs[0].Payload)))
	b.ReportAllocs()
	b.ResetTimer()
	switch op {
	case "encode":
		for done := 0; done < b.N; done += len(envs) {
			encodeFrame().Release()
		}
	case "decode":
		for done := 0; done < b.N; done += len(envs) {
			d, err := dec.Decode(frame.B)
			if err != nil || len(d.Envelopes) != len(envs) {
				b.Fatalf("decoded %d: %v", len(d.Envelopes), err)
			}
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(wire)/float64(len(envs)), "wire-B/env")
	frame.Release()
}

func benchStock(b *testing.B, op string, envs []Envelope) {
	frame, err := proto.Marshal(stockBatch(envs))
	if err != nil {
		b.Fatal(err)
	}
	out := make([]Envelope, len(envs))

	b.SetBytes(int64(len(envs[0].Payload)))
	b.ReportAllocs()
	b.ResetTimer()
	switch op {
	case "encode":
		for done := 0; done < b.N; done += len(envs) {
			if _, err := proto.Marshal(stockBatch(envs)); err != nil {
				b.Fatal(err)
			}
		}
	case "decode":
		for done := 0; done < b.N; done += len(envs) {
			if err := stockDecode(frame, out); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(len(frame))/float64(len(envs)), "wire-B/env")
}

// stockBatch builds a batch the way protoactor-go's endpoint writer does:
// fresh string tables for every batch.
func stockBatch(envs []Envelope) *refpb.RefBatch {
	batch := &refpb.RefBatch{Envelopes: make([]*refpb.RefEnvelope, 0, len(envs))}
	typeIDs, targetIDs, senderIDs := map[string]int32{}, map[string]int32{}, map[string]int32{}
	index := func(m map[string]int32, s string, add func()) int32 {
		id, ok := m[s]
		if !ok {
			id = int32(len(m))
			m[s] = id
			add()
		}
		return id
	}
	for i := range envs {
		e := &envs[i]
		re := &refpb.RefEnvelope{
			MessageData:     e.Payload,
			SerializerId:    int32(e.SerializerID),
			TargetRequestId: uint32(e.RequestID),
		}
		re.TypeId = index(typeIDs, e.TypeName, func() { batch.TypeNames = append(batch.TypeNames, e.TypeName) })
		re.Target = index(targetIDs, e.Target, func() { batch.Targets = append(batch.Targets, e.Target) })
		re.Sender = index(senderIDs, e.SenderAddress+"\x00"+e.SenderID, func() {
			batch.Senders = append(batch.Senders, &refpb.RefPID{Address: e.SenderAddress, Id: e.SenderID})
		})
		if len(e.Header) > 0 {
			re.MessageHeader = &refpb.RefHeader{HeaderData: map[string]string{}}
			for _, h := range e.Header {
				re.MessageHeader.HeaderData[h.Key] = h.Value
			}
		}
		batch.Envelopes = append(batch.Envelopes, re)
	}
	return batch
}

// stockDecode unmarshals a reference batch and resolves its envelopes.
func stockDecode(frame []byte, out []Envelope) error {
	var batch refpb.RefBatch
	if err := proto.Unmarshal(frame, &batch); err != nil {
		return err
	}
	for i, re := range batch.Envelopes {
		sender := batch.Senders[re.Sender]
		out[i] = Envelope{
			Target: batch.Targets[re.Target], TypeName: batch.TypeNames[re.TypeId],
			SenderAddress: sender.Address, SenderID: sender.Id, RequestID: uint64(re.TargetRequestId),
			SerializerID: uint32(re.SerializerId), Payload: re.MessageData,
		}
	}
	return nil
}
