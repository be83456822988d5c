package wire

import (
	"fmt"

	"github.com/courier-go/courier/batch"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
)

// CodecName is the gRPC content-subtype of courier's Connect streams.
const CodecName = "courier"

func init() { encoding.RegisterCodecV2(Codec{}) }

// Codec passes frames through gRPC untouched. Marshal takes a *batch.Buffer
// and gives it to gRPC, which returns it to its pool once the transport has
// written it; Unmarshal takes an *InFrame and keeps references to the
// received bytes until InFrame.Free.
type Codec struct{}

// Name returns CodecName.
func (Codec) Name() string { return CodecName }

// Marshal hands the frame in v, a *batch.Buffer, to gRPC. Ownership of the
// buffer passes to gRPC, which releases it when it is done with it.
func (Codec) Marshal(v any) (mem.BufferSlice, error) {
	buf, ok := v.(*batch.Buffer)
	if !ok {
		return nil, fmt.Errorf("wire: cannot marshal %T, want *batch.Buffer", v)
	}
	// The slice gRPC gets is the buffer's own: gRPC reads it only while it
	// holds a reference to the buffer, and the buffer (with the slice) is
	// reused only after gRPC has dropped its last reference. So a frame
	// costs gRPC no slice of its own.
	slot, _ := buf.Carrier.(*[1]mem.Buffer)
	if slot == nil {
		slot = new([1]mem.Buffer)
		buf.Carrier = slot
	}
	slot[0] = mem.NewBuffer(&buf.B, framePool{})
	return slot[:], nil
}

// Unmarshal makes v, an *InFrame, refer to the received bytes, as gRPC
// received them: a frame larger than one HTTP/2 DATA frame (16 KiB) comes in
// pieces, and the InFrame keeps a reference to each rather than copying them
// into one buffer. batch.Decoder.DecodeSegments decodes the pieces as they
// are.
func (Codec) Unmarshal(data mem.BufferSlice, v any) error {
	f, ok := v.(*InFrame)
	if !ok {
		return fmt.Errorf("wire: cannot unmarshal into %T, want *InFrame", v)
	}
	f.Free()
	for _, b := range data {
		b.Ref()
		f.bufs = append(f.bufs, b)
		f.segs = append(f.segs, b.ReadOnlyData())
	}
	return nil
}

// framePool returns frames gRPC has written to batch's pools. gRPC calls Put
// with the pointer it was given in Marshal, &buf.B, or, as the transport's
// pool (see Pool), with one that Get returned.
type framePool struct{}

// Pool is the buffer pool courier's gRPC servers and connections read DATA
// frames into, given to gRPC with experimental.BufferPool and
// experimental.WithBufferPool. It is batch's pools: unlike gRPC's default
// pool, they do not clear a buffer's whole capacity on every Get. gRPC
// overwrites all of a buffer it reads into before anything reads it, so the
// clearing buys nothing.
func Pool() mem.BufferPool { return framePool{} }

func (framePool) Get(n int) *[]byte { return &batch.GetBuffer(n).B }

func (framePool) Put(b *[]byte) { batch.ReleaseBytes(b) }

// InFrame is a received frame, in the pieces gRPC received it in. Its bytes
// stay valid until Free, and until the next RecvMsg into the same InFrame,
// which frees the previous frame first.
type InFrame struct {
	bufs mem.BufferSlice
	segs [][]byte
}

// Segments returns the frame's bytes: joined, the segments are the frame.
func (f *InFrame) Segments() [][]byte { return f.segs }

// Len returns the frame's size in bytes.
func (f *InFrame) Len() int { return f.bufs.Len() }

// keptPieces is how many pieces' worth of slice an InFrame keeps for the
// next frame: more than a frame of the largest size needs when its DATA
// frames are full. A peer that sends tiny DATA frames makes the slices
// longer for one frame, not for the stream's life.
const keptPieces = 512

// Free releases the frame's bytes. Safe to call more than once.
func (f *InFrame) Free() {
	f.bufs.Free()
	if cap(f.segs) > keptPieces {
		f.bufs, f.segs = nil, nil
		return
	}
	clear(f.bufs)
	clear(f.segs)
	f.bufs, f.segs = f.bufs[:0], f.segs[:0]
}

// Stream is one Connect stream, from either side: grpc.ClientStream and
// grpc.ServerStream both satisfy it. One goroutine may send while another
// receives; never two of either.
type Stream interface {
	SendMsg(m any) error
	RecvMsg(m any) error
}
