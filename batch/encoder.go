package batch

import (
	"errors"
	"fmt"
	"unsafe"

	"github.com/klauspost/compress/s2"
	"google.golang.org/protobuf/encoding/protowire"
)

// Frame flags, the first byte of every frame.
const (
	// FlagS2 marks a body compressed as one S2 block.
	FlagS2 byte = 0x01

	reservedFlags = ^FlagS2
)

// DefaultCompressThreshold is the frame size, in bytes, from which an
// Encoder with compression on compresses.
const DefaultCompressThreshold = 4 << 10

// frameOverhead bounds what a batch frame adds around its new strings and
// envelopes: the flags byte, the Frame's field tag and length (≤ 5 bytes for
// any frame we accept), the batch's position field (≤ 11), reset flag (2)
// and ack request (2).
const frameOverhead = 1 + 1 + 5 + 11 + 2 + 2

// EncoderConfig configures an Encoder.
type EncoderConfig struct {
	// Limits are the stream's negotiated limits. An envelope that cannot
	// fit in a frame of Limits.MaxFrameBytes on its own is refused with
	// ErrEnvelopeTooLarge. Zero value: DefaultLimits.
	Limits Limits
	// MaxEnvelopes is the batching policy's cap on envelopes per frame: Add
	// reports ErrFrameFull once a frame holds this many. 0 means
	// Limits.MaxBatchEnvelopes; larger values are clamped to it.
	MaxEnvelopes int
	// MaxBytes is the batching policy's cap on a frame's size in bytes: Add
	// reports ErrFrameFull when an envelope would take a non-empty frame past
	// it. An envelope bigger than MaxBytes still travels, alone in its frame.
	// 0 means Limits.MaxFrameBytes; larger values are clamped to it.
	MaxBytes int
	// Compress turns on S2 compression of frames of CompressThreshold bytes
	// or more. A frame that does not shrink is sent uncompressed.
	Compress bool
	// CompressThreshold, in bytes; 0 means DefaultCompressThreshold.
	CompressThreshold int
	// SelfContained starts every frame with a dictionary reset, so that
	// each frame decodes on its own and can be sent again on a new stream.
	// The system lane uses it to resend unacknowledged frames verbatim
	// after a reconnect. It costs the strings' bytes in every frame.
	SelfContained bool
}

// Encoder builds the frames of one outbound stream. Add envelopes, then
// Flush to get the encoded frame. Not safe for concurrent use.
//
// A frame is encoded in one pass at Flush, straight from the envelopes as
// the caller holds them (in a queue's slots, for courier's writers): Add
// only interns the envelope's strings and sizes it. So the encoder keeps
// 28 bytes per envelope of the frame being built, not a 136-byte protobuf
// message, and copies nothing but the payloads, once, into the frame. The bytes are what proto.Marshal makes of the courier.v1.Frame
// (TestEncoderWritesCanonicalProtobuf).
type Encoder struct {
	cfg  EncoderConfig
	dict encDict

	// The frame being built: its envelopes as the caller holds them, and
	// for each its strings' dictionary ids and encoded size.
	envs []*Envelope
	meta []envMeta
	// hkeys are the dictionary ids of the frame's header keys, every
	// envelope's in order.
	hkeys []uint32
	// strs are the strings this frame defines (courier.v1.Batch.new_strings).
	strs [][]byte
	// resetDict and ackRequested are the frame's flags.
	resetDict, ackRequested bool
	// body is the encoded size of the frame's new_strings and envelopes.
	body int
	next uint64 // position of the next envelope flushed
	// framed is the position after the last frame flushed. When next moves
	// past it with no envelope to carry the news, Flush sends an empty
	// batch at next, so the receiver learns that the positions between
	// will never come.
	framed uint64
	reset  bool // the next frame must start with a dictionary reset
}

// envMeta is what Add works out about an envelope for Flush.
type envMeta struct {
	target, senderAddress, senderID, typeName uint32 // dictionary ids
	size                                      uint32 // of its Envelope message
}

