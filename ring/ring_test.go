package ring

import (
	"context"
	"errors"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/courier-go/courier/internal/testutil"
)

func mustNew[T any](t testing.TB, capacity int, opts ...Option) *Ring[T] {
	t.Helper()
	r, err := New[T](capacity, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestNewCapacity(t *testing.T) {
	for _, c := range []int{-4, 0, 1, 3, 6, 1000, MaxCapacity + 1, MaxCapacity * 2} {
		if _, err := New[int](c); !errors.Is(err, ErrCapacity) {
			t.Errorf("New(%d) error = %v, want ErrCapacity", c, err)
		}
	}
	for _, c := range []int{MinCapacity, 4, 1024} {
		r, err := New[int](c)
		if err != nil {
			t.Fatalf("New(%d): %v", c, err)
		}
		if r.Cap() != c || r.Len() != 0 {
			t.Errorf("New(%d): Cap %d Len %d", c, r.Cap(), r.Len())
		}
	}
}

func TestFullAndEmptyEdges(t *testing.T) {
	r := mustNew[int](t, 8)
	buf := make([]int, 16)
	if n := r.Drain(buf); n != 0 || r.Ready() {
		t.Fatalf("empty ring drained %d, ready %v", n, r.Ready())
	}
	// Several laps, so the wrap-around of positions is exercised.
	next, want := 0, 0
	for lap := 0; lap < 5; lap++ {
		for i := 0; i < 8; i++ {
			if err := r.TryPush(next); err != nil {
				t.Fatalf("lap %d push %d: %v", lap, i, err)
			}
			next++
		}
		if err := r.TryPush(-1); !errors.Is(err, ErrFull) {
			t.Fatalf("push into full ring: %v, want ErrFull", err)
		}
		if r.Len() != 8 || !r.Ready() {
			t.Fatalf("full ring: Len %d Ready %v", r.Len(), r.Ready())
		}
		// Drain in two uneven parts.
		n := r.Drain(buf[:3])
		n += r.Drain(buf[3:])
		if n != 8 {
			t.Fatalf("drained %d, want 8", n)
		}
		for _, v := range buf[:n] {
			if v != want {
				t.Fatalf("drained %d, want %d", v, want)
			}
			want++
		}
		if r.Len() != 0 || r.Ready() {
			t.Fatalf("drained ring: Len %d Ready %v", r.Len(), r.Ready())
		}
	}
}

func TestDrainClearsSlots(t *testing.T) {
	r := mustNew[*int](t, 4)
	for i := 0; i < 3; i++ {
		v := i
		if err := r.TryPush(&v); err != nil {
			t.Fatal(err)
		}
	}
	buf := make([]*int, 4)
	if n := r.Drain(buf); n != 3 {
		t.Fatalf("drained %d", n)
	}
	slots := r.storage.Load().slots
	for i := range slots {
		if slots[i].val != nil {
			t.Errorf("slot %d still holds %v after Drain", i, slots[i].val)
		}
	}
}

// TestReleaseClearsWhatItReleases: Release clears the slots it frees, and
// only those, wherever the run of positions starts: within the slots, across
// their end, and all of them.
func TestReleaseClearsWhatItReleases(t *testing.T) {
	const size = 4
	for start := range size {
		for n := 1; n <= size; n++ {
			r := mustNew[*int](t, size)
			buf := make([]*int, size)
			for range start { // move the positions on by start
				v := 0
				if err := r.TryPush(&v); err != nil {
					t.Fatal(err)
				}
				r.Drain(buf)
			}
			vals := make([]int, size)
			for i := range vals {
				if err := r.TryPush(&vals[i]); err != nil {
					t.Fatal(err)
				}
			}
			if got := r.Peek(buf); got != size {
				t.Fatalf("peeked %d", got)
			}
			r.Release(n)
			slots := r.storage.Load().slots
			for i := range size {
				pos := start + i
				s := &slots[pos%size]
				if released := i < n; released != (s.val == nil) {
					t.Errorf("start %d, release %d: position %d holds %v", start, n, pos, s.val)
				}
				if i >= n && s.val != &vals[i] {
					t.Errorf("start %d, release %d: position %d lost its value", start, n, pos)
				}
			}
			if r.Retained() != size-n {
				t.Fatalf("retains %d, want %d", r.Retained(), size-n)
			}
			for range n { // the freed slots take new values, and are ready
				v := 0
				if err := r.TryPush(&v); err != nil {
					t.Fatalf("start %d, release %d: %v", start, n, err)
				}
			}
			r.Rewind()
			if got := r.Peek(buf); got != size {
				t.Fatalf("start %d, release %d: peeked %d of %d after the refill", start, n, got, size)
			}
			if n < size && buf[0] != &vals[n] {
				t.Fatalf("start %d, release %d: the oldest retained value moved", start, n)
			}
		}
	}
}

// TestManyProducers checks that every value arrives exactly once and in
// per-producer order.
func TestManyProducers(t *testing.T) {
	const producers, perProducer = 16, 20000
	r := mustNew[uint64](t, 64)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	var wg sync.WaitGroup
	for p := 0; p < producers; p++ {
		wg.Add(1)
		go func(p uint64) {
			defer wg.Done()
			for i := uint64(0); i < perProducer; i++ {
				v := p<<32 | i
				if i%2 == 0 {
					if err := r.Push(ctx, v); err != nil {
						t.Errorf("Push: %v", err)
						return
					}
					continue
				}
				for {
					err := r.TryPush(v)
					if err == nil {
						break
					}
					if !errors.Is(err, ErrFull) {
						t.Errorf("TryPush: %v", err)
						return
					}
					if ctx.Err() != nil {
						t.Errorf("TryPush: %v", ctx.Err())
						return
					}
					runtime.Gosched()
				}
			}
		}(uint64(p))
	}
	go func() { wg.Wait(); r.Close() }()

	next := make([]uint64, producers)
	buf := make([]uint64, 17) // odd size: batches end mid-lap
	total := 0
	for {
		n := r.Drain(buf)
		for _, v := range buf[:n] {
			p, i := v>>32, v&0xffffffff
			if i != next[p] {
				t.Fatalf("producer %d: got item %d, want %d", p, i, next[p])
			}
			next[p]++
		}
		total += n
		if n > 0 {
			continue
		}
		if err := r.Wait(ctx); errors.Is(err, ErrClosed) {
			break
		} else if err != nil {
			t.Fatalf("Wait: %v after %d items", err, total)
		}
	}
	if total != producers*perProducer {
		t.Fatalf("received %d items, want %d", total, producers*perProducer)
	}
}

// TestCloseWhileActive closes the ring under producers and a consumer and
// checks that every accepted value is drained and every other is refused.
func TestCloseWhileActive(t *testing.T) {
	for round := 0; round < 20; round++ {
		r := mustNew[int](t, 16)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		var accepted atomic.Int64
		var wg sync.WaitGroup
		for p := 0; p < 8; p++ {
			wg.Add(1)
			go func(p int) {
				defer wg.Done()
				for i := 0; ; i++ {
					var err error
					if p%2 == 0 {
						err = r.Push(ctx, i)
					} else {
						err = r.TryPush(i)
					}
					switch {
					case err == nil:
						accepted.Add(1)
					case errors.Is(err, ErrClosed):
						return
					case errors.Is(err, ErrFull):
						runtime.Gosched()
					default:
						t.Errorf("push: %v", err)
						return
					}
				}
			}(p)
		}
		time.AfterFunc(time.Millisecond, r.Close)

		buf := make([]int, 8)
		drained := 0
		for {
			drained += r.Drain(buf)
			err := r.Wait(ctx)
			if errors.Is(err, ErrClosed) {
				break
			}
			if err != nil {
				t.Fatalf("Wait: %v", err)
			}
		}
		wg.Wait()
		cancel()
		if got := accepted.Load(); int64(drained) != got {
			t.Fatalf("round %d: drained %d, accepted %d", round, drained, got)
		}
		if err := r.TryPush(1); !errors.Is(err, ErrClosed) {
			t.Fatalf("push after close: %v", err)
		}
		if !r.Drained() || r.Len() != 0 {
			t.Fatalf("after close: Drained %v Len %d", r.Drained(), r.Len())
		}
	}
}

// TestNoLostWakeup bounces a value between a consumer that parks in Wait
// whenever its ring is empty and a partner that busy-polls its own ring and
// answers after a random few nanoseconds, so that answers land at every
// point of the consumer's way into parking. A wake-up lost anywhere on that
// way leaves the consumer asleep for good, and the deadline fails the test.
func TestNoLostWakeup(t *testing.T) {
	budget := 3 * time.Second
	if testing.Short() {
		budget = 500 * time.Millisecond
	}
	toWaiter, toPoller := mustNew[int](t, 2), mustNew[int](t, 2)
	// A round takes microseconds; one that takes this long is a consumer
	// that nothing will ever wake.
	ctx, cancel := context.WithTimeout(context.Background(), budget+10*time.Second)
	defer cancel()

	pollerDone := make(chan error, 1)
	go func() {
		buf := make([]int, 1)
		for {
			for !toPoller.Ready() {
				if toPoller.Drained() {
					pollerDone <- nil
					return
				}
				if ctx.Err() != nil {
					pollerDone <- ctx.Err()
					return
				}
			}
			toPoller.Drain(buf)
			if err := toWaiter.TryPush(buf[0] + 1); err != nil {
				pollerDone <- err
				return
			}
		}
	}()

	buf := make([]int, 1)
	rng := uint32(1)
	var err error
	rounds := 0
	for start := time.Now(); time.Since(start) < budget && err == nil; rounds++ {
		if err = toPoller.TryPush(rounds); err != nil {
			break
		}
		// Start parking at a different moment each round, so the answer
		// lands before, during and after the consumer's way into the park.
		rng = rng*1664525 + 1013904223
		for i := uint32(0); i < rng>>24; i++ { // 0..255 iterations
			sinkSpin++
		}
		for toWaiter.Drain(buf) == 0 && err == nil {
			err = toWaiter.Wait(ctx)
		}
		if err == nil && buf[0] != rounds+1 {
			t.Fatalf("round %d: got %d", rounds, buf[0])
		}
	}
	toPoller.Close()
	if perr := <-pollerDone; perr != nil && err == nil {
		err = perr
	}
	if err != nil {
		t.Fatalf("lost wake-up after %d rounds: %v", rounds, err)
	}
	t.Logf("%d rounds", rounds)
}

var sinkSpin uint32

func TestPushWaitsForRoom(t *testing.T) {
	r := mustNew[int](t, 2)
	for i := 0; i < 2; i++ {
		if err := r.TryPush(i); err != nil {
			t.Fatal(err)
		}
	}
	done := make(chan error, 1)
	go func() { done <- r.Push(context.Background(), 2) }()
	// A producer counts itself waiting before its last look at the ring;
	// with the ring full and nothing drained, it is parked from then on.
	testutil.Eventually(t, "the producer to park", 10*time.Second, func() bool { return r.gate.waiting.Load() == 1 })
	select {
	case err := <-done:
		t.Fatalf("Push into full ring returned %v before any Drain", err)
	default:
	}
	buf := make([]int, 1)
	r.Drain(buf)
	if err := <-done; err != nil {
		t.Fatalf("Push: %v", err)
	}
	buf = make([]int, 4)
	if n := r.Drain(buf); n != 2 || buf[0] != 1 || buf[1] != 2 {
		t.Fatalf("drained %v", buf[:n])
	}
}

// TestPushTurnsReachEveryWaiter parks many producers on a full ring, then
// frees one slot at a time. Parked producers are woken one at a time and
// pass the turn on, so a turn that stopped anywhere would strand the
// producers behind it; every value must still arrive, the pushes of each
// producer in order.
func TestPushTurnsReachEveryWaiter(t *testing.T) {
	const producers, each = 16, 20
	r := mustNew[[2]int](t, 2)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	errs := make(chan error, producers)
	for p := 0; p < producers; p++ {
		go func() {
			for i := 0; i < each; i++ {
				if err := r.Push(ctx, [2]int{p, i}); err != nil {
					errs <- err
					return
				}
			}
			errs <- nil
		}()
	}
	next := make([]int, producers)
	buf := make([][2]int, 1) // one slot freed per Drain
	for got := 0; got < producers*each; {
		if r.Drain(buf) == 0 {
			if err := r.Wait(ctx); err != nil {
				t.Fatalf("after %d values: %v (a parked producer was never woken)", got, err)
			}
			continue
		}
		p, i := buf[0][0], buf[0][1]
		if i != next[p] {
			t.Fatalf("producer %d: got %d, want %d", p, i, next[p])
		}
		next[p]++
		got++
	}
	for p := 0; p < producers; p++ {
		if err := <-errs; err != nil {
			t.Fatalf("Push: %v", err)
		}
	}
	if n := r.gate.waiting.Load(); n != 0 {
		t.Fatalf("%d producers still counted as waiting", n)
	}
}

func TestPushUnblocksOnCancelAndClose(t *testing.T) {
	r := mustNew[int](t, 2)
	_ = r.TryPush(0)
	_ = r.TryPush(1)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 2)
	go func() { done <- r.Push(ctx, 2) }()
	go func() { done <- r.Push(context.Background(), 3) }()
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("canceled Push: %v", err)
	}
	r.Close()
	if err := <-done; !errors.Is(err, ErrClosed) {
		t.Fatalf("Push on closed ring: %v", err)
	}
	if r.gate.waiting.Load() != 0 {
		t.Fatalf("%d producers still counted as waiting", r.gate.waiting.Load())
	}
}

