package batch

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"reflect"
	"strconv"
	"strings"
	"testing"

	courierv1 "github.com/courier-go/courier/proto/courier/v1"
	"go.uber.org/goleak"
	"google.golang.org/protobuf/encoding/protowire"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func newPair(t testing.TB, ecfg EncoderConfig, dcfg DecoderConfig) (*Encoder, *Decoder) {
	t.Helper()
	enc, err := NewEncoder(ecfg)
	if err != nil {
		t.Fatal(err)
	}
	dec, err := NewDecoder(dcfg)
	if err != nil {
		t.Fatal(err)
	}
	return enc, dec
}

// encodeAll adds envs, flushing whenever the encoder asks for it, and returns
// the frames.
func encodeAll(t testing.TB, enc *Encoder, envs []Envelope) []*Buffer {
	t.Helper()
	var frames []*Buffer
	flush := func() {
		buf, err := enc.Flush()
		if err != nil {
			t.Fatalf("Flush: %v", err)
		}
		if buf != nil {
			frames = append(frames, buf)
		}
	}
	for i := range envs {
		err := enc.Add(&envs[i])
		if errors.Is(err, ErrFrameFull) {
			flush()
			err = enc.Add(&envs[i])
		}
		if err != nil {
			t.Fatalf("Add(envelope %d): %v", i, err)
		}
	}
	flush()
	return frames
}

// decodeAll decodes frames and returns owned copies of their envelopes.
func decodeAll(t testing.TB, dec *Decoder, frames []*Buffer) []Envelope {
	t.Helper()
	var out []Envelope
	for i, f := range frames {
		d, err := dec.Decode(f.B)
		if err != nil {
			t.Fatalf("Decode(frame %d): %v", i, err)
		}
		if d.Kind != FrameBatch {
			t.Fatalf("frame %d decoded as %v", i, d.Kind)
		}
		for j := range d.Envelopes {
			out = append(out, d.Envelopes[j].Clone())
		}
	}
	return out
}

func checkSame(t testing.TB, got, want []Envelope, lane Lane) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("decoded %d envelopes, sent %d", len(got), len(want))
	}
	for i := range want {
		w := want[i]
		w.Lane = lane
		if !got[i].Equal(&w) {
			t.Fatalf("envelope %d:\n got %+v\nwant %+v", i, got[i], w)
		}
	}
}

func sampleEnvelopes() []Envelope {
	return []Envelope{
		{},
		{Target: "t"},
		{Target: "actor/1", TypeName: "pkg.Msg", Payload: []byte("hello")},
		{
			Target: "actor/2", RequestID: math.MaxUint64, SenderAddress: "10.0.0.1:4000", SenderID: "sender/9",
			TypeName: "pkg.Other", SerializerID: math.MaxUint32, Payload: []byte{0, 1, 0xff},
			Header: []Header{{Key: "trace", Value: "abc"}, {Key: "empty"}, {Key: "bin", Value: "\x00\xff\xfe"}},
			Kind:   KindTerminated, DataPosition: math.MaxUint64,
		},
		{Target: "日本/プロセス", TypeName: "ünïcödé.Typ€", Payload: []byte("ok"), Kind: KindWatch},
		{Target: "\x00\xff binary \x80", SenderID: "\xc3\x28", Payload: bytes.Repeat([]byte{7}, 1000), Kind: KindStop},
		{Target: "actor/1", TypeName: "pkg.Msg", Payload: []byte{}, Kind: KindUnwatch},
		{Target: "actor/1", Kind: SystemKind(200)},
	}
}

func TestRoundTripFieldCombinations(t *testing.T) {
	base := sampleEnvelopes()
	// Every subset of the optional fields of the fullest sample.
	full := base[3]
	for mask := 0; mask < 1<<9; mask++ {
		e := Envelope{}
		set := func(bit int, f func()) {
			if mask&(1<<bit) != 0 {
				f()
			}
		}
		set(0, func() { e.Target = full.Target })
		set(1, func() { e.RequestID = full.RequestID })
		set(2, func() { e.SenderAddress = full.SenderAddress })
		set(3, func() { e.SenderID = full.SenderID })
		set(4, func() { e.TypeName = full.TypeName })
		set(5, func() { e.SerializerID = full.SerializerID })
		set(6, func() { e.Payload = full.Payload })
		set(7, func() { e.Header = full.Header })
		set(8, func() { e.Kind, e.DataPosition = full.Kind, full.DataPosition })
		base = append(base, e)
	}
	for _, lane := range []Lane{LaneUser, LaneSystem} {
		for _, batchSize := range []int{1, 3, 64, 8192} {
			t.Run(fmt.Sprintf("lane=%v/batch=%d", lane, batchSize), func(t *testing.T) {
				enc, dec := newPair(t, EncoderConfig{MaxEnvelopes: batchSize}, DecoderConfig{Lane: lane})
				frames := encodeAll(t, enc, base)
				if want := (len(base) + batchSize - 1) / batchSize; len(frames) != want {
					t.Fatalf("%d frames, want %d", len(frames), want)
				}
				checkSame(t, decodeAll(t, dec, frames), base, lane)
			})
		}
	}
}