// fieldsSize is the encoded size of env's Envelope message but for its
// header entries, with m's dictionary ids for its strings.
func (m *envMeta) fieldsSize(env *Envelope) int {
	size := varintField(uint64(m.target)) + varintField(env.RequestID) + varintField(uint64(m.senderAddress)) +
		varintField(uint64(m.senderID)) + varintField(uint64(m.typeName)) + varintField(uint64(env.SerializerID)) +
		varintField(uint64(env.Kind)) + varintField(env.DataPosition)
	if len(env.Payload) > 0 {
		size += bytesField(len(env.Payload))
	}
	return size
}

// NewEncoder returns an Encoder for a new stream: empty dictionary, next
// envelope position 1.
func NewEncoder(cfg EncoderConfig) (*Encoder, error) {
	if cfg.Limits == (Limits{}) {
		cfg.Limits = DefaultLimits()
	}
	if err := cfg.Limits.Validate(); err != nil {
		return nil, err
	}
	var errs []error
	if cfg.MaxEnvelopes < 0 {
		errs = append(errs, fmt.Errorf("MaxEnvelopes = %d, want >= 0", cfg.MaxEnvelopes))
	}
	if cfg.MaxBytes < 0 {
		errs = append(errs, fmt.Errorf("MaxBytes = %d, want >= 0", cfg.MaxBytes))
	}
	if cfg.CompressThreshold < 0 {
		errs = append(errs, fmt.Errorf("CompressThreshold = %d, want >= 0", cfg.CompressThreshold))
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("%w: %w", ErrInvalidLimits, errors.Join(errs...))
	}
	if cfg.MaxEnvelopes == 0 || cfg.MaxEnvelopes > cfg.Limits.MaxBatchEnvelopes {
		cfg.MaxEnvelopes = cfg.Limits.MaxBatchEnvelopes
	}
	if cfg.MaxBytes == 0 || cfg.MaxBytes > cfg.Limits.MaxFrameBytes {
		cfg.MaxBytes = cfg.Limits.MaxFrameBytes
	}
	if cfg.CompressThreshold == 0 {
		cfg.CompressThreshold = DefaultCompressThreshold
	}
	return &Encoder{cfg: cfg, dict: encDict{ids: make(map[string]uint32)}, next: 1, framed: 1}, nil
}

// Len returns the number of envelopes in the frame being built.
func (e *Encoder) Len() int { return len(e.envs) }

// Size returns the frame being built's encoded size so far, an upper bound
// before compression.
func (e *Encoder) Size() int { return frameOverhead + e.body }

// Full reports whether the frame being built has reached the batching
// policy's MaxEnvelopes or MaxBytes, so that Flush is due.
func (e *Encoder) Full() bool {
	return len(e.envs) >= e.cfg.MaxEnvelopes || frameOverhead+e.body >= e.cfg.MaxBytes
}

// errDictFull is internal: the dictionary cannot take a string without a
// reset, which only a frame's start can carry.
var errDictFull = errors.New("dictionary full")

// Add appends env to the frame being built. It returns ErrFrameFull when env
// does not fit in this frame but will fit in an empty one (Flush, then Add
// again), and ErrEnvelopeTooLarge when env can never be sent under the
// stream's limits. A refused envelope leaves no trace in the frame or the
// dictionary. The frame refers to env, and to what it refers to, until
// Flush returns: env must stay valid and unchanged until then.
func (e *Encoder) Add(env *Envelope) error {
	lim := &e.cfg.Limits
	if len(env.Header) > lim.MaxHeaderEntries {
		return fmt.Errorf("%w: %d header entries, limit %d", ErrEnvelopeTooLarge, len(env.Header), lim.MaxHeaderEntries)
	}
	if len(env.Payload) > lim.MaxFrameBytes {
		return fmt.Errorf("%w: payload of %d bytes, frame limit %d", ErrEnvelopeTooLarge, len(env.Payload), lim.MaxFrameBytes)
	}
	n := len(e.envs)
	if n >= e.cfg.MaxEnvelopes {
		return ErrFrameFull
	}
	if n == 0 && len(e.strs) == 0 && (e.reset || e.cfg.SelfContained) {
		e.resetDictionary()
	}
	err := e.add(env)
	if err == errDictFull {
		if n > 0 || e.resetDict {
			// Only a frame's start can reset the dictionary; if this frame
			// already did, env alone needs more than the limits allow.
			if n > 0 {
				e.reset = true
				return ErrFrameFull
			}
			return fmt.Errorf("%w: its strings exceed the dictionary limits", ErrEnvelopeTooLarge)
		}
		e.resetDictionary()
		err = e.add(env)
		if err == errDictFull {
			return fmt.Errorf("%w: its strings exceed the dictionary limits", ErrEnvelopeTooLarge)
		}
	}
	return err
}

