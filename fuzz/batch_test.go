package fuzz

import (
	"encoding/binary"
	"errors"
	"fmt"
	"testing"

	"github.com/courier-go/courier/batch"
	courierv1 "github.com/courier-go/courier/proto/courier/v1"
	"google.golang.org/protobuf/proto"
)

// fuzzLimits are small, so that fuzzing reaches every limit quickly.
func fuzzLimits() batch.Limits {
	return batch.Limits{
		MaxFrameBytes:        64 << 10,
		MaxBatchEnvelopes:    64,
		MaxDictionaryEntries: 32,
		MaxDictionaryBytes:   1024,
		MaxStringBytes:       64,
		MaxHeaderEntries:     4,
	}
}

var batchSentinels = []error{
	batch.ErrCorruptFrame, batch.ErrFrameTooLarge, batch.ErrTooManyEnvelopes, batch.ErrTooManyHeaders,
	batch.ErrDictionaryOverflow, batch.ErrUnknownString,
}

// checkDecode decodes one frame and checks the decoder's contract: a typed
// error or envelopes within the limits, and memory within MaxFootprint.
func checkDecode(t *testing.T, dec *batch.Decoder, frame []byte) (batch.Decoded, error) {
	t.Helper()
	lim := dec.Limits()
	d, err := dec.Decode(frame)
	if fp, bound := dec.Footprint(), batch.MaxFootprint(lim); fp > bound {
		t.Fatalf("decoder holds %d bytes, bound %d", fp, bound)
	}
	if err != nil {
		for _, s := range batchSentinels {
			if errors.Is(err, s) {
				return d, err
			}
		}
		t.Fatalf("error %v wraps none of the package's sentinels", err)
	}
	if len(d.Envelopes) > lim.MaxBatchEnvelopes {
		t.Fatalf("%d envelopes, limit %d", len(d.Envelopes), lim.MaxBatchEnvelopes)
	}
	for i, e := range d.Envelopes {
		if len(e.Header) > lim.MaxHeaderEntries {
			t.Fatalf("envelope %d has %d headers, limit %d", i, len(e.Header), lim.MaxHeaderEntries)
		}
		for _, s := range []string{e.Target, e.SenderAddress, e.SenderID, e.TypeName} {
			if len(s) > lim.MaxStringBytes {
				t.Fatalf("envelope %d has a string of %d bytes, limit %d", i, len(s), lim.MaxStringBytes)
			}
		}
	}
	return d, nil
}

// reencode sends decoded envelopes through a fresh encoder and decoder and
// requires them back unchanged.
func reencode(t *testing.T, envs []batch.Envelope, lane batch.Lane) {
	t.Helper()
	frames, err := encode(envs, batch.EncoderConfig{Limits: fuzzLimits()})
	if err != nil {
		t.Fatalf("re-encoding decoded envelopes: %v", err)
	}
	dec, _ := batch.NewDecoder(batch.DecoderConfig{Limits: fuzzLimits(), Lane: lane})
	var got []batch.Envelope
	for _, f := range frames {
		d, err := dec.Decode(f.B)
		if err != nil {
			t.Fatalf("decoding re-encoded frame: %v", err)
		}
		for i := range d.Envelopes {
			got = append(got, d.Envelopes[i].Clone())
		}
		f.Release()
	}
	if len(got) != len(envs) {
		t.Fatalf("round trip gave %d envelopes, want %d", len(got), len(envs))
	}
	for i := range envs {
		if !got[i].Equal(&envs[i]) {
			t.Fatalf("envelope %d changed in a round trip:\n got %+v\nwant %+v", i, got[i], envs[i])
		}
	}
}

// encode adds envs to an encoder, flushing when asked, and returns the
// frames.
func encode(envs []batch.Envelope, cfg batch.EncoderConfig) ([]*batch.Buffer, error) {
	enc, err := batch.NewEncoder(cfg)
	if err != nil {
		return nil, err
	}
	var frames []*batch.Buffer
	flush := func() error {
		buf, err := enc.Flush()
		if buf != nil {
			frames = append(frames, buf)
		}
		return err
	}
	for i := range envs {
		err := enc.Add(&envs[i])
		if errors.Is(err, batch.ErrFrameFull) {
			if err = flush(); err == nil {
				err = enc.Add(&envs[i])
			}
		}
		if err != nil {
			return frames, fmt.Errorf("envelope %d: %w", i, err)
		}
	}
	return frames, flush()
}