func TestRoundTripCompression(t *testing.T) {
	compressible := bytes.Repeat([]byte("courier "), 2048)
	random := make([]byte, 2*8192) // two different halves: nothing repeats
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range random {
		random[i] = byte(rng.Uint32())
	}
	cases := []struct {
		name      string
		compress  bool
		payload   []byte
		wantFlags byte
	}{
		{"off/compressible", false, compressible, 0},
		{"on/compressible", true, compressible, FlagS2},
		{"on/random", true, random, 0}, // does not shrink: sent as is
		{"on/small", true, []byte("tiny"), 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			enc, dec := newPair(t, EncoderConfig{Compress: c.compress}, DecoderConfig{})
			half := len(c.payload) / 2
			envs := []Envelope{
				{Target: "a", Payload: c.payload[:half]},
				{Target: "a", Payload: c.payload[half:], Header: []Header{{Key: "k", Value: "v"}}},
			}
			frames := encodeAll(t, enc, envs)
			if len(frames) != 1 {
				t.Fatalf("%d frames", len(frames))
			}
			if got := frames[0].B[0]; got != c.wantFlags {
				t.Fatalf("flags %#x, want %#x", got, c.wantFlags)
			}
			if c.wantFlags == FlagS2 && len(frames[0].B) > len(c.payload)/2 {
				t.Fatalf("compressed frame of %d bytes for %d payload bytes", len(frames[0].B), len(c.payload))
			}
			checkSame(t, decodeAll(t, dec, frames), envs, LaneUser)
		})
	}
}

func TestDictionarySendsStringsOnce(t *testing.T) {
	enc, dec := newPair(t, EncoderConfig{}, DecoderConfig{})
	env := Envelope{Target: strings.Repeat("t", 100), TypeName: strings.Repeat("y", 100), Payload: []byte("p")}
	first := encodeAll(t, enc, []Envelope{env})
	second := encodeAll(t, enc, []Envelope{env})
	if len(first[0].B)-len(second[0].B) < 200 {
		t.Fatalf("first frame %d bytes, second %d: strings were sent again", len(first[0].B), len(second[0].B))
	}
	checkSame(t, decodeAll(t, dec, append(first, second...)), []Envelope{env, env}, LaneUser)
	if len(dec.dict.strs) != 2 {
		t.Fatalf("decoder dictionary holds %d strings, want 2", len(dec.dict.strs))
	}
}

// TestDictionaryGrowthToLimitAndPast fills the dictionary to its limits and
// past them: the encoder resets it at a frame boundary, the decoder follows,
// and neither side ever holds more than the limits allow.
func TestDictionaryGrowthToLimitAndPast(t *testing.T) {
	for _, c := range []struct {
		name   string
		limits func(*Limits)
	}{
		{"entries", func(l *Limits) { l.MaxDictionaryEntries = 16 }},
		{"bytes", func(l *Limits) { l.MaxDictionaryBytes = 200; l.MaxStringBytes = 64 }},
	} {
		t.Run(c.name, func(t *testing.T) {
			lim := DefaultLimits()
			c.limits(&lim)
			enc, dec := newPair(t, EncoderConfig{Limits: lim, MaxEnvelopes: 5}, DecoderConfig{Limits: lim})
			var envs []Envelope
			for i := range 200 {
				envs = append(envs, Envelope{Target: fmt.Sprintf("target-%03d", i%37), TypeName: fmt.Sprintf("type-%d", i%5)})
			}
			var resets int
			for i := range envs {
				frames := encodeAll(t, enc, envs[i:i+1])
				for _, f := range frames {
					var fr courierv1.Frame
					if err := fr.UnmarshalVT(f.B[1:]); err != nil {
						t.Fatal(err)
					}
					if fr.GetBatch().GetResetDictionary() {
						resets++
					}
				}
				checkSame(t, decodeAll(t, dec, frames), envs[i:i+1], LaneUser)
				if len(enc.dict.ids) > lim.MaxDictionaryEntries || enc.dict.bytes > lim.MaxDictionaryBytes {
					t.Fatalf("encoder dictionary %d entries / %d bytes over limits", len(enc.dict.ids), enc.dict.bytes)
				}
				if len(dec.dict.strs) > lim.MaxDictionaryEntries || dec.dict.bytes > lim.MaxDictionaryBytes {
					t.Fatalf("decoder dictionary %d entries / %d bytes over limits", len(dec.dict.strs), dec.dict.bytes)
				}
				if len(enc.dict.ids) != len(dec.dict.strs) {
					t.Fatalf("encoder knows %d strings, decoder %d", len(enc.dict.ids), len(dec.dict.strs))
				}
			}
			if resets == 0 {
				t.Fatal("the dictionary never reset")
			}
		})
	}
}

func TestDecoderEnforcesItsLimits(t *testing.T) {
	big := DefaultLimits()
	cases := []struct {
		name     string
		limits   func(*Limits)
		envs     []Envelope
		compress bool
		want     error
	}{
		{"dictionary entries", func(l *Limits) { l.MaxDictionaryEntries = 16 },
			manyTargets(17), false, ErrDictionaryOverflow},
		{"dictionary bytes", func(l *Limits) { l.MaxDictionaryBytes = 100; l.MaxStringBytes = 64 },
			[]Envelope{{Target: strings.Repeat("a", 60)}, {Target: strings.Repeat("b", 60)}}, false, ErrDictionaryOverflow},
		{"string length", func(l *Limits) { l.MaxStringBytes = 64 },
			[]Envelope{{Target: strings.Repeat("a", 65)}}, false, ErrDictionaryOverflow},
		{"envelopes", func(l *Limits) { l.MaxBatchEnvelopes = 2 },
			manyTargets(3), false, ErrTooManyEnvelopes},
		{"headers", func(l *Limits) { l.MaxHeaderEntries = 1 },
			[]Envelope{{Target: "a", Header: []Header{{Key: "a"}, {Key: "b"}}}}, false, ErrTooManyHeaders},
		{"frame size", func(l *Limits) { l.MaxFrameBytes = 4096 },
			[]Envelope{{Target: "a", Payload: make([]byte, 5000)}}, false, ErrFrameTooLarge},
		{"decompressed size", func(l *Limits) { l.MaxFrameBytes = 8192 },
			[]Envelope{{Target: "a", Payload: make([]byte, 100000)}}, true, ErrFrameTooLarge},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			small := DefaultLimits()
			c.limits(&small)
			enc, dec := newPair(t, EncoderConfig{Limits: big, Compress: c.compress}, DecoderConfig{Limits: small})
			frames := encodeAll(t, enc, c.envs)
			var err error
			for _, f := range frames {
				if _, err = dec.Decode(f.B); err != nil {
					break
				}
			}
			if !errors.Is(err, c.want) {
				t.Fatalf("Decode error %v, want %v", err, c.want)
			}
		})
	}
}