// add interns env's strings and sizes its envelope message, or undoes
// everything it did and reports why not. The usual envelope, without
// header entries and with strings the dictionary has, takes a path that
// needs no undoing.
func (e *Encoder) add(env *Envelope) error {
	if len(env.Header) == 0 {
		d := &e.dict
		t, ok1 := d.lookup(env.Target)
		sa, ok2 := d.lookup(env.SenderAddress)
		si, ok3 := d.lookup(env.SenderID)
		tn, ok4 := d.lookup(env.TypeName)
		if ok1 && ok2 && ok3 && ok4 {
			m := envMeta{target: t, senderAddress: sa, senderID: si, typeName: tn}
			size := m.fieldsSize(env)
			add := bytesField(size)
			if total := frameOverhead + e.body + add; total <= e.cfg.MaxBytes && total <= e.cfg.Limits.MaxFrameBytes {
				e.body += add
				e.envs = append(e.envs, env)
				m.size = uint32(size)
				e.meta = append(e.meta, m)
				return nil
			}
		}
	}
	return e.addInterning(env)
}

// addInterning is add for an envelope with strings to define or header
// entries, or one that may not fit.
func (e *Encoder) addInterning(env *Envelope) error {
	markStrings, markBody, markKeys := len(e.strs), e.body, len(e.hkeys)
	undo := func(err error) error {
		for i := len(e.strs) - 1; i >= markStrings; i-- {
			b := e.strs[i]
			e.dict.remove(unsafe.String(unsafe.SliceData(b), len(b)))
			e.strs[i] = nil
		}
		e.strs = e.strs[:markStrings]
		e.body, e.hkeys = markBody, e.hkeys[:markKeys]
		return err
	}

	var m envMeta
	var err error
	if m.target, err = e.intern(env.Target); err != nil {
		return undo(err)
	}
	if m.senderAddress, err = e.intern(env.SenderAddress); err != nil {
		return undo(err)
	}
	if m.senderID, err = e.intern(env.SenderID); err != nil {
		return undo(err)
	}
	if m.typeName, err = e.intern(env.TypeName); err != nil {
		return undo(err)
	}
	size := m.fieldsSize(env)
	for i := range env.Header {
		key, err := e.intern(env.Header[i].Key)
		if err != nil {
			return undo(err)
		}
		e.hkeys = append(e.hkeys, key)
		size += bytesField(headerSize(key, env.Header[i].Value))
	}
	m.size = uint32(size)

	add := bytesField(size)
	total := frameOverhead + e.body + add
	switch {
	case total > e.cfg.Limits.MaxFrameBytes && len(e.envs) == 0:
		return undo(fmt.Errorf("%w: %d bytes encoded, frame limit %d", ErrEnvelopeTooLarge, total, e.cfg.Limits.MaxFrameBytes))
	case total > e.cfg.Limits.MaxFrameBytes, len(e.envs) > 0 && total > e.cfg.MaxBytes:
		return undo(ErrFrameFull)
	}
	e.body += add
	e.envs = append(e.envs, env)
	e.meta = append(e.meta, m)
	return nil
}

// intern returns the dictionary id of s, defining it in this frame if it is
// new.
func (e *Encoder) intern(s string) (uint32, error) {
	if id, ok := e.dict.lookup(s); ok {
		return id, nil
	}
	lim := &e.cfg.Limits
	if len(s) > lim.MaxStringBytes {
		return 0, fmt.Errorf("%w: string of %d bytes, limit %d", ErrEnvelopeTooLarge, len(s), lim.MaxStringBytes)
	}
	if len(e.dict.ids) >= lim.MaxDictionaryEntries || e.dict.bytes+len(s) > lim.MaxDictionaryBytes {
		return 0, errDictFull
	}
	id, owned := e.dict.add(s)
	e.strs = append(e.strs, unsafe.Slice(unsafe.StringData(owned), len(owned)))
	e.body += bytesField(len(owned))
	return id, nil
}

