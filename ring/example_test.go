package ring_test

import (
	"context"
	"fmt"

	"github.com/courier-go/courier/ring"
)

type order struct {
	id    uint64
	item  string
	notes [8]string // large enough that copying it twice shows
}

// Producers push large values from a pointer, so that each is copied once,
// into its slot, and the consumer drains them in order. A full ring refuses
// TryPushFrom at once.
func ExampleRing_TryPushFrom() {
	r, err := ring.New[order](4)
	if err != nil {
		panic(err)
	}
	for i := range 5 {
		o := order{id: uint64(i + 1), item: fmt.Sprint("book ", i+1)}
		if err := r.TryPushFrom(&o); err != nil {
			fmt.Printf("order %d: %v\n", o.id, err)
		}
	}
	buf := make([]order, 4)
	n := r.Drain(buf)
	for _, o := range buf[:n] {
		fmt.Println(o.id, o.item)
	}
	// Room again: PushFrom waits for it when there is none, until ctx ends.
	late := order{id: 5, item: "book 5"}
	if err := r.PushFrom(context.Background(), &late); err != nil {
		panic(err)
	}
	fmt.Println(r.Len(), "queued")
	// Output:
	// order 5: ring: full
	// 1 book 1
	// 2 book 2
	// 3 book 3
	// 4 book 4
	// 1 queued
}