func manyTargets(n int) []Envelope {
	envs := make([]Envelope, n)
	for i := range envs {
		envs[i].Target = fmt.Sprintf("target-%d", i)
	}
	return envs
}

// TestDecoderRefusesMalformedFrames feeds hand-made bad frames.
func TestDecoderRefusesMalformedFrames(t *testing.T) {
	batchFrame := func(b *courierv1.Batch) []byte {
		body, err := (&courierv1.Frame{Kind: &courierv1.Frame_Batch{Batch: b}}).MarshalVT()
		if err != nil {
			t.Fatal(err)
		}
		return append([]byte{0}, body...)
	}
	cases := []struct {
		name  string
		frame []byte
		want  error
	}{
		{"empty", nil, ErrCorruptFrame},
		{"reserved flag", []byte{0x80}, ErrCorruptFrame},
		{"no kind", []byte{0}, ErrCorruptFrame},
		{"truncated", batchFrame(&courierv1.Batch{Position: 1, NewStrings: [][]byte{[]byte("abc")}})[:6], ErrCorruptFrame},
		{"unknown target id", batchFrame(&courierv1.Batch{Envelopes: []*courierv1.Envelope{{Target: 1}}}), ErrUnknownString},
		{"unknown header key", batchFrame(&courierv1.Batch{NewStrings: [][]byte{[]byte("t")},
			Envelopes: []*courierv1.Envelope{{Target: 1, Header: []*courierv1.Header{{Key: 5}}}}}), ErrUnknownString},
		{"two kinds", append(batchFrame(&courierv1.Batch{}), 0x22, 0), ErrCorruptFrame},
		{"field out of order", []byte{0, 0x1a, 4, 0x22, 0, 0x08, 1}, ErrCorruptFrame},
		{"reset after strings", []byte{0, 0x1a, 5, 0x1a, 1, 'a', 0x10, 1}, ErrCorruptFrame},
		{"envelope field of wrong type", []byte{0, 0x1a, 4, 0x22, 2, 0x3a | 0, 1}, ErrCorruptFrame},
		{"serializer id too big", rawEnvelopeFrame(protowire.AppendVarint([]byte{0x08, 1, 0x30}, 1<<33)), ErrCorruptFrame},
		{"system kind too big", rawEnvelopeFrame(protowire.AppendVarint([]byte{0x08, 1, 0x48}, 256)), ErrCorruptFrame},
		{"payload length past end", rawEnvelopeFrame([]byte{0x08, 1, 0x3a, 9, 1}), ErrCorruptFrame},
		{"bad compressed body", []byte{FlagS2, 0x05, 0xff, 0xff}, ErrCorruptFrame},
		{"huge declared decompressed size", []byte{FlagS2, 0xff, 0xff, 0xff, 0xff, 0x07}, ErrFrameTooLarge},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, dec := newPair(t, EncoderConfig{}, DecoderConfig{})
			_, err := dec.Decode(c.frame)
			if !errors.Is(err, c.want) {
				t.Fatalf("Decode(%x) error %v, want %v", c.frame, err, c.want)
			}
		})
	}
}

// rawEnvelopeFrame wraps an encoded envelope in a batch that defines one
// string, and the batch in a frame.
func rawEnvelopeFrame(env []byte) []byte {
	b := protowire.AppendTag(nil, batchNewString, protowire.BytesType)
	b = protowire.AppendBytes(b, []byte("t"))
	b = protowire.AppendTag(b, batchEnvelope, protowire.BytesType)
	b = protowire.AppendBytes(b, env)
	f := protowire.AppendTag([]byte{0}, protowire.Number(FrameBatch), protowire.BytesType)
	return protowire.AppendBytes(f, b)
}

func TestEncoderRefusals(t *testing.T) {
	lim := DefaultLimits()
	lim.MaxFrameBytes = 4096
	lim.MaxStringBytes = 64
	lim.MaxHeaderEntries = 2
	enc, dec := newPair(t, EncoderConfig{Limits: lim, MaxBytes: 1024}, DecoderConfig{Limits: lim})
	refused := []Envelope{
		{Target: "a", Payload: make([]byte, 5000)},
		{Target: "a", Payload: make([]byte, 4090)},
		{Target: strings.Repeat("x", 65)},
		{Target: "new-string", Header: []Header{{Key: "1"}, {Key: "2"}, {Key: "3"}}},
		{Target: "another-new-string", TypeName: strings.Repeat("y", 65)},
	}
	for i := range refused {
		if err := enc.Add(&refused[i]); !errors.Is(err, ErrEnvelopeTooLarge) {
			t.Fatalf("Add(refused %d) = %v, want ErrEnvelopeTooLarge", i, err)
		}
	}
	if len(enc.dict.ids) != 0 || enc.Len() != 0 {
		t.Fatalf("refused envelopes left %d strings and %d envelopes behind", len(enc.dict.ids), enc.Len())
	}
	// A big envelope travels alone, past the soft byte limit.
	big := Envelope{Target: "a", Payload: make([]byte, 2000)}
	small := Envelope{Target: "b", Payload: make([]byte, 10)}
	if err := enc.Add(&small); err != nil {
		t.Fatal(err)
	}
	if err := enc.Add(&big); !errors.Is(err, ErrFrameFull) {
		t.Fatalf("Add(big) into a non-empty frame = %v, want ErrFrameFull", err)
	}
	frames := encodeAll(t, enc, []Envelope{big})
	if len(frames) != 2 {
		t.Fatalf("%d frames, want 2", len(frames))
	}
	checkSame(t, decodeAll(t, dec, frames), []Envelope{small, big}, LaneUser)
}

