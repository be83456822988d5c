package fuzz

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"testing"

	"github.com/courier-go/courier/batch"
	courierv1 "github.com/courier-go/courier/proto/courier/v1"
)

func seedEnvelopes() []batch.Envelope {
	return []batch.Envelope{
		{Target: "actor/1", TypeName: "pkg.Msg", Payload: []byte("hello")},
		{Target: "actor/2", TypeName: "pkg.Msg", SenderID: "s", SenderAddress: "127.0.0.1:1", RequestID: 7,
			Header: []batch.Header{{Key: "trace", Value: "x"}}, Payload: bytes.Repeat([]byte("ab"), 200)},
		{Target: "actor/1", Kind: batch.KindTerminated, DataPosition: 3},
		{Target: "日本", TypeName: "\x00\xff", Kind: batch.KindWatch},
	}
}

func mustFrames(cfg batch.EncoderConfig, envs []batch.Envelope) [][]byte {
	frames, err := encode(envs, cfg)
	if err != nil {
		panic(err)
	}
	out := make([][]byte, len(frames))
	for i, f := range frames {
		out[i] = bytes.Clone(f.B)
		f.Release()
	}
	return out
}

func decodeFrameSeeds() []seedFile {
	lim := fuzzLimits()
	seeds := []seedFile{}
	for i, f := range mustFrames(batch.EncoderConfig{Limits: lim, MaxEnvelopes: 2}, seedEnvelopes()) {
		seeds = append(seeds, seedFile{fmt.Sprintf("batch-%d", i), f})
	}
	compressed := mustFrames(batch.EncoderConfig{Limits: lim, Compress: true, CompressThreshold: 64}, seedEnvelopes())
	seeds = append(seeds, seedFile{"batch-s2", compressed[0]})
	self := mustFrames(batch.EncoderConfig{Limits: lim, SelfContained: true}, seedEnvelopes())
	seeds = append(seeds, seedFile{"batch-reset", self[0]})
	ack, _ := batch.EncodeControl(&courierv1.Frame{Kind: &courierv1.Frame_Ack{Ack: &courierv1.Ack{Position: 9}}})
	seeds = append(seeds, seedFile{"ack", bytes.Clone(ack.B)})
	ack.Release()
	seeds = append(seeds,
		seedFile{"reserved-flag", []byte{0x80, 0x1a, 0}},
		seedFile{"s2-huge-length", []byte{batch.FlagS2, 0xff, 0xff, 0xff, 0x7f}},
	)
	return seeds
}

func roundTripSeeds() []seedFile {
	return []seedFile{
		{"empty-envelope", []byte{0, 0}},
		{"all-fields", []byte{0x1d, 0xff, 3, 'a', '/', '1', 4, 'T', 'y', 'p', 'e', 1, 's', 1, 'i',
			1, 2, 3, 4, 5, 6, 7, 8, 10, 0, 'p', 'a', 'y', 'l', 'o', 'a', 'd', '!', '!', '!', 1, 'k', 1, 'v'}},
		{"compressed-self-contained", append([]byte{0x19}, bytes.Repeat([]byte{0x08, 2, 'x', 'y', 0xff, 0x01, 'z'}, 20)...)},
	}
}

func frameStreamSeeds() []seedFile {
	lim := fuzzLimits()
	var envs []batch.Envelope
	for i := range 60 { // enough distinct strings to force a dictionary reset
		envs = append(envs, batch.Envelope{Target: fmt.Sprintf("target-%d", i%40), TypeName: "T", Payload: []byte{byte(i)}})
	}
	stream := func(frames [][]byte) []byte {
		var b []byte
		for _, f := range frames {
			b = binary.LittleEndian.AppendUint16(b, uint16(len(f)))
			b = append(b, f...)
		}
		return b
	}
	return []seedFile{
		{"dictionary-reuse", stream(mustFrames(batch.EncoderConfig{Limits: lim, MaxEnvelopes: 3}, seedEnvelopes()))},
		{"dictionary-reset", stream(mustFrames(batch.EncoderConfig{Limits: lim, MaxEnvelopes: 8}, envs))},
	}
}

// decodeSegmentsSeeds are the seeds of FuzzDecodeFrame and FuzzFrameStream
// again, each behind a byte that chooses how their frames are cut.
func decodeSegmentsSeeds() []seedFile {
	var seeds []seedFile
	for i, s := range decodeFrameSeeds() {
		cut := []byte{0x00, 0x03, 0x06}[i%3] // segments of 0-1, 0-8 and 0-64 bytes
		data := binary.LittleEndian.AppendUint16([]byte{cut}, uint16(len(s.data)))
		seeds = append(seeds, seedFile{s.name, append(data, s.data...)})
	}
	for _, s := range frameStreamSeeds() {
		seeds = append(seeds, seedFile{s.name, append([]byte{0x02}, s.data...)})
	}
	return seeds
}

func TestBatchCorpora(t *testing.T) {
	checkCorpus(t, "FuzzDecodeFrame", decodeFrameSeeds())
	checkCorpus(t, "FuzzRoundTrip", roundTripSeeds())
	checkCorpus(t, "FuzzFrameStream", frameStreamSeeds())
	checkCorpus(t, "FuzzDecodeSegments", decodeSegmentsSeeds())
}