// envelopesFrom turns fuzz input into envelopes: each envelope takes a
// control byte saying which fields are present, then the fields' lengths and
// bytes from what follows. Strings come from a small pool, so that the
// dictionary sees repeats.
func envelopesFrom(data []byte) []batch.Envelope {
	var envs []batch.Envelope
	next := func(n int) []byte {
		n = min(n, len(data))
		b := data[:n]
		data = data[n:]
		return b
	}
	str := func() string {
		l := next(1)
		if len(l) == 0 {
			return ""
		}
		return string(next(int(l[0] % 24)))
	}
	for len(data) > 0 && len(envs) < 200 {
		c := next(1)[0]
		e := batch.Envelope{Target: str()}
		if c&1 != 0 {
			e.TypeName = str()
		}
		if c&2 != 0 {
			e.SenderAddress, e.SenderID = str(), str()
		}
		if c&4 != 0 {
			if b := next(8); len(b) == 8 {
				e.RequestID = binary.LittleEndian.Uint64(b)
			}
		}
		if c&8 != 0 {
			l := next(2)
			if len(l) == 2 {
				e.Payload = append([]byte{}, next(int(binary.LittleEndian.Uint16(l)%2048))...)
			}
		}
		if c&16 != 0 {
			for range int(c>>5) % 4 {
				e.Header = append(e.Header, batch.Header{Key: str(), Value: str()})
			}
		}
		e.Kind = batch.SystemKind(c >> 6)
		if e.Kind == batch.KindTerminated {
			e.DataPosition = uint64(c)
		}
		envs = append(envs, e)
	}
	return envs
}

// FuzzDecodeFrame feeds arbitrary bytes to a Decoder as one frame.
func FuzzDecodeFrame(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		dec, err := batch.NewDecoder(batch.DecoderConfig{Limits: fuzzLimits(), Lane: batch.LaneUser})
		if err != nil {
			t.Fatal(err)
		}
		d, err := checkDecode(t, dec, data)
		if err != nil || d.Kind != batch.FrameBatch {
			return
		}
		envs := make([]batch.Envelope, len(d.Envelopes))
		for i := range d.Envelopes {
			envs[i] = d.Envelopes[i].Clone()
		}
		reencode(t, envs, batch.LaneUser)
	})
}

// FuzzRoundTrip builds envelopes from the input, encodes them with a
// configuration also taken from the input, decodes them, and requires them
// back unchanged or refused at Add with a typed error.
func FuzzRoundTrip(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) == 0 {
			return
		}
		cfgByte := data[0]
		envs := envelopesFrom(data[1:])
		cfg := batch.EncoderConfig{
			Limits:            fuzzLimits(),
			MaxEnvelopes:      int(cfgByte%8) + 1,
			Compress:          cfgByte&8 != 0,
			CompressThreshold: 64,
			SelfContained:     cfgByte&16 != 0,
		}
		var sent []batch.Envelope
		enc, err := batch.NewEncoder(cfg)
		if err != nil {
			t.Fatal(err)
		}
		dec, _ := batch.NewDecoder(batch.DecoderConfig{Limits: fuzzLimits(), Lane: batch.LaneSystem})
		var got []batch.Envelope
		flush := func() {
			buf, err := enc.Flush()
			if err != nil {
				t.Fatalf("Flush: %v", err)
			}
			if buf == nil {
				return
			}
			if buf.B[0]&batch.FlagS2 == 0 {
				// The encoder writes protobuf's own bytes for the frame,
				// without building the message: they must read back and
				// marshal to the same bytes.
				var fr courierv1.Frame
				if err := proto.Unmarshal(buf.B[1:], &fr); err != nil {
					t.Fatalf("an encoded frame is not a courier.v1.Frame: %v", err)
				}
				again, err := proto.MarshalOptions{Deterministic: true}.Marshal(&fr)
				if err != nil || string(again) != string(buf.B[1:]) {
					t.Fatalf("an encoded frame is not protobuf's encoding of itself (%v):\n got % x\nwant % x", err, buf.B[1:], again)
				}
			}
			d, err := checkDecode(t, dec, buf.B)
			if err != nil {
				t.Fatalf("decoding an encoded frame: %v", err)
			}
			for i := range d.Envelopes {
				got = append(got, d.Envelopes[i].Clone())
			}
			buf.Release()
		}
		for i := range envs {
			err := enc.Add(&envs[i])
			if errors.Is(err, batch.ErrFrameFull) {
				flush()
				err = enc.Add(&envs[i])
			}
			switch {
			case err == nil:
				envs[i].Lane = batch.LaneSystem
				sent = append(sent, envs[i])
			case errors.Is(err, batch.ErrEnvelopeTooLarge):
			default:
				t.Fatalf("Add: %v", err)
			}
		}
		flush()
		if len(got) != len(sent) {
			t.Fatalf("decoded %d envelopes, sent %d", len(got), len(sent))
		}
		for i := range sent {
			if !got[i].Equal(&sent[i]) {
				t.Fatalf("envelope %d:\n got %+v\nwant %+v", i, got[i], sent[i])
			}
		}
	})
}