// TestKnownStringsAtTheByteLimit crosses MaxBytes byte by byte with
// envelopes whose strings the dictionary has, which Add takes on its short
// path: an envelope joins a frame exactly when the frame stays within
// MaxBytes, is refused with ErrFrameFull otherwise, and travels alone when
// it is larger than MaxBytes on its own.
func TestKnownStringsAtTheByteLimit(t *testing.T) {
	lim := DefaultLimits()
	lim.MaxFrameBytes = 4096
	enc, dec := newPair(t, EncoderConfig{Limits: lim, MaxBytes: 1024}, DecoderConfig{Limits: lim})
	flush := func() *Buffer {
		t.Helper()
		buf, err := enc.Flush()
		if err != nil || buf == nil {
			t.Fatalf("Flush = %v, %v", buf, err)
		}
		return buf
	}
	known := Envelope{Target: "t", SenderAddress: "a", SenderID: "s", TypeName: "T", RequestID: 7}
	if err := enc.Add(&known); err != nil { // defines the strings
		t.Fatal(err)
	}
	frames := []*Buffer{flush()}
	var sent []Envelope
	sent = append(sent, known)
	// bodyOf is what env alone adds to a frame.
	bodyOf := func(env *Envelope) int {
		t.Helper()
		if err := enc.Add(env); err != nil {
			t.Fatal(err)
		}
		n := enc.Size() - frameOverhead
		enc.clearFrame()
		return n
	}
	first := known
	first.Payload = make([]byte, 10)
	firstBody := bodyOf(&first)
	for p := 900; p <= 1100; p++ {
		env := known
		env.Payload = make([]byte, p)
		body := bodyOf(&env)
		if err := enc.Add(&first); err != nil {
			t.Fatal(err)
		}
		err := enc.Add(&env)
		fits := frameOverhead+firstBody+body <= 1024
		switch {
		case fits && err != nil:
			t.Fatalf("payload %d: Add = %v, though the frame would be %d bytes", p, err, frameOverhead+firstBody+body)
		case !fits && !errors.Is(err, ErrFrameFull):
			t.Fatalf("payload %d: Add = %v, want ErrFrameFull for a frame of %d bytes", p, err, frameOverhead+firstBody+body)
		case fits:
			sent = append(sent, first, env)
			frames = append(frames, flush())
		default:
			frames = append(frames, flush())
			if err := enc.Add(&env); err != nil { // alone, even past MaxBytes
				t.Fatalf("payload %d alone: %v", p, err)
			}
			sent = append(sent, first, env)
			frames = append(frames, flush())
		}
	}
	checkSame(t, decodeAll(t, dec, frames), sent, LaneUser)
}

func TestSelfContainedFramesDecodeAlone(t *testing.T) {
	enc, err := NewEncoder(EncoderConfig{SelfContained: true, MaxEnvelopes: 2})
	if err != nil {
		t.Fatal(err)
	}
	envs := []Envelope{{Target: "a", TypeName: "T"}, {Target: "b", TypeName: "T"}, {Target: "a", TypeName: "T"}}
	frames := encodeAll(t, enc, envs)
	// Decode the frames out of order, each with a fresh decoder, and also
	// all in order with one decoder.
	for i := len(frames) - 1; i >= 0; i-- {
		dec, _ := NewDecoder(DecoderConfig{Lane: LaneSystem})
		got := decodeAll(t, dec, frames[i:i+1])
		checkSame(t, got, envs[2*i:min(2*i+2, len(envs))], LaneSystem)
	}
	dec, _ := NewDecoder(DecoderConfig{Lane: LaneSystem})
	checkSame(t, decodeAll(t, dec, frames), envs, LaneSystem)
}

func TestPositions(t *testing.T) {
	enc, dec := newPair(t, EncoderConfig{MaxEnvelopes: 3}, DecoderConfig{})
	if enc.NextPosition() != 1 {
		t.Fatalf("a new encoder starts at position %d", enc.NextPosition())
	}
	enc.SetNextPosition(41)
	frames := encodeAll(t, enc, manyTargets(7))
	for i, f := range frames {
		d, err := dec.Decode(f.B)
		if err != nil {
			t.Fatal(err)
		}
		if want := uint64(41 + 3*i); d.Position != want {
			t.Fatalf("frame %d starts at position %d, want %d", i, d.Position, want)
		}
	}
	if enc.NextPosition() != 48 {
		t.Fatalf("NextPosition() = %d, want 48", enc.NextPosition())
	}
	if buf, err := enc.Flush(); buf != nil || err != nil {
		t.Fatalf("Flush with nothing to say = %v, %v", buf, err)
	}
	// An ack request travels with its frame only.
	for _, want := range []bool{true, false} {
		if want {
			enc.RequestAck()
		}
		frames := encodeAll(t, enc, manyTargets(1))
		d, err := dec.Decode(frames[0].B)
		if err != nil || d.AckRequested != want {
			t.Fatalf("AckRequested = %v, want %v (%v)", d.AckRequested, want, err)
		}
	}
	// A skipped position travels as an empty batch.
	skipTo := enc.NextPosition() + 2
	enc.SetNextPosition(skipTo)
	buf, err := enc.Flush()
	if err != nil || buf == nil {
		t.Fatalf("Flush after a skip = %v, %v", buf, err)
	}
	d, err := dec.Decode(buf.B)
	if err != nil || d.Position != skipTo || len(d.Envelopes) != 0 {
		t.Fatalf("skip frame decoded as position %d with %d envelopes: %v", d.Position, len(d.Envelopes), err)
	}
}

