// Package wire joins courier's frames to gRPC: the pass-through codec that
// hands gRPC pre-encoded frames and hands back received ones without a copy,
// the stream interface both sides of a Connect stream share, and the
// handshake's constants and checks.
//
// The codec is registered under the content-subtype "courier" and chosen per
// call, so an embedder's own gRPC services on the same server or connection
// keep their codecs.
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
// written it; Unmarshal takes an *InFrame and keeps a reference to the
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
	return mem.BufferSlice{mem.NewBuffer(&buf.B, framePool{})}, nil
}

// Unmarshal makes v, an *InFrame, refer to the received bytes: one
// contiguous buffer, taken by reference when gRPC received the frame in one
// piece. A frame received in pieces (HTTP/2 splits a message into 16 KiB
// DATA frames) is copied into one buffer from batch's pools, which, unlike
// gRPC's default pool, do not zero a buffer before handing it out: the copy
// overwrites every byte, and zeroing gRPC's 1 MiB class for each 256 KiB
// frame cost the receiver more CPU than anything else.
func (Codec) Unmarshal(data mem.BufferSlice, v any) error {
	f, ok := v.(*InFrame)
	if !ok {
		return fmt.Errorf("wire: cannot unmarshal into %T, want *InFrame", v)
	}
	f.Free()
	f.buf = data.MaterializeToBuffer(framePool{})
	return nil
}

// framePool returns frames gRPC has written to batch's pools. gRPC calls Put
// with the pointer it was given in Marshal, &buf.B.
type framePool struct{}

func (framePool) Get(n int) *[]byte { return &batch.GetBuffer(n).B }

func (framePool) Put(b *[]byte) { batch.ReleaseBytes(b) }

// InFrame is a received frame. Its bytes stay valid until Free, and until the
// next RecvMsg into the same InFrame, which frees the previous frame first.
type InFrame struct {
	buf mem.Buffer
}

// Bytes returns the frame's bytes.
func (f *InFrame) Bytes() []byte {
	if f.buf == nil {
		return nil
	}
	return f.buf.ReadOnlyData()
}

// Free releases the frame's bytes. Safe to call more than once.
func (f *InFrame) Free() {
	if f.buf != nil {
		f.buf.Free()
		f.buf = nil
	}
}

// Stream is one Connect stream, from either side: grpc.ClientStream and
// grpc.ServerStream both satisfy it. One goroutine may send while another
// receives; never two of either.
type Stream interface {
	SendMsg(m any) error
	RecvMsg(m any) error
}
