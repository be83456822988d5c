package batch

import (
	"fmt"

	courierv1 "github.com/courier-go/courier/proto/courier/v1"
)

// Control frames: every frame but a batch (hello, welcome, ack, heartbeat,
// goodbye). They are small, encoded and decoded whole as protobuf messages;
// acks and heartbeats, which come with every few batches, without
// allocating.

// FrameKind says what a decoded frame carries: which field of the wire's
// Frame oneof is set. Its values are those field numbers.
type FrameKind uint8

// Frame kinds.
const (
	FrameHello     FrameKind = 1
	FrameWelcome   FrameKind = 2
	FrameBatch     FrameKind = 3
	FrameAck       FrameKind = 4
	FrameHeartbeat FrameKind = 5
	FrameGoodbye   FrameKind = 6
)

// String returns the kind's name.
func (k FrameKind) String() string {
	switch k {
	case FrameHello:
		return "hello"
	case FrameWelcome:
		return "welcome"
	case FrameBatch:
		return "batch"
	case FrameAck:
		return "ack"
	case FrameHeartbeat:
		return "heartbeat"
	case FrameGoodbye:
		return "goodbye"
	}
	return fmt.Sprintf("frame-kind(%d)", uint8(k))
}

// EncodeControl encodes a frame that is not a batch (hello, welcome, ack,
// heartbeat, goodbye) into a pooled Buffer. These frames are small and rare;
// they are never compressed.
func EncodeControl(f *courierv1.Frame) (*Buffer, error) {
	n := f.SizeVT()
	buf := GetBuffer(1 + n)
	buf.B[0] = 0
	if _, err := f.MarshalToSizedBufferVT(buf.B[1:]); err != nil {
		buf.Release()
		return nil, fmt.Errorf("batch: encoding control frame: %w", err)
	}
	return buf, nil
}

// AckEncoder encodes Ack frames without allocating anything but the pooled
// buffer: its messages are linked once and reused. The zero AckEncoder is
// ready to use; it is not safe for concurrent use.
//
// Its acks carry AckPadding bytes of padding (courier.v1.Ack.padding), so
// that gRPC reads them into its pool: it reads a DATA frame of 1 KiB or
// less into an allocation of its own, two in fact, and a third when it
// takes the message's header off. An ack follows every few frames; padded,
// it costs the node that reads it one allocation instead of four, for 1 KiB
// on the wire back.
type AckEncoder struct {
	frame courierv1.Frame
	wrap  courierv1.Frame_Ack
	ack   courierv1.Ack
}

// Encode returns an Ack frame for position pos, as EncodeControl does.
func (a *AckEncoder) Encode(pos uint64) (*Buffer, error) {
	if a.frame.Kind == nil {
		a.wrap.Ack = &a.ack
		a.frame.Kind = &a.wrap
		a.ack.Padding = ackPadding[:]
	}
	a.ack.Position = pos
	return EncodeControl(&a.frame)
}

// AckPadding is how many bytes of padding an AckEncoder's acks carry.
const AckPadding = 1 << 10

var ackPadding [AckPadding]byte

// controlFrame returns the frame to decode a control frame of kind into:
// for an ack or a heartbeat, the Decoder's own, emptied, whose oneof
// already holds the kind's message (so that UnmarshalVT decodes into it and
// allocates nothing); a new one for the rare kinds.
func (d *Decoder) controlFrame(kind FrameKind) *courierv1.Frame {
	f := &d.control
	f.Reset()
	switch kind {
	case FrameAck:
		pad := d.ack.Padding[:0] // decoded into, so its room is kept
		d.ack.Reset()
		d.ack.Padding = pad
		d.ackKind.Ack = &d.ack
		f.Kind = &d.ackKind
	case FrameHeartbeat:
		d.beat.Reset()
		d.beatKind.Heartbeat = &d.beat
		f.Kind = &d.beatKind
	default:
		return new(courierv1.Frame)
	}
	return f
}