func TestCloneOwnsItsMemory(t *testing.T) {
	enc, dec := newPair(t, EncoderConfig{}, DecoderConfig{})
	frames := encodeAll(t, enc, []Envelope{{Target: "a", Payload: []byte("payload"), Header: []Header{{Key: "k", Value: "value"}}}})
	d, err := dec.Decode(frames[0].B)
	if err != nil {
		t.Fatal(err)
	}
	c := d.Envelopes[0].Clone()
	for i := range frames[0].B {
		frames[0].B[i] = 'X'
	}
	if string(d.Envelopes[0].Payload) == "payload" {
		t.Fatal("decoded payload does not alias the frame")
	}
	if string(c.Payload) != "payload" || c.Header[0].Value != "value" || c.Header[0].Key != "k" {
		t.Fatalf("clone changed with the frame: %+v", c)
	}
}

func TestControlFrames(t *testing.T) {
	frames := []*courierv1.Frame{
		{Kind: &courierv1.Frame_Hello{Hello: &courierv1.Hello{ProtocolVersion: 1, SystemId: "s", Incarnation: 3, Lane: courierv1.Lane_LANE_USER, Limits: DefaultLimits().Proto()}}},
		{Kind: &courierv1.Frame_Welcome{Welcome: &courierv1.Welcome{Accepted: true, SystemId: "r"}}},
		{Kind: &courierv1.Frame_Ack{Ack: &courierv1.Ack{Position: 12}}},
		{Kind: &courierv1.Frame_Heartbeat{Heartbeat: &courierv1.Heartbeat{Nanos: 5}}},
		{Kind: &courierv1.Frame_Goodbye{Goodbye: &courierv1.Goodbye{Reason: "bye"}}},
	}
	want := []FrameKind{FrameHello, FrameWelcome, FrameAck, FrameHeartbeat, FrameGoodbye}
	_, dec := newPair(t, EncoderConfig{}, DecoderConfig{})
	for i, f := range frames {
		buf, err := EncodeControl(f)
		if err != nil {
			t.Fatal(err)
		}
		d, err := dec.Decode(buf.B)
		buf.Release()
		if err != nil {
			t.Fatal(err)
		}
		if d.Kind != want[i] || !d.Control.EqualVT(f) {
			t.Fatalf("decoded %v %v, want %v %v", d.Kind, d.Control, want[i], f)
		}
	}
}

func TestLimitsValidate(t *testing.T) {
	if err := DefaultLimits().Validate(); err != nil {
		t.Fatal(err)
	}
	bad := Limits{MaxFrameBytes: 1, MaxBatchEnvelopes: 0, MaxDictionaryEntries: 1, MaxDictionaryBytes: 1, MaxStringBytes: 1, MaxHeaderEntries: -1}
	err := bad.Validate()
	if !errors.Is(err, ErrInvalidLimits) {
		t.Fatalf("Validate() = %v", err)
	}
	for _, field := range []string{"MaxFrameBytes", "MaxBatchEnvelopes", "MaxDictionaryEntries", "MaxDictionaryBytes", "MaxStringBytes", "MaxHeaderEntries"} {
		if !strings.Contains(err.Error(), field) {
			t.Errorf("Validate() does not report %s: %v", field, err)
		}
	}
	if _, err := NewEncoder(EncoderConfig{Limits: bad}); !errors.Is(err, ErrInvalidLimits) {
		t.Errorf("NewEncoder with bad limits: %v", err)
	}
	if _, err := NewDecoder(DecoderConfig{Limits: bad}); !errors.Is(err, ErrInvalidLimits) {
		t.Errorf("NewDecoder with bad limits: %v", err)
	}
	a, b := DefaultLimits(), DefaultLimits()
	b.MaxFrameBytes, a.MaxHeaderEntries = 8192, 3
	m := a.Min(b)
	if m.MaxFrameBytes != 8192 || m.MaxHeaderEntries != 3 || m.MaxBatchEnvelopes != a.MaxBatchEnvelopes {
		t.Fatalf("Min = %+v", m)
	}
	if got := LimitsFromProto(m.Proto(), DefaultLimits()); got != m {
		t.Fatalf("LimitsFromProto(Proto()) = %+v, want %+v", got, m)
	}
	if got := LimitsFromProto(&courierv1.Limits{}, a); got != a {
		t.Fatalf("zero fields do not take the defaults: %+v", got)
	}
}

// TestSteadyStateAllocations: with a warm dictionary, encoding and decoding
// a frame allocates nothing at all.
func TestSteadyStateAllocations(t *testing.T) {
	enc, dec := newPair(t, EncoderConfig{}, DecoderConfig{})
	envs := make([]Envelope, 64)
	for i := range envs {
		envs[i] = Envelope{Target: "actor/1", TypeName: "pkg.Msg", SenderID: "s", Payload: make([]byte, 64),
			Header: []Header{{Key: "k", Value: "v"}}}
	}
	run := func() {
		for i := range envs {
			if err := enc.Add(&envs[i]); err != nil {
				t.Fatal(err)
			}
		}
		buf, err := enc.Flush()
		if err != nil {
			t.Fatal(err)
		}
		d, err := dec.Decode(buf.B)
		if err != nil || len(d.Envelopes) != len(envs) {
			t.Fatalf("decoded %d: %v", len(d.Envelopes), err)
		}
		// The same frame in three segments, cut inside envelopes.
		third := len(buf.B) / 3
		segs := [][]byte{buf.B[:third], buf.B[third : 2*third], buf.B[2*third:]}
		if d, err = dec.DecodeSegments(segs); err != nil || len(d.Envelopes) != len(envs) {
			t.Fatalf("decoded %d in segments: %v", len(d.Envelopes), err)
		}
		buf.Release()
	}
	run() // warm the dictionary and the pools
	if allocs := testing.AllocsPerRun(100, run); allocs != 0 {
		t.Fatalf("%v allocations per frame of %d envelopes, want 0", allocs, len(envs))
	}
}