func TestWaitContext(t *testing.T) {
	r := mustNew[int](t, 2)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Millisecond)
	defer cancel()
	if err := r.Wait(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Wait on empty ring: %v", err)
	}
	_ = r.TryPush(1)
	if err := r.Wait(context.Background()); err != nil {
		t.Fatalf("Wait on non-empty ring: %v", err)
	}
	r.Close()
	if err := r.Wait(context.Background()); err != nil {
		t.Fatalf("Wait on closed ring with a value left: %v", err)
	}
	r.Drain(make([]int, 1))
	if err := r.Wait(context.Background()); !errors.Is(err, ErrClosed) {
		t.Fatalf("Wait on closed, drained ring: %v", err)
	}
}

func TestSharedBell(t *testing.T) {
	bell := NewBell()
	a := mustNew[int](t, 4, WithBell(bell))
	b := mustNew[int](t, 4, WithBell(bell))
	ready := func() bool { return a.Ready() || b.Ready() }
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for i := 0; i < 1000; i++ {
		target := a
		if i%2 == 1 {
			target = b
		}
		go func() { _ = target.TryPush(i) }()
		for !ready() {
			if err := bell.Wait(ctx, ready); err != nil {
				t.Fatalf("round %d: %v", i, err)
			}
		}
		buf := make([]int, 1)
		if target.Drain(buf) != 1 || buf[0] != i {
			t.Fatalf("round %d: drained %v", i, buf)
		}
	}
}