// nextFrame cuts the next frame of a frame stream off data, which holds at
// least its 2-byte length prefix, and returns it and what follows. A length
// beyond the end of data takes what there is.
func nextFrame(data []byte) (frame, rest []byte) {
	n := min(int(binary.LittleEndian.Uint16(data)), len(data)-2)
	return data[2 : 2+n], data[2+n:]
}

// FuzzFrameStream feeds a sequence of frames, cut from the input by 2-byte
// length prefixes, to one Decoder, so that dictionary state carries from
// frame to frame. Decoding stops at the first error, as a stream would
// close.
func FuzzFrameStream(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		dec, _ := batch.NewDecoder(batch.DecoderConfig{Limits: fuzzLimits(), Lane: batch.LaneUser})
		for len(data) >= 2 {
			var frame []byte
			frame, data = nextFrame(data)
			d, err := checkDecode(t, dec, frame)
			if err != nil {
				return
			}
			if d.Kind == batch.FrameBatch {
				envs := make([]batch.Envelope, len(d.Envelopes))
				for i := range d.Envelopes {
					envs[i] = d.Envelopes[i].Clone()
				}
				reencode(t, envs, batch.LaneUser)
			}
		}
	})
}

// FuzzDecodeSegments decodes a frame stream, cut as FuzzFrameStream cuts it,
// with two Decoders: one gets each frame whole, the other gets it in
// segments, as gRPC hands over a message that arrived in several HTTP/2 DATA
// frames. The input's first byte chooses the segment sizes, empty segments
// included. The two must agree on every frame: the same error, or the same
// envelopes and control message.
func FuzzDecodeSegments(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) == 0 {
			return
		}
		cut := newCutter(data[0])
		data = data[1:]
		whole, _ := batch.NewDecoder(batch.DecoderConfig{Limits: fuzzLimits(), Lane: batch.LaneUser})
		split, _ := batch.NewDecoder(batch.DecoderConfig{Limits: fuzzLimits(), Lane: batch.LaneUser})
		for len(data) >= 2 {
			var frame []byte
			frame, data = nextFrame(data)
			want, werr := whole.Decode(frame)
			segs := cut.split(frame)
			got, gerr := split.DecodeSegments(segs)
			if fp, bound := split.Footprint(), batch.MaxFootprint(fuzzLimits()); fp > bound {
				t.Fatalf("decoder holds %d bytes, bound %d", fp, bound)
			}
			if werr != nil || gerr != nil {
				if werr == nil || gerr == nil || werr.Error() != gerr.Error() {
					t.Fatalf("whole: %v\nin %d segments: %v", werr, len(segs), gerr)
				}
				return
			}
			sameDecoded(t, want, got)
		}
	})
}

// sameDecoded fails t unless two decoded frames carry the same.
func sameDecoded(t *testing.T, want, got batch.Decoded) {
	t.Helper()
	if want.Kind != got.Kind || want.Position != got.Position || want.AckRequested != got.AckRequested {
		t.Fatalf("got %v at %d (ack %v), want %v at %d (ack %v)",
			got.Kind, got.Position, got.AckRequested, want.Kind, want.Position, want.AckRequested)
	}
	if !proto.Equal(want.Control, got.Control) {
		t.Fatalf("control message %v, want %v", got.Control, want.Control)
	}
	if len(want.Envelopes) != len(got.Envelopes) {
		t.Fatalf("%d envelopes, want %d", len(got.Envelopes), len(want.Envelopes))
	}
	for i := range want.Envelopes {
		if !got.Envelopes[i].Equal(&want.Envelopes[i]) {
			t.Fatalf("envelope %d:\n got %+v\nwant %+v", i, got.Envelopes[i], want.Envelopes[i])
		}
	}
}

// cutter splits frames into segments whose sizes follow a pseudo-random
// sequence, from 0 up to 1<<(seed&7) bytes.
type cutter struct {
	state uint32
	max   uint32
}

func newCutter(seed byte) *cutter {
	return &cutter{state: uint32(seed)*2654435761 | 1, max: 1 << (seed & 7)}
}

// split cuts frame into segments whose capacity ends where they do, so that
// reading past a segment's end cannot go unnoticed.
func (c *cutter) split(frame []byte) [][]byte {
	var segs [][]byte
	for len(frame) > 0 {
		c.state ^= c.state << 13
		c.state ^= c.state >> 17
		c.state ^= c.state << 5
		n := min(int(c.state%(c.max+1)), len(frame))
		segs = append(segs, frame[:n:n])
		frame = frame[n:]
	}
	return segs
}
