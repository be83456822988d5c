package batch

import (
	"fmt"
	"math"
	"unsafe"

	courierv1 "github.com/courier-go/courier/proto/courier/v1"
	"github.com/klauspost/compress/s2"
	"google.golang.org/protobuf/encoding/protowire"
)

// headerBytes is the share of a frame's size that one decoded header entry
// may cost: a frame carries at most MaxFrameBytes/headerBytes header entries
// in all, so that header memory never exceeds the frame's own size.
const headerBytes = 32

// DecoderConfig configures a Decoder.
type DecoderConfig struct {
	// Limits are the stream's negotiated limits; anything beyond them is
	// refused. Zero value: DefaultLimits.
	Limits Limits
	// Lane is the lane of the stream, set on every decoded envelope.
	Lane Lane
}

// Decoded is what one frame carries. Only the fields of its Kind are set.
type Decoded struct {
	Kind FrameKind
	// Position is the position of a batch's first envelope: envelope i has
	// position Position+i.
	Position uint64
	// AckRequested says the sender wants an Ack once the batch is
	// delivered.
	AckRequested bool
	// Envelopes are a batch's envelopes, valid until the next Decode.
	Envelopes []Envelope
	// Control is the whole frame for every kind but FrameBatch. Acks and
	// heartbeats, which come with every few batches, are decoded into
	// messages the Decoder reuses, valid until the next Decode; the other
	// kinds into memory of their own.
	Control *courierv1.Frame
}

// Decoder decodes the frames of one inbound stream. Not safe for concurrent
// use.
type Decoder struct {
	cfg       DecoderConfig
	maxHeader int // header entries per frame
	dict      decDict
	envs      []Envelope
	hdrs      []Header
	inflated  *Buffer // decompressed body of the last frame
	stitched  *Buffer // the last frame's fields that straddled segments
	size      int     // bytes in the frame being decoded
	window    [maxHead]byte
	one       [1][]byte // Decode's frame as DecodeSegments' one segment
	// The reused control frame, for acks and heartbeats, with their
	// wrappers and messages.
	control  courierv1.Frame
	ackKind  courierv1.Frame_Ack
	beatKind courierv1.Frame_Heartbeat
	ack      courierv1.Ack
	beat     courierv1.Heartbeat
}

// NewDecoder returns a Decoder for a new stream, with an empty dictionary.
func NewDecoder(cfg DecoderConfig) (*Decoder, error) {
	if cfg.Limits == (Limits{}) {
		cfg.Limits = DefaultLimits()
	}
	if err := cfg.Limits.Validate(); err != nil {
		return nil, err
	}
	return &Decoder{cfg: cfg, maxHeader: cfg.Limits.MaxFrameBytes / headerBytes}, nil
}

// Footprint returns the bytes of memory the Decoder holds: its envelope and
// header scratch space, its dictionary, its decompression buffer and its
// stitch buffer. It never exceeds MaxFootprint of its limits, whatever it is
// fed.
func (d *Decoder) Footprint() int {
	return cap(d.envs)*int(unsafe.Sizeof(Envelope{})) + cap(d.hdrs)*int(unsafe.Sizeof(Header{})) +
		cap(d.dict.strs)*int(unsafe.Sizeof("")) + d.dict.bytes + cap(d.inflated.bytes()) + cap(d.stitched.bytes())
}

// MaxFootprint bounds the memory a Decoder with limits l can be made to
// hold: scratch space for a frame's worth of envelopes and header entries
// (capacity may round up to twice what is used), the dictionary, one
// decompressed frame and one frame's stitched fields (pooled buffers round
// up to a power of two).
func MaxFootprint(l Limits) int {
	return 2*l.MaxBatchEnvelopes*int(unsafe.Sizeof(Envelope{})) +
		2*(l.MaxFrameBytes/headerBytes)*int(unsafe.Sizeof(Header{})) +
		2*l.MaxDictionaryEntries*int(unsafe.Sizeof("")) + l.MaxDictionaryBytes +
		2*2*l.MaxFrameBytes
}

// Limits returns the limits the Decoder enforces.
func (d *Decoder) Limits() Limits { return d.cfg.Limits }

