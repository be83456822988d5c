package fuzz

import (
	"encoding/binary"
	"errors"
	"io"
	"testing"

	"github.com/courier-go/courier/batch"
	"github.com/courier-go/courier/internal/wire"
	courierv1 "github.com/courier-go/courier/proto/courier/v1"
	"github.com/courier-go/courier/reader"
	"google.golang.org/grpc/mem"
)

// laneBatch is one batch of a lane's traffic as FuzzLanePositions builds
// it: its position, its number of envelopes, and whether it arrives on a
// new stream of the lane (a reconnect).
type laneBatch struct {
	pos       uint64
	n         int
	reconnect bool
}

// maxLaneBatches bounds the batches one input makes.
const maxLaneBatches = 256

// laneBatchFrom cuts the next batch off fuzz input. It takes a control byte:
// its low 3 bits are the envelope count, bit 3 starts a new stream before
// it, and the top 2 bits say how its position follows:
//
//	0: the next position after the lane's last, plus a signed byte (so
//	   overlaps, gaps, 0 and wraps are all a byte away);
//	1: a byte, as it is;
//	2: 2^64-1 minus a byte;
//	3: 8 bytes, little endian.
//
// last is the receiver's last position as the model has it.
func laneBatchFrom(data []byte, last uint64) (b laneBatch, rest []byte, ok bool) {
	if len(data) == 0 {
		return b, nil, false
	}
	c := data[0]
	data = data[1:]
	b.n, b.reconnect = int(c&7), c&8 != 0
	switch c >> 6 {
	case 0, 1, 2:
		if len(data) < 1 {
			return b, nil, false
		}
		v := data[0]
		data = data[1:]
		switch c >> 6 {
		case 0:
			b.pos = last + 1 + uint64(int64(int8(v)))
		case 1:
			b.pos = uint64(v)
		case 2:
			b.pos = ^uint64(0) - uint64(v)
		}
	case 3:
		if len(data) < 8 {
			return b, nil, false
		}
		b.pos = binary.LittleEndian.Uint64(data)
		data = data[8:]
	}
	return b, data, true
}

// positionStream is a lane's stream as the receive loop sees it: it yields
// the frames queued on it, then io.EOF.
type positionStream struct {
	frames [][]byte
}

func (s *positionStream) SendMsg(m any) error {
	if b, ok := m.(*batch.Buffer); ok {
		b.Release()
	}
	return nil
}

func (s *positionStream) RecvMsg(m any) error {
	if len(s.frames) == 0 {
		return io.EOF
	}
	f := s.frames[0]
	s.frames = s.frames[1:]
	return wire.Codec{}.Unmarshal(mem.BufferSlice{mem.SliceBuffer(f)}, m)
}

// positionFrame encodes a batch whose envelope i carries pos+i, as the
// sender numbers it, in its payload.
func positionFrame(t *testing.T, b laneBatch) []byte {
	msg := &courierv1.Batch{Position: b.pos, ResetDictionary: true, NewStrings: [][]byte{[]byte("t")}}
	for i := range b.n {
		msg.Envelopes = append(msg.Envelopes, &courierv1.Envelope{
			Target: 1, Payload: binary.LittleEndian.AppendUint64(nil, b.pos+uint64(i)),
		})
	}
	body, err := (&courierv1.Frame{Kind: &courierv1.Frame_Batch{Batch: msg}}).MarshalVT()
	if err != nil {
		t.Fatal(err)
	}
	return append([]byte{0}, body...)
}