func TestNoAllocations(t *testing.T) {
	r := mustNew[[4]uint64](t, 64)
	buf := make([][4]uint64, 64)
	allocs := testing.AllocsPerRun(100, func() {
		for i := 0; i < 32; i++ {
			_ = r.TryPush([4]uint64{uint64(i)})
		}
		r.Drain(buf)
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per 32 pushes and a drain, want 0", allocs)
	}
}

func TestPeekReleaseRewind(t *testing.T) {
	r := mustNew[*int](t, 8)
	vals := make([]int, 12)
	for i := range vals {
		vals[i] = i
	}
	for i := 0; i < 5; i++ {
		if err := r.TryPush(&vals[i]); err != nil {
			t.Fatal(err)
		}
	}
	buf := make([]*int, 3)
	if n := r.Peek(buf); n != 3 || *buf[0] != 0 || *buf[2] != 2 {
		t.Fatalf("Peek = %d", n)
	}
	if r.Retained() != 3 || r.Len() != 5 {
		t.Fatalf("Retained %d Len %d, want 3 and 5", r.Retained(), r.Len())
	}
	// Retained values take room: only 3 more fit.
	for i := 5; i < 8; i++ {
		if err := r.TryPush(&vals[i]); err != nil {
			t.Fatal(err)
		}
	}
	if err := r.TryPush(&vals[8]); !errors.Is(err, ErrFull) {
		t.Fatalf("push past retained values: %v", err)
	}
	// Rewind reads the retained values again, in order.
	r.Rewind()
	buf = make([]*int, 8)
	if n := r.Peek(buf); n != 8 {
		t.Fatalf("Peek after Rewind = %d", n)
	}
	for i, p := range buf {
		if *p != i {
			t.Fatalf("value %d after Rewind is %d", i, *p)
		}
	}
	// Release frees the oldest slots, clears them and makes room.
	r.Release(2)
	for i := 0; i < 2; i++ {
		if r.storage.Load().slots[i].val != nil {
			t.Fatalf("released slot %d still holds a value", i)
		}
	}
	if r.Retained() != 6 || r.Len() != 6 {
		t.Fatalf("after Release: Retained %d Len %d", r.Retained(), r.Len())
	}
	for i := 8; i < 10; i++ {
		if err := r.TryPush(&vals[i]); err != nil {
			t.Fatalf("push after Release: %v", err)
		}
	}
	func() {
		defer func() {
			if recover() == nil {
				t.Fatal("Release of more than the ring holds did not panic")
			}
		}()
		r.Release(9)
	}()
	// Release after Rewind moves the reader past what it releases.
	r.Rewind()
	r.Release(1)
	if n := r.Peek(buf[:1]); n != 1 || *buf[0] != 3 {
		t.Fatalf("after Rewind and Release(1), Peek gives %d", *buf[0])
	}
	r.Release(5)
	// Drain reads the rest and releases everything read.
	if n := r.Drain(buf); n != 2 || *buf[0] != 8 || *buf[1] != 9 {
		t.Fatalf("Drain = %d", n)
	}
	r.Release(r.Retained())
	if r.Len() != 0 {
		t.Fatalf("Len %d after releasing all", r.Len())
	}
}

// TestShed: a ring sheds its storage only when empty and retaining
// nothing, keeps its capacity and positions, and grows it back on the next
// push.
func TestShed(t *testing.T) {
	r, err := New[int](4)
	if err != nil {
		t.Fatal(err)
	}
	if r.Holding() || r.Shed() {
		t.Fatal("a new ring holds storage before its first push")
	}
	buf := make([]int, 4)
	if n := r.Peek(buf); n != 0 || r.Ready() {
		t.Fatalf("a bare ring reads %d values", n)
	}
	for i := range 4 {
		if err := r.TryPush(i); err != nil {
			t.Fatal(err)
		}
	}
	if !r.Holding() {
		t.Fatal("no storage after a push")
	}
	if err := r.TryPush(4); !errors.Is(err, ErrFull) {
		t.Fatalf("fifth push into 4 slots: %v", err)
	}
	if r.Shed() {
		t.Fatal("shed a full ring")
	}
	r.Peek(buf)
	if r.Shed() {
		t.Fatal("shed a ring whose values are read but retained")
	}
	r.Release(4)
	if !r.Shed() || r.Holding() || r.Cap() != 4 || r.Len() != 0 || r.Pushed() != 4 {
		t.Fatalf("after Shed: holding %v, cap %d, len %d, pushed %d", r.Holding(), r.Cap(), r.Len(), r.Pushed())
	}
	// Grown back: the same capacity, positions go on.
	for i := range 4 {
		if err := r.TryPush(10 + i); err != nil {
			t.Fatal(err)
		}
	}
	if err := r.TryPush(14); !errors.Is(err, ErrFull) {
		t.Fatalf("a regrown ring took more than its capacity: %v", err)
	}
	if n := r.Drain(buf); n != 4 || buf[0] != 10 || buf[3] != 13 || r.Pushed() != 8 {
		t.Fatalf("after regrowing: drained %d %v, pushed %d", n, buf, r.Pushed())
	}
	if !r.Shed() {
		t.Fatal("no second shed")
	}
	r.Close()
	if err := r.TryPush(1); !errors.Is(err, ErrClosed) || !r.Drained() || r.Shed() {
		t.Fatalf("closed bare ring: push %v, drained %v", err, r.Drained())
	}
}

// TestShedUnderPushes sheds the ring whenever it can while producers push:
// every value arrives exactly once and in each producer's order, whether it
// raced a shed or a regrowth.
func TestShedUnderPushes(t *testing.T) {
	const producers, each = 4, 20000
	r, err := New[[2]int](64)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for p := range producers {
		wg.Go(func() {
			for i := range each {
				if err := r.Push(context.Background(), [2]int{p, i}); err != nil {
					t.Error(err)
					return
				}
				if i%97 == 0 {
					runtime.Gosched() // let the ring drain empty now and then
				}
			}
		})
	}
	next := make([]int, producers)
	buf := make([][2]int, 16)
	sheds := 0
	for got := 0; got < producers*each; {
		n := r.Drain(buf)
		for _, v := range buf[:n] {
			if v[1] != next[v[0]] {
				t.Fatalf("producer %d: got %d, want %d", v[0], v[1], next[v[0]])
			}
			next[v[0]]++
		}
		got += n
		if r.Shed() {
			sheds++
		}
		if n == 0 {
			runtime.Gosched()
		}
	}
	wg.Wait()
	if n := r.Drain(buf); n != 0 {
		t.Fatalf("%d values beyond what was pushed", n)
	}
	if sheds == 0 {
		t.Fatal("the ring never went empty to shed: the test tested nothing")
	}
	t.Logf("%d sheds", sheds)
}

// TestNext: Next hands out values in place, in order, marks them read like
// Peek, and a value stays where it is until Release; Rewind reads it again.
func TestNext(t *testing.T) {
	r := mustNew[int](t, 4)
	if r.Next() != nil {
		t.Fatal("Next on an empty ring")
	}
	for i := range 3 {
		if err := r.TryPush(i); err != nil {
			t.Fatal(err)
		}
	}
	a, b := r.Next(), r.Next()
	if a == nil || b == nil || *a != 0 || *b != 1 || r.Retained() != 2 {
		t.Fatalf("Next: %v %v, retained %d", a, b, r.Retained())
	}
	r.Rewind()
	if again := r.Next(); again != a || *again != 0 {
		t.Fatal("Rewind did not hand out the same value in the same place")
	}
	r.Next()
	if c := r.Next(); c == nil || *c != 2 || r.Next() != nil {
		t.Fatalf("third value: %v", c)
	}
	r.Release(3)
	if *b != 0 || r.Len() != 0 {
		t.Fatalf("a released slot still holds %d, len %d", *b, r.Len())
	}
}