// Close releases the Decoder's buffers. Envelopes it returned are invalid
// after.
func (d *Decoder) Close() {
	d.Release()
	d.envs = nil
	d.hdrs = nil
	d.dict.reset()
}

// Decode decodes one frame. For a batch it applies the frame's dictionary
// changes and returns its envelopes, which alias data (and memory of the
// Decoder's) and are valid until the next call to Decode, DecodeSegments or
// Release. An error wraps one of the package's sentinels; after an error the
// stream's state is undefined and the stream must be closed.
func (d *Decoder) Decode(data []byte) (Decoded, error) {
	d.reset()
	d.one[0] = data
	return d.decode(d.one[:])
}

// DecodeSegments decodes the frame that segs make when joined, as Decode
// does, without joining them: envelopes alias the segments, and only fields
// that straddle two segments are copied, into memory of the Decoder's. It
// suits a frame that arrived in pieces, as gRPC receives a message larger
// than one HTTP/2 DATA frame.
func (d *Decoder) DecodeSegments(segs [][]byte) (Decoded, error) {
	d.reset()
	return d.decode(segs)
}

// Release gives back the memory that the last frame decoded holds in the
// Decoder: the envelopes it returned are invalid after. The Decoder stays
// ready for the next frame. A receiver that may go idle calls it once it is
// done with a frame; between frames in a burst, the Decoder keeps its stitch
// buffer for the next.
func (d *Decoder) Release() {
	d.reset()
	d.stitched.Release()
	d.stitched = nil
}

// reset forgets the last frame, keeping the stitch buffer's memory.
func (d *Decoder) reset() {
	d.inflated.Release()
	d.inflated = nil
	if d.stitched != nil {
		d.stitched.B = d.stitched.B[:0]
	}
	d.one[0] = nil
}

func (d *Decoder) decode(segs [][]byte) (Decoded, error) {
	lim := &d.cfg.Limits
	d.size = 0
	for _, s := range segs {
		d.size += len(s)
	}
	if d.size == 0 {
		return Decoded{}, fmt.Errorf("%w: empty frame", ErrCorruptFrame)
	}
	if d.size > lim.MaxFrameBytes {
		return Decoded{}, fmt.Errorf("%w: %d bytes, limit %d", ErrFrameTooLarge, d.size, lim.MaxFrameBytes)
	}
	c := newCursor(d, segs, d.size)
	flags := c.head()[0]
	c.skip(1)
	if flags&reservedFlags != 0 {
		return Decoded{}, fmt.Errorf("%w: reserved flags %#x set", ErrCorruptFrame, flags)
	}
	if flags&FlagS2 != 0 {
		body := c.take(c.left)
		n, err := s2.DecodedLen(body)
		if err != nil {
			return Decoded{}, fmt.Errorf("%w: compressed body: %v", ErrCorruptFrame, err)
		}
		if 1+n > lim.MaxFrameBytes {
			return Decoded{}, fmt.Errorf("%w: decompresses to %d bytes, limit %d", ErrFrameTooLarge, 1+n, lim.MaxFrameBytes)
		}
		d.inflated = GetBuffer(n)
		out, err := s2.Decode(d.inflated.B, body)
		if err != nil {
			return Decoded{}, fmt.Errorf("%w: compressed body: %v", ErrCorruptFrame, err)
		}
		d.one[0] = out // the body is read: the segments are done with
		c = newCursor(d, d.one[:], len(out))
	}

	// The Frame message: exactly one of its oneof fields, unknown fields
	// skipped.
	body := c
	var kind FrameKind
	var sub cursor
	for c.left > 0 {
		h := c.head()
		num, typ, n := protowire.ConsumeTag(h)
		if n < 0 {
			return Decoded{}, corrupt("frame", n)
		}
		if num >= 1 && num <= 6 {
			if typ != protowire.BytesType || kind != 0 {
				return Decoded{}, fmt.Errorf("%w: frame field %d repeated or of wire type %d", ErrCorruptFrame, num, typ)
			}
			l, m := c.length(h, n)
			if m < 0 {
				return Decoded{}, corrupt("frame", m)
			}
			kind, sub = FrameKind(num), c.sub(l)
			continue
		}
		c.skip(n)
		if n = c.skipField(num, typ, protowire.DefaultRecursionLimit); n < 0 {
			return Decoded{}, corrupt("frame", n)
		}
	}
	switch kind {
	case 0:
		return Decoded{}, fmt.Errorf("%w: frame carries nothing", ErrCorruptFrame)
	case FrameBatch:
		return d.decodeBatch(sub)
	}
	f := d.controlFrame(kind)
	if err := f.UnmarshalVT(body.take(body.left)); err != nil {
		return Decoded{}, fmt.Errorf("%w: %s: %v", ErrCorruptFrame, kind, err)
	}
	return Decoded{Kind: kind, Control: f}, nil
}