// FuzzLanePositions feeds a sequence of batches, at positions the input
// chooses, to the reader's receive loop on one lane, over one stream or
// several in turn (reconnects); the input's first byte chooses the lane, and
// laneBatchFrom cuts the batches from the rest. It holds the loop to the
// lane's numbering rules against a model that knows only them:
//
//   - a batch at position 0, one that starts past the lane's last position
//     plus one while it carries envelopes, and one whose positions wrap past
//     2^64 are refused with ErrBadPosition (so ErrProtocol) and deliver
//     nothing, and the stream ends there;
//   - any other batch is accepted: its envelopes at positions past the
//     lane's last are delivered, once each, in increasing order, and the
//     rest counted as duplicates; an empty one moves the lane's last up to
//     its position minus one, never back;
//   - nothing panics, and the lane's Last matches the model's throughout.
func FuzzLanePositions(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		lane := batch.LaneUser
		if len(data) > 0 && data[0]&1 != 0 {
			lane = batch.LaneSystem
		}
		if len(data) > 0 {
			data = data[1:]
		}
		state := &reader.LaneState{}
		counters := &reader.Counters{}
		var last uint64           // the model's last position delivered or skipped
		var delivered []uint64    // positions delivered, in order, as the handler saw them
		var want []uint64         // what the model expects delivered
		var received, dups uint64 // envelopes in accepted batches, and the duplicates among them
		run := func(frames [][]byte) error {
			rcv := &reader.Receive{
				Stream: &positionStream{frames: frames}, Lane: lane, Limits: batch.DefaultLimits(),
				Deliver: func(_ *reader.Peer, env *batch.Envelope) {
					delivered = append(delivered, binary.LittleEndian.Uint64(env.Payload))
				},
				State:    state,
				Ack:      func(uint64) error { return nil },
				Counters: counters,
			}
			rcv.Generation = state.Claim()
			return rcv.Run()
		}
		var frames [][]byte
		for range maxLaneBatches {
			b, rest, ok := laneBatchFrom(data, last)
			if !ok {
				break
			}
			data = rest
			if b.reconnect && len(frames) > 0 {
				if err := run(frames); err != io.EOF {
					t.Fatalf("stream of accepted batches ended with %v", err)
				}
				frames = nil
			}
			frames = append(frames, positionFrame(t, b))
			n := uint64(b.n)
			refused := b.pos == 0 || (n > 0 && b.pos > last+1 && last != ^uint64(0)) ||
				(n > 0 && b.pos+n-1 < b.pos)
			if refused {
				err := run(frames)
				var pe *reader.PositionError
				if !errors.Is(err, reader.ErrBadPosition) || !errors.Is(err, reader.ErrProtocol) || !errors.As(err, &pe) {
					t.Fatalf("batch of %d at %d after %d: %v, want ErrBadPosition", n, b.pos, last, err)
				}
				if pe.Position != b.pos || pe.Envelopes != b.n || pe.Last != last {
					t.Fatalf("PositionError %+v for a batch of %d at %d after %d", pe, n, b.pos, last)
				}
				frames = nil
				break
			}
			received += n
			for i := range n {
				if p := b.pos + i; p > last {
					want = append(want, p)
					last = p
				} else {
					dups++
				}
			}
			if n == 0 && b.pos-1 > last {
				last = b.pos - 1
			}
		}
		if len(frames) > 0 {
			if err := run(frames); err != io.EOF {
				t.Fatalf("stream of accepted batches ended with %v", err)
			}
		}
		for i := 1; i < len(delivered); i++ {
			if delivered[i] <= delivered[i-1] {
				t.Fatalf("position %d delivered after %d", delivered[i], delivered[i-1])
			}
		}
		if len(delivered) != len(want) {
			t.Fatalf("delivered %v, want %v", delivered, want)
		}
		for i := range want {
			if delivered[i] != want[i] {
				t.Fatalf("delivered %v, want %v", delivered, want)
			}
		}
		if got := state.Last(); got != last {
			t.Fatalf("lane's last is %d, want %d", got, last)
		}
		if d, u := counters.Delivered.Load(), counters.Duplicates.Load(); d != uint64(len(want)) || u != dups || d+u != received {
			t.Fatalf("counters: %d delivered, %d duplicates; want %d and %d of %d received", d, u, len(want), dups, received)
		}
	})
}

// lanePositionSeeds are sequences courier's writer sends (a run, a resend
// after a reconnect, a skip for an envelope too large, a skip to where the
// lane stands for a new incarnation), each rule broken once, and the top of
// the position range.
func lanePositionSeeds() []seedFile {
	const (
		next  = 0 << 6 // position: the next one, plus a signed byte
		small = 1 << 6 // position: a byte
		top   = 2 << 6 // position: 2^64-1 minus a byte
		wide  = 3 << 6 // position: 8 bytes
		again = 8      // on a new stream
	)
	back := func(n int8) byte { return byte(n) }
	return []seedFile{
		{"writer-run", []byte{0, next | 3, 0, next | 7, 0, next | 1, 0}},
		{"resend-after-reconnect", []byte{0, next | 5, 0, next | again | 7, back(-3), next | 2, 0}},
		{"skip-too-large", []byte{0, next | 2, 0, next, 1, next | 4, 0, next | again | 6, back(-6)}},
		{"new-incarnation-skip", []byte{0, small, 40, next | 3, 0, next | again, back(-3), next | 2, 0}},
		{"system-lane", []byte{1, next | 2, 0, next | again | 2, back(-1)}},
		{"position-0", []byte{0, small | 1, 0}},
		{"empty-at-0", []byte{0, next | 2, 0, small, 0}},
		{"gap-at-start", []byte{0, small | 1, 5}},
		{"gap-after-delivery", []byte{0, next | 2, 0, next | 1, 1}},
		{"wrap", []byte{0, top, 0, top | 2, 0}},
		{"wrap-far", append([]byte{0, wide | 3}, binary.LittleEndian.AppendUint64(nil, ^uint64(0)-1)...)},
		{"last-position", []byte{0, top, 0, top | 1, 0, next | 1, back(-1), next, 0}},
	}
}

func TestLanePositionsCorpus(t *testing.T) {
	checkCorpus(t, "FuzzLanePositions", lanePositionSeeds())
}
