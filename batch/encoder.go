package batch

import (
	"errors"
	"fmt"
	"unsafe"

	courierv1 "github.com/courier-go/courier/proto/courier/v1"
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
type Encoder struct {
	cfg  EncoderConfig
	dict encDict

	// frame → wrap → msg is the message being built; they point at each
	// other once, in NewEncoder, so that building a frame allocates nothing.
	frame courierv1.Frame
	wrap  courierv1.Frame_Batch
	msg   courierv1.Batch
	// envs holds reusable envelope messages; msg.Envelopes is envs[:n].
	envs []*courierv1.Envelope
	hdrs []*courierv1.Header // reusable header entries, handed out in order
	nhdr int                 // headers used by the frame being built
	n    int                 // envelopes in the frame being built
	// body is the encoded size of msg's new_strings and envelopes fields.
	body int
	next uint64 // position of the next envelope flushed
	// framed is the position after the last frame flushed. When next moves
	// past it with no envelope to carry the news, Flush sends an empty
	// batch at next, so the receiver learns that the positions between
	// will never come.
	framed uint64
	reset  bool // the next frame must start with a dictionary reset
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
	e := &Encoder{cfg: cfg, dict: encDict{ids: make(map[string]uint32)}, next: 1, framed: 1}
	e.wrap.Batch = &e.msg
	e.frame.Kind = &e.wrap
	return e, nil
}

// Len returns the number of envelopes in the frame being built.
func (e *Encoder) Len() int { return e.n }

// Size returns the frame being built's encoded size so far, an upper bound
// before compression.
func (e *Encoder) Size() int { return frameOverhead + e.body }

// Full reports whether the frame being built has reached the batching
// policy's MaxEnvelopes or MaxBytes, so that Flush is due.
func (e *Encoder) Full() bool {
	return e.n >= e.cfg.MaxEnvelopes || frameOverhead+e.body >= e.cfg.MaxBytes
}

// errDictFull is internal: the dictionary cannot take a string without a
// reset, which only a frame's start can carry.
var errDictFull = errors.New("dictionary full")

// Add appends env to the frame being built. It returns ErrFrameFull when env
// does not fit in this frame but will fit in an empty one (Flush, then Add
// again), and ErrEnvelopeTooLarge when env can never be sent under the
// stream's limits. A refused envelope leaves no trace in the frame or the
// dictionary. The frame refers to env's Payload and header values until
// Flush returns: they must stay valid and unchanged until then.
func (e *Encoder) Add(env *Envelope) error {
	lim := &e.cfg.Limits
	if len(env.Header) > lim.MaxHeaderEntries {
		return fmt.Errorf("%w: %d header entries, limit %d", ErrEnvelopeTooLarge, len(env.Header), lim.MaxHeaderEntries)
	}
	if len(env.Payload) > lim.MaxFrameBytes {
		return fmt.Errorf("%w: payload of %d bytes, frame limit %d", ErrEnvelopeTooLarge, len(env.Payload), lim.MaxFrameBytes)
	}
	if e.n >= e.cfg.MaxEnvelopes {
		return ErrFrameFull
	}
	if e.n == 0 && len(e.msg.NewStrings) == 0 && (e.reset || e.cfg.SelfContained) {
		e.resetDict()
	}
	err := e.add(env)
	if err == errDictFull {
		if e.n > 0 || e.msg.ResetDictionary {
			// Only a frame's start can reset the dictionary; if this frame
			// already did, env alone needs more than the limits allow.
			if e.n > 0 {
				e.reset = true
				return ErrFrameFull
			}
			return fmt.Errorf("%w: its strings exceed the dictionary limits", ErrEnvelopeTooLarge)
		}
		e.resetDict()
		err = e.add(env)
		if err == errDictFull {
			return fmt.Errorf("%w: its strings exceed the dictionary limits", ErrEnvelopeTooLarge)
		}
	}
	return err
}

// add encodes env into the next envelope message, or undoes everything it
// did and reports why not.
func (e *Encoder) add(env *Envelope) error {
	markStrings, markBody, markHdr := len(e.msg.NewStrings), e.body, e.nhdr
	undo := func(err error) error {
		for i := len(e.msg.NewStrings) - 1; i >= markStrings; i-- {
			b := e.msg.NewStrings[i]
			e.dict.remove(unsafe.String(unsafe.SliceData(b), len(b)))
			e.msg.NewStrings[i] = nil
		}
		e.msg.NewStrings = e.msg.NewStrings[:markStrings]
		e.body, e.nhdr = markBody, markHdr
		return err
	}

	if e.n == len(e.envs) {
		e.envs = append(e.envs, new(courierv1.Envelope))
	}
	m := e.envs[e.n]
	var err error
	if m.Target, err = e.intern(env.Target); err != nil {
		return undo(err)
	}
	if m.SenderAddress, err = e.intern(env.SenderAddress); err != nil {
		return undo(err)
	}
	if m.SenderId, err = e.intern(env.SenderID); err != nil {
		return undo(err)
	}
	if m.TypeName, err = e.intern(env.TypeName); err != nil {
		return undo(err)
	}
	m.RequestId = env.RequestID
	m.SerializerId = env.SerializerID
	m.Payload = env.Payload
	m.SystemKind = courierv1.SystemKind(env.Kind)
	m.DataPosition = env.DataPosition
	m.Header = m.Header[:0]
	for i := range env.Header {
		if e.nhdr == len(e.hdrs) {
			e.hdrs = append(e.hdrs, new(courierv1.Header))
		}
		h := e.hdrs[e.nhdr]
		e.nhdr++
		if h.Key, err = e.intern(env.Header[i].Key); err != nil {
			return undo(err)
		}
		v := env.Header[i].Value
		h.Value = unsafe.Slice(unsafe.StringData(v), len(v)) // read only, until Flush
		m.Header = append(m.Header, h)
	}

	size := m.SizeVT()
	add := 1 + protowire.SizeVarint(uint64(size)) + size
	total := frameOverhead + e.body + add
	switch {
	case total > e.cfg.Limits.MaxFrameBytes && e.n == 0:
		return undo(fmt.Errorf("%w: %d bytes encoded, frame limit %d", ErrEnvelopeTooLarge, total, e.cfg.Limits.MaxFrameBytes))
	case total > e.cfg.Limits.MaxFrameBytes, e.n > 0 && total > e.cfg.MaxBytes:
		return undo(ErrFrameFull)
	}
	e.body += add
	e.n++
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
	e.msg.NewStrings = append(e.msg.NewStrings, unsafe.Slice(unsafe.StringData(owned), len(owned)))
	e.body += 1 + protowire.SizeVarint(uint64(len(owned))) + len(owned)
	return id, nil
}

func (e *Encoder) resetDict() {
	e.dict.reset()
	e.msg.ResetDictionary = true
	e.reset = false
}

// Shed frees the envelope and header messages the encoder keeps for reuse,
// for a stream gone idle; the next frame allocates them again. It does
// nothing while a frame is being built.
func (e *Encoder) Shed() {
	if e.n == 0 && e.nhdr == 0 {
		e.envs, e.hdrs = nil, nil
	}
}

// Flush encodes the frame built so far into a pooled Buffer and starts the
// next frame. It returns nil when there is nothing to send: no envelopes,
// and no positions skipped since the last frame. The caller owns the buffer
// and releases it once the frame is written.
func (e *Encoder) Flush() (*Buffer, error) {
	if e.n == 0 && len(e.msg.NewStrings) == 0 && e.next == e.framed {
		return nil, nil
	}
	e.msg.Position = e.next
	e.next += uint64(e.n)
	e.framed = e.next
	e.msg.Envelopes = e.envs[:e.n]

	batchLen := e.body + 1 + protowire.SizeVarint(e.msg.Position)
	if e.msg.ResetDictionary {
		batchLen += 2
	}
	if e.msg.AckRequested {
		batchLen += 2
	}
	frameLen := 1 + protowire.SizeVarint(uint64(batchLen)) + batchLen
	buf := GetBuffer(1 + frameLen)
	n, err := e.frame.MarshalToSizedBufferVT(buf.B[1:])
	e.clearFrame()
	if err != nil || n != frameLen {
		buf.Release()
		return nil, fmt.Errorf("batch: internal error: encoded %d bytes of %d: %v", n, frameLen, err)
	}
	buf.B[0] = 0
	if e.cfg.Compress && len(buf.B) >= e.cfg.CompressThreshold {
		buf = compress(buf)
	}
	return buf, nil
}

// clearFrame drops the frame's references to caller memory and resets it.
func (e *Encoder) clearFrame() {
	for _, m := range e.envs[:e.n] {
		m.Payload = nil
	}
	for _, h := range e.hdrs[:e.nhdr] {
		h.Value = nil
	}
	clear(e.msg.NewStrings)
	e.msg.NewStrings = e.msg.NewStrings[:0]
	e.msg.Envelopes = nil
	e.msg.ResetDictionary = false
	e.msg.AckRequested = false
	e.n, e.nhdr, e.body = 0, 0, 0
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
func (e *Encoder) RequestAck() { e.msg.AckRequested = true }

// SetNextPosition sets the position of the next envelope to be flushed (see
// courier.v1.Batch.position): a lane continues its numbering on a new
// stream, or skips the position of an envelope it could not send. Call it
// between frames. If no envelope follows, the next Flush sends an empty
// batch at p, so the receiver knows the skipped positions will not come.
func (e *Encoder) SetNextPosition(p uint64) { e.next = p }

// NextPosition returns the position the next envelope added will have.
func (e *Encoder) NextPosition() uint64 { return e.next + uint64(e.n) }