func (e *Encoder) resetDictionary() {
	e.dict.reset()
	e.resetDict = true
	e.reset = false
}

// Shed frees the room the encoder keeps for a frame's envelopes, for a
// stream gone idle; the next frame allocates it again. It does nothing
// while a frame is being built.
func (e *Encoder) Shed() {
	if len(e.envs) == 0 {
		e.envs, e.meta, e.hkeys = nil, nil, nil
	}
}

// Flush encodes the frame built so far into a pooled Buffer and starts the
// next frame. It returns nil when there is nothing to send: no envelopes,
// and no positions skipped since the last frame. The caller owns the buffer
// and releases it once the frame is written.
func (e *Encoder) Flush() (*Buffer, error) {
	n := len(e.envs)
	if n == 0 && len(e.strs) == 0 && e.next == e.framed {
		return nil, nil
	}
	pos := e.next
	e.next += uint64(n)
	e.framed = e.next

	batchLen := e.body + varintField(pos)
	if e.resetDict {
		batchLen += 2
	}
	if e.ackRequested {
		batchLen += 2
	}
	frameLen := bytesField(batchLen) // courier.v1.Frame{batch: ...}
	buf := GetBuffer(1 + frameLen)
	n = e.encode(buf.B, pos, batchLen)
	e.clearFrame()
	if n != len(buf.B) {
		buf.Release()
		return nil, fmt.Errorf("batch: internal error: encoded %d bytes of %d", n-1, frameLen)
	}
	if e.cfg.Compress && len(buf.B) >= e.cfg.CompressThreshold {
		buf = compress(buf)
	}
	return buf, nil
}

// Field tags of the messages a batch frame is made of (wire type in the
// low three bits: 0 varint, 2 length-delimited).
const (
	tagFrameBatch        = 3<<3 | 2 // courier.v1.Frame.batch
	tagBatchPosition     = 1<<3 | 0
	tagBatchReset        = 2<<3 | 0
	tagBatchNewString    = 3<<3 | 2
	tagBatchEnvelope     = 4<<3 | 2
	tagBatchAckRequested = 5<<3 | 0
	tagEnvTarget         = 1<<3 | 0
	tagEnvRequestID      = 2<<3 | 0
	tagEnvSenderAddress  = 3<<3 | 0
	tagEnvSenderID       = 4<<3 | 0
	tagEnvTypeName       = 5<<3 | 0
	tagEnvSerializerID   = 6<<3 | 0
	tagEnvPayload        = 7<<3 | 2
	tagEnvHeader         = 8<<3 | 2
	tagEnvSystemKind     = 9<<3 | 0
	tagEnvDataPosition   = 10<<3 | 0
	tagHeaderKey         = 1<<3 | 0
	tagHeaderValue       = 2<<3 | 2
)

// encode writes the frame's flags byte and its courier.v1.Frame into b,
// which is exactly as long, in field order and leaving out zero fields, as
// protobuf's marshal does. It returns how many bytes it wrote.
func (e *Encoder) encode(b []byte, pos uint64, batchLen int) int {
	b[0], b[1] = 0, tagFrameBatch
	i := putVarint(b, 2, uint64(batchLen))
	i = putVarintField(b, i, tagBatchPosition, pos)
	if e.resetDict {
		b[i], b[i+1] = tagBatchReset, 1
		i += 2
	}
	for _, s := range e.strs {
		b[i] = tagBatchNewString
		i = putVarint(b, i+1, uint64(len(s)))
		i += copy(b[i:], s)
	}
	keys := e.hkeys
	for k, env := range e.envs {
		m := &e.meta[k]
		b[i] = tagBatchEnvelope
		i = putVarint(b, i+1, uint64(m.size))
		i = putVarintField(b, i, tagEnvTarget, uint64(m.target))
		i = putVarintField(b, i, tagEnvRequestID, env.RequestID)
		i = putVarintField(b, i, tagEnvSenderAddress, uint64(m.senderAddress))
		i = putVarintField(b, i, tagEnvSenderID, uint64(m.senderID))
		i = putVarintField(b, i, tagEnvTypeName, uint64(m.typeName))
		i = putVarintField(b, i, tagEnvSerializerID, uint64(env.SerializerID))
		if len(env.Payload) > 0 {
			b[i] = tagEnvPayload
			i = putVarint(b, i+1, uint64(len(env.Payload)))
			i += copy(b[i:], env.Payload)
		}
		for _, h := range env.Header {
			key := keys[0]
			keys = keys[1:]
			b[i] = tagEnvHeader
			i = putVarint(b, i+1, uint64(headerSize(key, h.Value)))
			i = putVarintField(b, i, tagHeaderKey, uint64(key))
			if len(h.Value) > 0 {
				b[i] = tagHeaderValue
				i = putVarint(b, i+1, uint64(len(h.Value)))
				i += copy(b[i:], h.Value)
			}
		}
		i = putVarintField(b, i, tagEnvSystemKind, uint64(env.Kind))
		i = putVarintField(b, i, tagEnvDataPosition, env.DataPosition)
	}
	if e.ackRequested {
		b[i], b[i+1] = tagBatchAckRequested, 1
		i += 2
	}
	return i
}

