package writer

import (
	"context"
	"fmt"
	"math"
	"runtime"
	"testing"

	"github.com/courier-go/courier/batch"
	"github.com/courier-go/courier/ring"
)

// discard is a stream that drops every frame, as gRPC would after writing
// it, and counts them.
type discard struct {
	frames, bytes int
}

func (d *discard) SendMsg(m any) error {
	buf := m.(*batch.Buffer)
	d.frames++
	d.bytes += len(buf.B)
	buf.Release()
	return nil
}

func (d *discard) RecvMsg(any) error { select {} }

// BenchmarkWriterPath measures the send path from Send's push to the
// stream: one producer pushes b.N envelopes into the ring, the writer
// encodes them into frames and hands them to a stream that discards them,
// and the peer acknowledges at once. ns/op and allocs/op are per envelope;
// frames/op shows how many envelopes share a frame.
func BenchmarkWriterPath(b *testing.B) {
	for _, payload := range []int{64, 1024} {
		b.Run(fmt.Sprintf("payload=%d", payload), func(b *testing.B) {
			r, err := ring.New[batch.Envelope](4096)
			if err != nil {
				b.Fatal(err)
			}
			var c Counters
			w, err := New(Config{Ring: r, MaxEnvelopes: 1024, Counters: &c,
				DeadLetter: func(*batch.Envelope, Reason) { b.Error("dead letter") }})
			if err != nil {
				b.Fatal(err)
			}
			s := &discard{}
			w.PeerAcked(math.MaxUint64) // every frame is acknowledged as soon as it is sent
			if err := w.Attach(&Link{Stream: s, Limits: batch.DefaultLimits()}); err != nil {
				b.Fatal(err)
			}
			env := batch.Envelope{Target: "worker/1", TypeName: "bench.Msg", SenderID: "s", Payload: make([]byte, payload)}
			ctx := context.Background()
			for range 10000 { // warm the dictionary and the pools
				_ = r.Push(ctx, env)
			}
			b.SetBytes(int64(payload))
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				env.RequestID = uint64(i)
				if err := r.Push(ctx, env); err != nil {
					b.Fatal(err)
				}
			}
			for c.Acked.Load() < uint64(b.N+10000) {
				runtime.Gosched() // the writer has the last envelopes
			}
			b.StopTimer()
			b.ReportMetric(float64(c.Batches.Load())/float64(b.N+10000), "frames/op")
			r.Close()
			w.Stop(ctx)
		})
	}
}