// TestDecodeSegments: a frame cut into segments anywhere, as gRPC hands over
// a message that arrived in several DATA frames, decodes to what the whole
// frame does, for batches, compressed batches and control frames alike.
func TestDecodeSegments(t *testing.T) {
	var frames [][]byte
	for _, cfg := range []EncoderConfig{{SelfContained: true}, {SelfContained: true, Compress: true, CompressThreshold: 64}} {
		enc, _ := newPair(t, cfg, DecoderConfig{})
		for _, f := range encodeAll(t, enc, sampleEnvelopes()) {
			frames = append(frames, bytes.Clone(f.B))
			f.Release()
		}
	}
	ack, err := EncodeControl(&courierv1.Frame{Kind: &courierv1.Frame_Ack{Ack: &courierv1.Ack{Position: 1 << 40}}})
	if err != nil {
		t.Fatal(err)
	}
	frames = append(frames, bytes.Clone(ack.B))
	ack.Release()

	// cuts lists ways to cut a frame of n bytes: in two at every offset,
	// and into pieces of a few fixed sizes with an empty segment between.
	cuts := func(b []byte) [][][]byte {
		var out [][][]byte
		for i := range len(b) + 1 {
			out = append(out, [][]byte{b[:i:i], b[i:]})
		}
		for _, size := range []int{1, 3, 16, 100} {
			var segs [][]byte
			for rest := b; len(rest) > 0; {
				n := min(size, len(rest))
				segs = append(segs, rest[:n:n], nil)
				rest = rest[n:]
			}
			out = append(out, segs)
		}
		return out
	}
	for fi, frame := range frames {
		whole, _ := NewDecoder(DecoderConfig{})
		want, err := whole.Decode(frame)
		if err != nil {
			t.Fatalf("frame %d: %v", fi, err)
		}
		for _, segs := range cuts(frame) {
			dec, _ := NewDecoder(DecoderConfig{})
			got, err := dec.DecodeSegments(segs)
			if err != nil {
				t.Fatalf("frame %d in %d segments: %v", fi, len(segs), err)
			}
			if got.Kind != want.Kind || got.Position != want.Position || got.AckRequested != want.AckRequested ||
				!want.Control.EqualVT(got.Control) {
				t.Fatalf("frame %d in %d segments: got %+v, want %+v", fi, len(segs), got, want)
			}
			checkSame(t, got.Envelopes, want.Envelopes, LaneUser)
			if fp, bound := dec.Footprint(), MaxFootprint(dec.Limits()); fp > bound {
				t.Fatalf("decoder holds %d bytes, bound %d", fp, bound)
			}
			dec.Close()
		}
		whole.Close()
	}
}

// TestWireOverhead: with a warm dictionary, an envelope with a target, a
// type, a sender and a 64-byte payload costs at most payload+14 bytes on the
// wire, frame overhead included.
func TestWireOverhead(t *testing.T) {
	enc, _ := newPair(t, EncoderConfig{}, DecoderConfig{})
	envs := make([]Envelope, 64)
	for i := range envs {
		envs[i] = Envelope{Target: fmt.Sprintf("actor/%d", i%8), TypeName: "pkg.Msg", SenderID: "sender/1", Payload: make([]byte, 64)}
	}
	encodeAll(t, enc, envs) // warm
	frames := encodeAll(t, enc, envs)
	perEnvelope := float64(len(frames[0].B)) / float64(len(envs))
	if perEnvelope > 64+14 {
		t.Fatalf("%.2f bytes per envelope, want at most %d", perEnvelope, 64+14)
	}
	t.Logf("%.2f wire bytes per envelope of 64 payload bytes", perEnvelope)
}

// TestDecoderAgreesWithGeneratedCode decodes the same frames with the
// hand-written decoder and with the vtproto-generated one, resolving ids by
// hand, and requires the same envelopes.
func TestDecoderAgreesWithGeneratedCode(t *testing.T) {
	enc, dec := newPair(t, EncoderConfig{MaxEnvelopes: 7}, DecoderConfig{})
	envs := sampleEnvelopes()
	frames := encodeAll(t, enc, append(envs, envs...))
	var dict []string
	for _, f := range frames {
		var fr courierv1.Frame
		if err := fr.UnmarshalVT(f.B[1:]); err != nil {
			t.Fatal(err)
		}
		b := fr.GetBatch()
		if b.ResetDictionary {
			dict = nil
		}
		for _, s := range b.NewStrings {
			dict = append(dict, string(s))
		}
		str := func(id uint32) string {
			if id == 0 {
				return ""
			}
			return dict[id-1]
		}
		d, err := dec.Decode(f.B)
		if err != nil {
			t.Fatal(err)
		}
		if len(d.Envelopes) != len(b.Envelopes) {
			t.Fatalf("%d envelopes, generated code sees %d", len(d.Envelopes), len(b.Envelopes))
		}
		for i, m := range b.Envelopes {
			want := Envelope{
				Target: str(m.Target), RequestID: m.RequestId, SenderAddress: str(m.SenderAddress),
				SenderID: str(m.SenderId), TypeName: str(m.TypeName), SerializerID: m.SerializerId,
				Payload: m.Payload, Kind: SystemKind(m.SystemKind), DataPosition: m.DataPosition,
			}
			for _, h := range m.Header {
				want.Header = append(want.Header, Header{Key: str(h.Key), Value: string(h.Value)})
			}
			if !d.Envelopes[i].Equal(&want) {
				t.Fatalf("envelope %d: %+v, generated code: %+v", i, d.Envelopes[i], want)
			}
		}
	}
}

