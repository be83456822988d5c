package ring

import (
	"context"
	"fmt"
	"sync"
	"testing"
)

const benchCapacity = 1024

// BenchmarkMPSC moves b.N values from N producers to one consumer, through
// a Ring and, as the reference in the same run, through a buffered channel
// of the same capacity. Producers block while the queue is full (Push and a
// channel send), so both sides do the same work. ns/op is per value.
// `make bench-ring` runs it with long samples and compares the two with
// benchstat.
func BenchmarkMPSC(b *testing.B) {
	for _, producers := range []int{1, 4, 16, 64} {
		b.Run(fmt.Sprintf("impl=ring/producers=%d", producers), func(b *testing.B) {
			benchRing(b, producers)
		})
		b.Run(fmt.Sprintf("impl=chan/producers=%d", producers), func(b *testing.B) {
			benchChan(b, producers)
		})
	}
}

// share splits n values among producers; producer i sends share(n, p, i).
func share(n, producers, i int) int {
	s := n / producers
	if i < n%producers {
		s++
	}
	return s
}

func benchRing(b *testing.B, producers int) {
	r, err := New[uint64](benchCapacity)
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	buf := make([]uint64, benchCapacity)
	b.ReportAllocs()
	b.ResetTimer()

	var wg sync.WaitGroup
	for p := 0; p < producers; p++ {
		wg.Add(1)
		go func(n int) {
			defer wg.Done()
			for i := 0; i < n; i++ {
				if err := r.Push(ctx, uint64(i)); err != nil {
					panic(err)
				}
			}
		}(share(b.N, producers, p))
	}
	var sum uint64
	for got := 0; got < b.N; {
		n := r.Drain(buf)
		if n == 0 {
			if err := r.Wait(ctx); err != nil {
				b.Fatal(err)
			}
			continue
		}
		for _, v := range buf[:n] {
			sum += v
		}
		got += n
	}
	wg.Wait()
	sink = sum
}

func benchChan(b *testing.B, producers int) {
	ch := make(chan uint64, benchCapacity)
	b.ReportAllocs()
	b.ResetTimer()

	var wg sync.WaitGroup
	for p := 0; p < producers; p++ {
		wg.Add(1)
		go func(n int) {
			defer wg.Done()
			for i := 0; i < n; i++ {
				ch <- uint64(i)
			}
		}(share(b.N, producers, p))
	}
	var sum uint64
	for got := 0; got < b.N; got++ {
		sum += <-ch
	}
	wg.Wait()
	sink = sum
}

var sink uint64