// putVarint writes v at b[i:] and returns the index after it.
func putVarint(b []byte, i int, v uint64) int {
	for v >= 0x80 {
		b[i] = byte(v) | 0x80
		v >>= 7
		i++
	}
	b[i] = byte(v)
	return i + 1
}

// putVarintField writes a varint field at b[i:], unless v is zero, and
// returns the index after it.
func putVarintField(b []byte, i int, tag byte, v uint64) int {
	if v == 0 {
		return i
	}
	b[i] = tag
	return putVarint(b, i+1, v)
}

// varintField is the encoded size of a varint field holding v with a
// one-byte tag: nothing when v is zero.
func varintField(v uint64) int {
	switch {
	case v == 0:
		return 0
	case v < 0x80: // the usual dictionary id or small number, on every envelope
		return 2
	}
	return 1 + protowire.SizeVarint(v)
}

// bytesField is the encoded size of a length-delimited field of n bytes
// with a one-byte tag, however short.
func bytesField(n int) int {
	if n < 0x80 {
		return 2 + n
	}
	return 1 + protowire.SizeVarint(uint64(n)) + n
}

// headerSize is the encoded size of a courier.v1.Header message.
func headerSize(key uint32, value string) int {
	n := varintField(uint64(key))
	if len(value) > 0 {
		n += bytesField(len(value))
	}
	return n
}

// clearFrame drops the frame's references to caller memory and starts the
// next frame.
func (e *Encoder) clearFrame() {
	clear(e.envs)
	clear(e.strs)
	e.envs, e.meta, e.hkeys, e.strs = e.envs[:0], e.meta[:0], e.hkeys[:0], e.strs[:0]
	e.resetDict, e.ackRequested = false, false
	e.body = 0
}

// compress returns buf's frame S2-compressed in a new buffer, releasing buf,
// or buf itself when compression does not make it smaller.
func compress(buf *Buffer) *Buffer {
	body := buf.B[1:]
	out := GetBuffer(1 + s2.MaxEncodedLen(len(body)))
	enc := s2.Encode(out.B[1:], body)
	if len(enc) >= len(body) {
		out.Release()
		return buf
	}
	out.B[0] = FlagS2
	out.B = out.B[:1+len(enc)]
	buf.Release()
	return out
}

// RequestAck asks the receiver to acknowledge the frame being built once it
// has delivered it (courier.v1.Batch.ack_requested).
func (e *Encoder) RequestAck() { e.ackRequested = true }

// SetNextPosition sets the position of the next envelope to be flushed (see
// courier.v1.Batch.position): a lane continues its numbering on a new
// stream, or skips the position of an envelope it could not send. Call it
// between frames. If no envelope follows, the next Flush sends an empty
// batch at p, so the receiver knows the skipped positions will not come.
func (e *Encoder) SetNextPosition(p uint64) { e.next = p }

// NextPosition returns the position the next envelope added will have.
func (e *Encoder) NextPosition() uint64 { return e.next + uint64(len(e.envs)) }