// TestAckEncoder: an AckEncoder's frames are the Ack frames EncodeControl
// makes, padded, position by position; a gRPC message holding one, with its
// 5-byte header, is more than the 1 KiB gRPC reads into an allocation of
// its own; decoding one allocates nothing once the Decoder has decoded one;
// and reusing the encoder allocates only the pooled buffer.
func TestAckEncoder(t *testing.T) {
	var a AckEncoder
	dec, err := NewDecoder(DecoderConfig{})
	if err != nil {
		t.Fatal(err)
	}
	for _, pos := range []uint64{1, 300, 1 << 40} {
		got, err := a.Encode(pos)
		if err != nil {
			t.Fatal(err)
		}
		if 5+len(got.B) <= 1<<10 {
			t.Fatalf("position %d: a %d-byte ack, which gRPC would not read into its pool", pos, len(got.B))
		}
		d, err := dec.Decode(got.B)
		if err != nil || d.Kind != FrameAck || d.Control.GetAck().GetPosition() != pos {
			t.Fatalf("position %d: decoded %v %v: %v", pos, d.Kind, d.Control, err)
		}
		if n := testing.AllocsPerRun(100, func() { _, _ = dec.Decode(got.B) }); n > 0 {
			t.Fatalf("position %d: decoding a padded ack allocates %v times", pos, n)
		}
		want, err := EncodeControl(&courierv1.Frame{Kind: &courierv1.Frame_Ack{Ack: &courierv1.Ack{Position: pos, Padding: make([]byte, AckPadding)}}})
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got.B, want.B) {
			t.Fatalf("position %d: % x, want % x", pos, got.B, want.B)
		}
		got.Release()
		want.Release()
	}
	n := testing.AllocsPerRun(100, func() {
		b, _ := a.Encode(7)
		b.Release()
	})
	if n > 0 {
		t.Fatalf("%v allocations per ack", n)
	}
}

// TestDecodeReusedControlFrames: acks and heartbeats decode into frames the
// Decoder reuses, and nothing of one leaks into the next (a heartbeat
// without reply after one with a reply says no reply); decoding an ack
// allocates nothing.
func TestDecodeReusedControlFrames(t *testing.T) {
	d, err := NewDecoder(DecoderConfig{})
	if err != nil {
		t.Fatal(err)
	}
	decode := func(f *courierv1.Frame) Decoded {
		t.Helper()
		buf, err := EncodeControl(f)
		if err != nil {
			t.Fatal(err)
		}
		defer buf.Release()
		got, err := d.Decode(buf.B)
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	beat := func(nanos uint64, reply bool) *courierv1.Frame {
		return &courierv1.Frame{Kind: &courierv1.Frame_Heartbeat{Heartbeat: &courierv1.Heartbeat{Nanos: nanos, Reply: reply}}}
	}
	if got := decode(beat(5, true)).Control.GetHeartbeat(); got.GetNanos() != 5 || !got.GetReply() {
		t.Fatalf("first heartbeat: %v", got)
	}
	if got := decode(beat(0, false)).Control.GetHeartbeat(); got.GetNanos() != 0 || got.GetReply() {
		t.Fatalf("second heartbeat kept the first's fields: %v", got)
	}
	var a AckEncoder
	for _, pos := range []uint64{9, 3, 0} {
		buf, err := a.Encode(pos)
		if err != nil {
			t.Fatal(err)
		}
		got, err := d.Decode(buf.B)
		buf.Release()
		if err != nil || got.Kind != FrameAck || got.Control.GetAck().GetPosition() != pos {
			t.Fatalf("ack %d: %v %v", pos, got.Control, err)
		}
	}
	goodbye := decode(&courierv1.Frame{Kind: &courierv1.Frame_Goodbye{Goodbye: &courierv1.Goodbye{Reason: "bye"}}})
	if goodbye.Control.GetGoodbye().GetReason() != "bye" || goodbye.Control.GetAck() != nil {
		t.Fatalf("goodbye: %v", goodbye.Control)
	}
	buf, err := a.Encode(77)
	if err != nil {
		t.Fatal(err)
	}
	defer buf.Release()
	if n := testing.AllocsPerRun(100, func() { _, _ = d.Decode(buf.B) }); n > 0 {
		t.Fatalf("%v allocations per ack decoded", n)
	}
}

// TestEncoderWritesCanonicalProtobuf: the frames the Encoder writes field by
// field are what protobuf itself writes for the same message (vtprotobuf's
// marshal of the frame protobuf decodes from them), for envelopes with
// every field empty or set, headers with empty keys and values, dictionary
// resets and ack requests; and the Decoder reads back what went in.
func TestEncoderWritesCanonicalProtobuf(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 11))
	pick := func(options ...string) string { return options[rng.IntN(len(options))] }
	enc, err := NewEncoder(EncoderConfig{})
	if err != nil {
		t.Fatal(err)
	}
	dec, err := NewDecoder(DecoderConfig{})
	if err != nil {
		t.Fatal(err)
	}
	for frame := range 300 {
		var sent []Envelope
		for range 1 + rng.IntN(40) {
			env := Envelope{
				Target:        pick("a", "worker/1", "worker/2", "x/"+strconv.Itoa(rng.IntN(1000))),
				SenderAddress: pick("", "", "10.0.0.1:4000"),
				SenderID:      pick("", "client", "client/"+strconv.Itoa(rng.IntN(50))),
				TypeName:      pick("", "T", "shop.Order"),
				RequestID:     []uint64{0, 1, 300, 1 << 40}[rng.IntN(4)],
				SerializerID:  uint32(rng.IntN(3)),
				Kind:          SystemKind(rng.IntN(5)),
				DataPosition:  []uint64{0, 5, 1 << 33}[rng.IntN(3)],
			}
			if rng.IntN(4) > 0 {
				env.Payload = make([]byte, rng.IntN(300))
				for i := range env.Payload {
					env.Payload[i] = byte(rng.Uint32())
				}
			}
			for range rng.IntN(3) {
				env.Header = append(env.Header, Header{Key: pick("", "trace", "k"+strconv.Itoa(rng.IntN(9))), Value: pick("", "v", "0af7651916cd43dd")})
			}
			if err := enc.Add(&env); errors.Is(err, ErrFrameFull) {
				break
			} else if err != nil {
				t.Fatal(err)
			}
			sent = append(sent, env)
		}
		if rng.IntN(3) == 0 {
			enc.RequestAck()
		}
		buf, err := enc.Flush()
		if err != nil {
			t.Fatal(err)
		}
		var f courierv1.Frame
		if err := f.UnmarshalVT(buf.B[1:]); err != nil {
			t.Fatalf("frame %d: %v", frame, err)
		}
		again, err := f.MarshalVT()
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(again, buf.B[1:]) {
			t.Fatalf("frame %d: not protobuf's encoding:\n got % x\nwant % x", frame, buf.B[1:], again)
		}
		got, err := dec.Decode(buf.B)
		if err != nil {
			t.Fatalf("frame %d: %v", frame, err)
		}
		if len(got.Envelopes) != len(sent) {
			t.Fatalf("frame %d: %d envelopes back, %d sent", frame, len(got.Envelopes), len(sent))
		}
		for i := range sent {
			g, w := got.Envelopes[i], sent[i]
			g.Lane, w.Lane = 0, 0
			for _, e := range []*Envelope{&g, &w} { // empty and nil are one on the wire
				if len(e.Header) == 0 {
					e.Header = nil
				}
				if len(e.Payload) == 0 {
					e.Payload = nil
				}
			}
			if !reflect.DeepEqual(g, w) {
				t.Fatalf("frame %d envelope %d: got %+v, sent %+v", frame, i, g, w)
			}
		}
		buf.Release()
	}
}