// Batch field numbers.
const (
	batchPosition  = 1
	batchReset     = 2
	batchNewString = 3
	batchEnvelope  = 4
	batchAckReq    = 5
)

func (d *Decoder) decodeBatch(c cursor) (Decoded, error) {
	lim := &d.cfg.Limits
	// Decoding overwrites the slots it uses; slots the previous frame used
	// beyond those are cleared at the end, so no reference into an old
	// frame survives.
	prevEnvs, prevHdrs := len(d.envs), len(d.hdrs)
	d.envs, d.hdrs = d.envs[:0], d.hdrs[:0]
	defer func() {
		if n := len(d.envs); n < prevEnvs {
			clear(d.envs[n:prevEnvs])
		}
		if n := len(d.hdrs); n < prevHdrs {
			clear(d.hdrs[n:prevHdrs])
		}
	}()
	out := Decoded{Kind: FrameBatch}
	last := 0 // field number of the last field seen, to enforce their order
	for c.left > 0 {
		h := c.avail() // c.head(), inlined by hand for this loop
		if len(h) < maxHead && len(h) != c.left {
			h = c.gatherHead()
		}
		var num protowire.Number
		var typ protowire.Type
		n := 1
		if len(h) > 0 && h[0] < 0x80 && h[0] >= 0x08 { // consumeTag by hand, as in decodeEnvelope
			t := h[0]
			num, typ = protowire.Number(t>>3), protowire.Type(t&7)
		} else if num, typ, n = protowire.ConsumeTag(h); n < 0 {
			return Decoded{}, corrupt("batch", n)
		}
		if num >= batchPosition && num <= batchAckReq {
			if int(num) < last {
				return Decoded{}, fmt.Errorf("%w: batch field %d after field %d", ErrCorruptFrame, num, last)
			}
			last = int(num)
		}
		switch {
		case num == batchPosition && typ == protowire.VarintType:
			out.Position, n = c.varint(h, n)
		case num == batchReset && typ == protowire.VarintType:
			var v uint64
			if v, n = c.varint(h, n); n > 0 && v != 0 {
				d.dict.reset()
			}
		case num == batchNewString && typ == protowire.BytesType:
			var v []byte
			if v, n = c.bytes(h, n); n > 0 {
				if err := d.define(v); err != nil {
					return Decoded{}, err
				}
			}
		case num == batchEnvelope && typ == protowire.BytesType:
			var v []byte
			if v, n = c.bytes(h, n); n > 0 {
				if len(d.envs) >= lim.MaxBatchEnvelopes {
					return Decoded{}, fmt.Errorf("%w: limit %d", ErrTooManyEnvelopes, lim.MaxBatchEnvelopes)
				}
				// Decoded on the stack and stored once: in place, the slot
				// would be written twice (zeroed, then filled), with the
				// collector's write barriers on the second pass.
				e := Envelope{Lane: d.cfg.Lane}
				if err := d.decodeEnvelope(&e, v); err != nil {
					return Decoded{}, err
				}
				d.envs = append(d.envs, e)
			}
		case num == batchAckReq && typ == protowire.VarintType:
			var v uint64
			v, n = c.varint(h, n)
			out.AckRequested = v != 0
		case num >= batchPosition && num <= batchAckReq:
			return Decoded{}, fmt.Errorf("%w: batch field %d of wire type %d", ErrCorruptFrame, num, typ)
		default:
			c.skip(n)
			n = c.skipField(num, typ, protowire.DefaultRecursionLimit)
		}
		if n < 0 {
			return Decoded{}, corrupt("batch", n)
		}
	}
	out.Envelopes = d.envs
	return out, nil
}

