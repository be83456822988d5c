package reader

import (
	"testing"
	"time"
)

// A handler holding a batch back sees a Claim or a Close that waits for it,
// and no longer once they are through.
func TestLaneStateWanted(t *testing.T) {
	for _, op := range []struct {
		name string
		do   func(*LaneState)
	}{
		{"claim", func(s *LaneState) { s.Claim() }},
		{"close", func(s *LaneState) { s.Close() }},
	} {
		t.Run(op.name, func(t *testing.T) {
			var s LaneState
			if s.Wanted() {
				t.Fatal("a fresh lane is wanted")
			}
			s.mu.Lock() // a batch in progress
			done := make(chan struct{})
			go func() {
				defer close(done)
				op.do(&s)
			}()
			deadline := time.Now().Add(5 * time.Second)
			for !s.Wanted() {
				if time.Now().After(deadline) {
					s.mu.Unlock()
					<-done
					t.Fatalf("%s waiting for the batch, and the lane not wanted", op.name)
				}
				time.Sleep(time.Millisecond)
			}
			s.mu.Unlock()
			<-done
			if s.Wanted() {
				t.Fatalf("the lane still wanted after %s went through", op.name)
			}
		})
	}
}