// TestDecoderReadsAnyFieldOrder: envelopes whose fields come out of the
// encoder's order, twice, or with dictionary ids and request ids wider than
// a byte decode as the generated code decodes them. The decoder reads the
// encoder's order without its general loop, and must hand everything else
// to that loop.
func TestDecoderReadsAnyFieldOrder(t *testing.T) {
	type field struct {
		num protowire.Number
		v   uint64 // a varint field's value
		b   []byte // a payload
	}
	envelope := func(fields ...field) []byte {
		var m []byte
		for _, f := range fields {
			if f.b != nil {
				m = protowire.AppendTag(m, f.num, protowire.BytesType)
				m = protowire.AppendBytes(m, f.b)
				continue
			}
			m = protowire.AppendTag(m, f.num, protowire.VarintType)
			m = protowire.AppendVarint(m, f.v)
		}
		return m
	}
	envs := [][]byte{
		envelope(field{num: envTarget, v: 1}, field{num: envRequestID, v: 7}, field{num: envSenderID, v: 2},
			field{num: envTypeName, v: 3}, field{num: envPayload, b: []byte("in order")}),
		envelope(field{num: envTarget, v: 150}, field{num: envRequestID, v: 1 << 40}, field{num: envSenderAddress, v: 4},
			field{num: envSenderID, v: 180}, field{num: envTypeName, v: 199}, field{num: envPayload, b: bytes.Repeat([]byte("w"), 300)}),
		envelope(field{num: envPayload, b: []byte("reversed")}, field{num: envTypeName, v: 3}, field{num: envSenderID, v: 2},
			field{num: envRequestID, v: 9}, field{num: envTarget, v: 1}),
		envelope(field{num: envTarget, v: 1}, field{num: envTarget, v: 5}, field{num: envTypeName, v: 3},
			field{num: envTypeName, v: 130}, field{num: envSerializerID, v: 2}),
		envelope(field{num: envTarget, v: 1}, field{num: envSenderAddress, v: 129}, field{num: envSenderID, v: 2}),
	}
	var batch []byte
	batch = protowire.AppendTag(batch, batchPosition, protowire.VarintType)
	batch = protowire.AppendVarint(batch, 1)
	var dict []string
	for i := range 200 {
		dict = append(dict, fmt.Sprintf("s%03d", i+1))
		batch = protowire.AppendTag(batch, batchNewString, protowire.BytesType)
		batch = protowire.AppendString(batch, dict[i])
	}
	for _, e := range envs {
		batch = protowire.AppendTag(batch, batchEnvelope, protowire.BytesType)
		batch = protowire.AppendBytes(batch, e)
	}
	frame := protowire.AppendTag(nil, 3, protowire.BytesType) // courier.v1.Frame.batch
	frame = protowire.AppendBytes(frame, batch)

	var want courierv1.Frame
	if err := want.UnmarshalVT(frame); err != nil {
		t.Fatal(err)
	}
	str := func(id uint32) string {
		if id == 0 {
			return ""
		}
		return dict[id-1]
	}
	dec, err := NewDecoder(DecoderConfig{})
	if err != nil {
		t.Fatal(err)
	}
	defer dec.Close()
	d, err := dec.Decode(append([]byte{0}, frame...)) // the flags byte: uncompressed
	if err != nil {
		t.Fatal(err)
	}
	if len(d.Envelopes) != len(envs) {
		t.Fatalf("%d envelopes, want %d", len(d.Envelopes), len(envs))
	}
	for i, m := range want.GetBatch().Envelopes {
		w := Envelope{Target: str(m.Target), RequestID: m.RequestId, SenderAddress: str(m.SenderAddress),
			SenderID: str(m.SenderId), TypeName: str(m.TypeName), SerializerID: m.SerializerId, Payload: m.Payload}
		if !d.Envelopes[i].Equal(&w) {
			t.Errorf("envelope %d: %+v, generated code: %+v", i, d.Envelopes[i], w)
		}
	}
}