// define adds a string to the dictionary, within the limits.
func (d *Decoder) define(v []byte) error {
	lim := &d.cfg.Limits
	switch {
	case len(v) > lim.MaxStringBytes:
		return fmt.Errorf("%w: string of %d bytes, limit %d", ErrDictionaryOverflow, len(v), lim.MaxStringBytes)
	case len(d.dict.strs) >= lim.MaxDictionaryEntries:
		return fmt.Errorf("%w: more than %d entries", ErrDictionaryOverflow, lim.MaxDictionaryEntries)
	case d.dict.bytes+len(v) > lim.MaxDictionaryBytes:
		return fmt.Errorf("%w: more than %d bytes", ErrDictionaryOverflow, lim.MaxDictionaryBytes)
	}
	d.dict.strs = append(d.dict.strs, string(v)) // owned: it outlives the frame
	d.dict.bytes += len(v)
	return nil
}

// Envelope field numbers.
const (
	envTarget        = 1
	envRequestID     = 2
	envSenderAddress = 3
	envSenderID      = 4
	envTypeName      = 5
	envSerializerID  = 6
	envPayload       = 7
	envHeader        = 8
	envSystemKind    = 9
	envDataPosition  = 10
)

func (d *Decoder) decodeEnvelope(e *Envelope, b []byte) error {
	hdrStart := len(d.hdrs)
	// The usual envelope, read straight: its first fields in the order the
	// encoder writes them, each with a one-byte tag and dictionary ids of
	// one byte, without the general loop's dispatch. The loop takes
	// whatever follows, in any order.
	var ok bool
	for _, f := range [...]struct {
		tag byte
		num protowire.Number
		dst *string
	}{{tagEnvTarget, envTarget, &e.Target}, {tagEnvRequestID, envRequestID, nil},
		{tagEnvSenderAddress, envSenderAddress, &e.SenderAddress}, {tagEnvSenderID, envSenderID, &e.SenderID},
		{tagEnvTypeName, envTypeName, &e.TypeName}} {
		if len(b) < 2 || b[0] != f.tag {
			continue
		}
		if f.dst == nil { // the request id, of any width
			v, n := uint64(b[1]), 1
			if v >= 0x80 {
				if v, n = protowire.ConsumeVarint(b[1:]); n < 0 {
					return corrupt("envelope", n)
				}
			}
			e.RequestID, b = v, b[1+n:]
			continue
		}
		if b[1] >= 0x80 {
			break // a wide id: the loop reads it
		}
		if *f.dst, ok = d.dict.get(uint64(b[1])); !ok {
			return d.badValue(f.num, uint64(b[1]))
		}
		b = b[2:]
	}
	for len(b) > 0 {
		// consumeTag and consumeVarint by hand, their one-byte cases inline:
		// this loop runs for every field of every envelope, and neither
		// function is small enough for the compiler to inline.
		var num protowire.Number
		var typ protowire.Type
		if t := b[0]; t < 0x80 && t >= 0x08 {
			num, typ = protowire.Number(t>>3), protowire.Type(t&7)
			b = b[1:]
		} else {
			var n int
			if num, typ, n = protowire.ConsumeTag(b); n < 0 {
				return corrupt("envelope", n)
			}
			b = b[n:]
		}
		var n int
		if typ == protowire.VarintType && num != envPayload && num != envHeader {
			var v uint64
			if len(b) > 0 && b[0] < 0x80 {
				v = uint64(b[0])
				b = b[1:]
			} else {
				if v, n = protowire.ConsumeVarint(b); n < 0 {
					return corrupt("envelope", n)
				}
				b = b[n:]
			}
			var ok bool
			switch num {
			case envTarget:
				e.Target, ok = d.dict.get(v)
			case envSenderAddress:
				e.SenderAddress, ok = d.dict.get(v)
			case envSenderID:
				e.SenderID, ok = d.dict.get(v)
			case envTypeName:
				e.TypeName, ok = d.dict.get(v)
			case envRequestID:
				e.RequestID, ok = v, true
			case envSerializerID:
				e.SerializerID, ok = uint32(v), v <= math.MaxUint32
			case envSystemKind:
				e.Kind, ok = SystemKind(v), v <= math.MaxUint8
			case envDataPosition:
				e.DataPosition, ok = v, true
			default:
				ok = true // unknown field
			}
			if !ok {
				return d.badValue(num, v)
			}
			continue
		}
		switch {
		case num == envPayload && typ == protowire.BytesType:
			if len(b) > 0 && b[0] < 0x80 && int(b[0]) < len(b) { // under 128 bytes
				l := 1 + int(b[0])
				e.Payload = b[1:l:l]
				n = l
				break
			}
			var v []byte
			if v, n = protowire.ConsumeBytes(b); n >= 0 {
				e.Payload = v[:len(v):len(v)]
			}
		case num == envHeader && typ == protowire.BytesType:
			var v []byte
			if v, n = protowire.ConsumeBytes(b); n >= 0 {
				if err := d.decodeHeader(v, hdrStart); err != nil {
					return err
				}
			}
		case num <= envDataPosition:
			return fmt.Errorf("%w: envelope field %d of wire type %d", ErrCorruptFrame, num, typ)
		default:
			n = protowire.ConsumeFieldValue(num, typ, b)
		}
		if n < 0 {
			return corrupt("envelope", n)
		}
		b = b[n:]
	}
	if len(d.hdrs) > hdrStart {
		e.Header = d.hdrs[hdrStart:len(d.hdrs):len(d.hdrs)]
	}
	return nil
}

