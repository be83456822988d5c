package writer

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/courier-go/courier/batch"
	"github.com/courier-go/courier/ring"
)

// recorder is a stream that decodes every batch frame it is sent and keeps,
// for each, its last position and whether it asked for an ack.
type recorder struct {
	mu     sync.Mutex
	dec    *batch.Decoder
	frames []sentFrame
}

type sentFrame struct {
	last  uint64
	asked bool
}

func (s *recorder) SendMsg(m any) error {
	buf := m.(*batch.Buffer)
	defer buf.Release()
	s.mu.Lock()
	defer s.mu.Unlock()
	d, err := s.dec.Decode(buf.B)
	if err != nil {
		return err
	}
	if d.Kind == batch.FrameBatch && len(d.Envelopes) > 0 {
		s.frames = append(s.frames, sentFrame{last: d.Position + uint64(len(d.Envelopes)) - 1, asked: d.AckRequested})
	}
	s.dec.Release()
	return nil
}

func (s *recorder) RecvMsg(any) error { select {} }

// waitFrames waits until n frames have been sent, and returns them.
func (s *recorder) waitFrames(t *testing.T, n int) []sentFrame {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		s.mu.Lock()
		got := append([]sentFrame(nil), s.frames...)
		s.mu.Unlock()
		if len(got) >= n {
			return got
		}
	}
	t.Fatalf("fewer than %d frames sent", n)
	return nil
}

// TestAsksForAcksAtMostTwiceUnanswered: a writer with a ring full of work and
// a peer that does not answer asks for an ack on two frames once a quarter of
// the ring waits, then on none but the last, which leaves it idle.
func TestAsksForAcksAtMostTwiceUnanswered(t *testing.T) {
	const capacity, perFrame = 64, 4
	r, err := ring.New[batch.Envelope](capacity)
	if err != nil {
		t.Fatal(err)
	}
	var c Counters
	w, err := New(Config{Ring: r, MaxEnvelopes: perFrame, Counters: &c,
		DeadLetter: func(*batch.Envelope, Reason) {}})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		r.Close()
		w.Terminate(ReasonShutdown)
		<-w.Done()
	}()
	dec, err := batch.NewDecoder(batch.DecoderConfig{})
	if err != nil {
		t.Fatal(err)
	}
	defer dec.Close()
	s := &recorder{dec: dec}
	ctx := context.Background()
	env := batch.Envelope{Target: "worker/1", TypeName: "t.Msg", Payload: []byte("x")}
	for range capacity { // all queued before the writer has a link
		if err := r.Push(ctx, env); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Attach(&Link{Stream: s, Limits: batch.DefaultLimits()}); err != nil {
		t.Fatal(err)
	}
	frames := s.waitFrames(t, capacity/perFrame)
	var asked []uint64
	for _, f := range frames {
		if f.asked {
			asked = append(asked, f.last)
		}
	}
	// A frame asks once the ring retains a quarter, 16 envelopes, with
	// this frame's: frames 4 and 5 (last positions 16 and 20); then the
	// last frame, after which the writer would go idle.
	if want := []uint64{16, 20, capacity}; !slices.Equal(asked, want) {
		t.Fatalf("frames asking for an ack end at positions %v, want %v", asked, want)
	}

}
