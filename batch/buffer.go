package batch

import (
	"math/bits"
	"sync"
	"unsafe"
)

// Buffer size classes: powers of two from 1<<minClassShift to
// 1<<maxClassShift bytes. A larger buffer is allocated for its one use and
// left to the garbage collector, so a burst of huge frames does not pin
// memory in the pools. The smallest class is 2 KiB because gRPC hands
// buffers of 1 KiB capacity or less back to nobody: pooled frames must be
// bigger for gRPC to return them when it has written them.
const (
	minClassShift = 11 // 2 KiB
	maxClassShift = 23 // 8 MiB
)

var bufferPools [maxClassShift - minClassShift + 1]sync.Pool

// Buffer is a pooled byte slice holding one encoded frame. Get one with
// GetBuffer and give it back with Release once nothing refers to its bytes.
type Buffer struct {
	// B holds the frame. Its capacity is the buffer's size class. It must
	// stay the first field; see ReleaseBytes.
	B []byte
	// Carrier is the sending transport's: state that lives exactly as long
	// as the buffer, reused with it, such as the one-element slice
	// internal/wire hands gRPC the frame in. batch never reads or writes it.
	Carrier any
	class   int8 // index into bufferPools, or -1 when not pooled
}

// GetBuffer returns a buffer with len(B) == n, from the pool of n's size
// class. The contents of B are not zeroed.
func GetBuffer(n int) *Buffer {
	c := classOf(n)
	if c < 0 {
		return &Buffer{B: make([]byte, n), class: -1}
	}
	if b, ok := bufferPools[c].Get().(*Buffer); ok {
		b.B = b.B[:n]
		return b
	}
	return &Buffer{B: make([]byte, n, 1<<(c+minClassShift)), class: int8(c)}
}

// Release returns b to its pool. b and its bytes must not be used after.
// Release of a nil Buffer does nothing.
func (b *Buffer) Release() {
	if b == nil || b.class < 0 {
		return
	}
	b.B = b.B[:0]
	bufferPools[b.class].Put(b)
}

// bytes returns b.B, or nil for a nil Buffer.
func (b *Buffer) bytes() []byte {
	if b == nil {
		return nil
	}
	return b.B
}

// ReleaseBytes releases the Buffer whose B field p points to: gRPC's buffer
// pools get back the *[]byte they were given, &buf.B, and this turns it into
// the Buffer again (B is the first field, so &buf.B is buf).
func ReleaseBytes(p *[]byte) { (*Buffer)(unsafe.Pointer(p)).Release() }

// classOf returns the pool index for a buffer of n bytes, or -1 when n is
// above the largest class.
func classOf(n int) int {
	if n <= 1<<minClassShift {
		return 0
	}
	shift := bits.Len(uint(n - 1)) // smallest s with 1<<s >= n
	if shift > maxClassShift {
		return -1
	}
	return shift - minClassShift
}