func (d *Decoder) badValue(num protowire.Number, v uint64) error {
	switch num {
	case envTarget, envSenderAddress, envSenderID, envTypeName:
		return fmt.Errorf("%w: id %d, dictionary holds %d", ErrUnknownString, v, len(d.dict.strs))
	}
	return fmt.Errorf("%w: envelope field %d value %d out of range", ErrCorruptFrame, num, v)
}

func (d *Decoder) decodeHeader(b []byte, envStart int) error {
	if len(d.hdrs)-envStart >= d.cfg.Limits.MaxHeaderEntries {
		return fmt.Errorf("%w: limit %d per envelope", ErrTooManyHeaders, d.cfg.Limits.MaxHeaderEntries)
	}
	if len(d.hdrs) >= d.maxHeader {
		return fmt.Errorf("%w: limit %d per frame", ErrTooManyHeaders, d.maxHeader)
	}
	var h Header
	for len(b) > 0 {
		num, typ, n := consumeTag(b)
		if n < 0 {
			return corrupt("header", n)
		}
		b = b[n:]
		switch {
		case num == 1 && typ == protowire.VarintType:
			var id uint64
			if id, n = consumeVarint(b); n >= 0 {
				var ok bool
				if h.Key, ok = d.dict.get(id); !ok {
					return fmt.Errorf("%w: header key id %d, dictionary holds %d", ErrUnknownString, id, len(d.dict.strs))
				}
			}
		case num == 2 && typ == protowire.BytesType:
			var v []byte
			if v, n = protowire.ConsumeBytes(b); n >= 0 {
				h.Value = unsafe.String(unsafe.SliceData(v), len(v)) // aliases the frame
			}
		case num <= 2:
			return fmt.Errorf("%w: header field %d of wire type %d", ErrCorruptFrame, num, typ)
		default:
			n = protowire.ConsumeFieldValue(num, typ, b)
		}
		if n < 0 {
			return corrupt("header", n)
		}
		b = b[n:]
	}
	d.hdrs = append(d.hdrs, h)
	return nil
}

// consumeTag is protowire.ConsumeTag with a fast path for the one-byte
// tags of every field courier defines.
func consumeTag(b []byte) (protowire.Number, protowire.Type, int) {
	if len(b) > 0 && b[0] < 0x80 && b[0] >= 0x08 {
		return protowire.Number(b[0] >> 3), protowire.Type(b[0] & 7), 1
	}
	return protowire.ConsumeTag(b)
}

// consumeVarint is protowire.ConsumeVarint with a fast path for one byte.
func consumeVarint(b []byte) (uint64, int) {
	if len(b) > 0 && b[0] < 0x80 {
		return uint64(b[0]), 1
	}
	return protowire.ConsumeVarint(b)
}

func corrupt(what string, n int) error {
	return fmt.Errorf("%w: %s: %v", ErrCorruptFrame, what, protowire.ParseError(n))
}
