package reader

import (
	"fmt"
	"io"
	"testing"

	"github.com/courier-go/courier/batch"
	"github.com/courier-go/courier/internal/wire"
	"google.golang.org/grpc/mem"
)

// frameSource is a stream that yields freshly encoded frames of 64
// envelopes, through the same codec gRPC uses, until it has yielded n
// envelopes.
type frameSource struct {
	enc  *batch.Encoder
	envs []batch.Envelope
	left int
	prev *batch.Buffer
}

func (f *frameSource) SendMsg(m any) error {
	m.(*batch.Buffer).Release()
	return nil
}

func (f *frameSource) RecvMsg(m any) error {
	f.prev.Release()
	f.prev = nil
	if f.left <= 0 {
		return io.EOF
	}
	n := min(f.left, len(f.envs))
	for i := range n {
		if err := f.enc.Add(&f.envs[i]); err != nil {
			return err
		}
	}
	f.left -= n
	buf, err := f.enc.Flush()
	if err != nil {
		return err
	}
	f.prev = buf
	return wire.Codec{}.Unmarshal(mem.BufferSlice{mem.SliceBuffer(buf.B)}, m)
}

// BenchmarkReaderPath measures the receive path from a received frame to
// the handler: decode, deduplicate, deliver, acknowledge. Frames carry 64
// envelopes each and are encoded by the stream itself, so ns/op includes
// encoding; allocs/op is per envelope and counts both.
func BenchmarkReaderPath(b *testing.B) {
	for _, payload := range []int{64, 1024} {
		b.Run(fmt.Sprintf("payload=%d", payload), func(b *testing.B) {
			enc, err := batch.NewEncoder(batch.EncoderConfig{})
			if err != nil {
				b.Fatal(err)
			}
			envs := make([]batch.Envelope, 64)
			for i := range envs {
				envs[i] = batch.Envelope{Target: "worker/1", TypeName: "bench.Msg", SenderID: "s", Payload: make([]byte, payload)}
			}
			delivered := 0
			src := &frameSource{enc: enc, envs: envs, left: 64 * 100}
			r := &Receive{
				Stream: src, Limits: batch.DefaultLimits(),
				Deliver:  func(*Peer, *batch.Envelope) { delivered++ },
				State:    &LaneState{},
				Ack:      func(uint64) error { return nil },
				Counters: &Counters{},
			}
			r.Generation = r.State.Claim()
			if err := r.Run(); err != io.EOF { // warm up
				b.Fatal(err)
			}
			// A new stream: a new encoder, whose positions go on where the
			// lane left off, and a new decoder in Run.
			src.enc, _ = batch.NewEncoder(batch.EncoderConfig{})
			src.enc.SetNextPosition(r.State.Last() + 1)
			src.left = b.N
			b.SetBytes(int64(payload))
			b.ReportAllocs()
			b.ResetTimer()
			if err := r.Run(); err != io.EOF {
				b.Fatal(err)
			}
			b.StopTimer()
			if delivered != b.N+64*100 {
				b.Fatalf("delivered %d, want %d", delivered, b.N+64*100)
			}
		})
	}
}
