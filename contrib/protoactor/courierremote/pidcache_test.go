package courierremote

import (
	"fmt"
	"testing"
	"unsafe"
)

func TestPIDCache(t *testing.T) {
	c := newPIDCache()
	// The id aliases a buffer that is reused, as a frame's strings do.
	buf := []byte("pinger-1")
	id := unsafe.String(&buf[0], len(buf))
	p := c.get("127.0.0.1:1", id, 7)
	if p.Id != "pinger-1" || p.Address != "127.0.0.1:1" || p.RequestId != 7 {
		t.Fatalf("got %v", p)
	}
	if c.get("127.0.0.1:1", "pinger-1", 7) != p {
		t.Fatal("the same sender got a second PID")
	}
	copy(buf, "XXXXXXXX")
	if p.Id != "pinger-1" {
		t.Fatalf("the cached PID aliases the buffer: %q", p.Id)
	}
	for _, q := range []struct {
		addr, id string
		req      uint32
	}{{"127.0.0.1:2", "pinger-1", 7}, {"127.0.0.1:1", "pinger-1", 8}, {"127.0.0.1:1", "pinger-2", 7}} {
		if got := c.get(q.addr, q.id, q.req); got.Address != q.addr || got.Id != q.id || got.RequestId != q.req {
			t.Fatalf("get(%v) = %v", q, got)
		}
	}
	// Many senders: bounded, and each answer is right.
	for i := range 10 * pidSlots {
		id := fmt.Sprint("s", i)
		if got := c.get("a", id, 0); got.Id != id {
			t.Fatalf("get(%s) = %v", id, got)
		}
	}
	if got := testing.AllocsPerRun(100, func() { c.get("a", "hot", 1) }); got != 0 {
		t.Fatalf("a cached sender costs %v allocations", got)
	}
}
