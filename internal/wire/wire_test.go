package wire

import (
	"bytes"
	"testing"

	"github.com/courier-go/courier/batch"
	"google.golang.org/grpc/mem"
)

// countingPool counts the buffers given back to it.
type countingPool struct{ put int }

func (p *countingPool) Get(n int) *[]byte { b := make([]byte, n); return &b }
func (p *countingPool) Put(*[]byte)       { p.put++ }

// pieces returns a message of n pieces of 2 KiB, each from pool, as gRPC
// hands one to a codec, and the bytes they make together.
func pieces(pool *countingPool, n int) (mem.BufferSlice, []byte) {
	var data mem.BufferSlice
	var whole []byte
	for i := range n {
		b := bytes.Repeat([]byte{byte(i)}, 2048)
		whole = append(whole, b...)
		data = append(data, mem.NewBuffer(&b, pool))
	}
	return data, whole
}

// TestInFrameKeepsPieces: Unmarshal keeps a reference to every piece, past
// gRPC's own Free after Unmarshal, and InFrame.Free gives each back.
func TestInFrameKeepsPieces(t *testing.T) {
	pool := &countingPool{}
	data, whole := pieces(pool, 3)
	var in InFrame
	if err := (Codec{}).Unmarshal(data, &in); err != nil {
		t.Fatal(err)
	}
	data.Free() // what gRPC does once Unmarshal returns
	if pool.put != 0 {
		t.Fatalf("%d pieces back in the pool while the frame is held", pool.put)
	}
	if got := bytes.Join(in.Segments(), nil); !bytes.Equal(got, whole) || in.Len() != len(whole) {
		t.Fatalf("segments hold %d bytes (Len %d), want the %d received", len(got), in.Len(), len(whole))
	}
	in.Free()
	if pool.put != 3 {
		t.Fatalf("%d of 3 pieces back in the pool after Free", pool.put)
	}
	in.Free() // idempotent
	if pool.put != 3 || len(in.Segments()) != 0 {
		t.Fatalf("a second Free gave back %d pieces and left %d segments", pool.put-3, len(in.Segments()))
	}
}

// TestInFrameDropsLongSlices: a frame in more pieces than any frame of full
// DATA frames has does not leave its long slices behind.
func TestInFrameDropsLongSlices(t *testing.T) {
	pool := &countingPool{}
	var in InFrame
	for _, n := range []int{keptPieces + 1, 4} {
		data, _ := pieces(pool, n)
		if err := (Codec{}).Unmarshal(data, &in); err != nil {
			t.Fatal(err)
		}
		data.Free()
		in.Free()
		if n > keptPieces && cap(in.Segments()) != 0 {
			t.Fatalf("after a frame of %d pieces the InFrame keeps room for %d", n, cap(in.Segments()))
		}
		if n <= keptPieces && cap(in.Segments()) < n {
			t.Fatalf("after a frame of %d pieces the InFrame kept room for only %d", n, cap(in.Segments()))
		}
	}
}

// TestPool: the transport's pool hands out buffers of the length asked for,
// from its smallest class to past its largest, and takes each back; a piece
// of a received frame read into one keeps its bytes in the InFrame after
// gRPC's own Free.
func TestPool(t *testing.T) {
	pool := Pool()
	for _, n := range []int{1, 9, 2048, 2049, 16 << 10, 1 << 20, 9 << 20} {
		b := pool.Get(n)
		if len(*b) != n {
			t.Fatalf("Get(%d) gave %d bytes", n, len(*b))
		}
		for i := range *b {
			(*b)[i] = 0xAA
		}
		pool.Put(b)
	}
	b := pool.Get(16 << 10)
	copy(*b, bytes.Repeat([]byte{7}, 16<<10))
	var in InFrame
	data := mem.BufferSlice{mem.NewBuffer(b, pool)}
	if err := (Codec{}).Unmarshal(data, &in); err != nil {
		t.Fatal(err)
	}
	data.Free()
	if in.Len() != 16<<10 || in.Segments()[0][100] != 7 {
		t.Fatalf("frame of %d bytes, want %d", in.Len(), 16<<10)
	}
	in.Free()
}

// TestMarshalReusesTheBuffersSlice: a frame buffer hands gRPC the same
// one-element slice each time it is sent, so marshalling a frame in a buffer
// from the pool allocates nothing, and the slice carries the frame's bytes
// until gRPC's last reference goes and the buffer is back in the pool.
func TestMarshalReusesTheBuffersSlice(t *testing.T) {
	send := func(fill byte) (mem.BufferSlice, *batch.Buffer) {
		buf := batch.GetBuffer(4096)
		for i := range buf.B {
			buf.B[i] = fill
		}
		data, err := (Codec{}).Marshal(buf)
		if err != nil {
			t.Fatal(err)
		}
		return data, buf
	}
	data, buf := send(1)
	data.Ref() // the transport's reference, as SendMsg takes one
	data.Free()
	if len(data) != 1 || !bytes.Equal(data.Materialize(), bytes.Repeat([]byte{1}, 4096)) {
		t.Fatalf("Marshal gave %d buffers holding %d bytes, want one with the frame", len(data), data.Len())
	}
	data.Free() // the last reference: buf goes back to the pool
	again, reused := send(2)
	if reused == buf && &again[0] != &data[0] {
		t.Fatal("the same buffer, sent again, gave gRPC a new slice")
	}
	again.Free()
	// Each frame: a buffer from the pool, Marshal, gRPC's Free. The fewest
	// of a few runs, since a pool may drop what it holds at a collection.
	allocs := 1.0
	for range 5 {
		allocs = min(allocs, testing.AllocsPerRun(200, func() {
			d, _ := send(3)
			d.Free()
		}))
	}
	if allocs > 0 {
		t.Fatalf("a frame's Marshal allocates %.1f times, want 0", allocs)
	}
}
