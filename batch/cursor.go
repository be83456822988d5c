package batch

import "google.golang.org/protobuf/encoding/protowire"

// maxHead is the longest a tag and the varint after it can be together.
const maxHead = 2 * 10

// Parse error codes, the same as protowire's, so that protowire.ParseError
// names them.
const (
	errTruncated      = -1
	errReserved       = -4
	errEndGroup       = -5
	errRecursionDepth = -6
)

// A cursor reads one message of a frame that may have arrived in several
// segments, as gRPC hands over a message that came in several HTTP/2 DATA
// frames. It gives out each field's bytes as one slice: a field that lies
// within a segment aliases it, and one that straddles two is copied into the
// decoder's stitch buffer first. So a frame is never copied whole, only the
// few fields that cross a segment boundary.
//
// A cursor is a value: a copy reads on from the same place without moving
// the original.
type cursor struct {
	segs [][]byte // reading continues at segs[0][off:]
	off  int
	left int // unread bytes of the message
	d    *Decoder
}

// newCursor returns a cursor over a message of size bytes made of segs.
func newCursor(d *Decoder, segs [][]byte, size int) cursor {
	c := cursor{segs: segs, left: size, d: d}
	c.skip(0) // past empty leading segments
	return c
}

// avail returns the unread bytes of the message in the current segment.
func (c *cursor) avail() []byte {
	if c.left == 0 {
		return nil
	}
	b := c.segs[0][c.off:]
	return b[:min(len(b), c.left)]
}

// head returns the next unread bytes of the message, contiguous, at least
// maxHead of them or all that are left: enough for a tag and the varint
// after it. They may be a copy: a value read from them must be taken with
// take, never sliced from them.
func (c *cursor) head() []byte {
	if b := c.avail(); len(b) >= maxHead || len(b) == c.left {
		return b
	}
	return c.gatherHead()
}

// gatherHead copies what head returns near the end of a segment. It is
// kept out of line so that head, called for every field, inlines.
//
//go:noinline
func (c *cursor) gatherHead() []byte {
	return c.gather(c.d.window[:min(maxHead, c.left)])
}

// gather fills dst with the next len(dst) unread bytes, n <= c.left,
// without moving the cursor.
func (c *cursor) gather(dst []byte) []byte {
	segs, off := c.segs, c.off
	for w := 0; w < len(dst); segs, off = segs[1:], 0 {
		w += copy(dst[w:], segs[0][off:])
	}
	return dst
}

// skip moves past the next n unread bytes, n <= c.left.
func (c *cursor) skip(n int) {
	c.left -= n
	c.off += n
	for c.off >= len(c.segs[0]) && len(c.segs) > 1 {
		c.off -= len(c.segs[0])
		c.segs = c.segs[1:]
	}
}

// take returns the next n unread bytes, n <= c.left, as one slice, and
// moves past them.
func (c *cursor) take(n int) []byte {
	if b := c.avail(); len(b) >= n {
		c.skip(n)
		return b[:n:n]
	}
	return c.stitchNext(n)
}

// stitchNext copies the next n unread bytes into the stitch buffer and
// moves past them.
func (c *cursor) stitchNext(n int) []byte {
	b := c.gather(c.d.stitch(n))
	c.skip(n)
	return b
}

// The readers below take h, the bytes head returned, and n, the length of
// the tag at their start, and move past the tag and the value.

// varint reads a varint field's value. m < 0 is a parse error code.
func (c *cursor) varint(h []byte, n int) (v uint64, m int) {
	if v, m = consumeVarint(h[n:]); m > 0 {
		c.skip(n + m)
	}
	return v, m
}

// length reads the length prefix of a length-delimited field's value and
// checks that the bytes it announces are there. m < 0 is a parse error code.
func (c *cursor) length(h []byte, n int) (l, m int) {
	v, m := consumeVarint(h[n:])
	switch {
	case m < 0:
		return 0, m
	case v > uint64(c.left-n-m):
		return 0, errTruncated
	}
	c.skip(n + m)
	return int(v), m
}

// bytes reads a length-delimited field's value: length and take in one, as
// this runs for every envelope. m < 0 is a parse error code.
func (c *cursor) bytes(h []byte, n int) (v []byte, m int) {
	var l uint64
	if len(h) > n && h[n] < 0x80 { // consumeVarint by hand: this runs for every envelope
		l, m = uint64(h[n]), 1
	} else {
		l, m = protowire.ConsumeVarint(h[n:])
	}
	switch {
	case m < 0:
		return nil, m
	case l > uint64(c.left-n-m):
		return nil, errTruncated
	}
	c.skip(n + m)
	if b := c.avail(); uint64(len(b)) >= l {
		c.skip(int(l))
		return b[:l:l], m + int(l)
	}
	return c.stitchNext(int(l)), m + int(l)
}

// sub returns a cursor over the next n unread bytes, n <= c.left, as a
// message of their own, and moves c past them.
func (c *cursor) sub(n int) cursor {
	s := *c
	s.left = n
	c.skip(n)
	return s
}

// skipField moves past the value of a field the decoder does not know,
// accepting exactly what protowire.ConsumeFieldValue accepts. n < 0 is a
// parse error code.
func (c *cursor) skipField(num protowire.Number, typ protowire.Type, depth int) (n int) {
	switch typ {
	case protowire.VarintType:
		_, n = c.varint(c.head(), 0)
		return n
	case protowire.Fixed32Type, protowire.Fixed64Type:
		n = 4
		if typ == protowire.Fixed64Type {
			n = 8
		}
		if c.left < n {
			return errTruncated
		}
		c.skip(n)
		return n
	case protowire.BytesType:
		l, n := c.length(c.head(), 0)
		if n < 0 {
			return n
		}
		c.skip(l)
		return n + l
	case protowire.StartGroupType:
		if depth < 0 {
			return errRecursionDepth
		}
		start := c.left
		for {
			num2, typ2, n := consumeTag(c.head())
			if n < 0 {
				return n
			}
			c.skip(n)
			if typ2 == protowire.EndGroupType {
				if num2 != num {
					return errEndGroup
				}
				return start - c.left
			}
			if n = c.skipField(num2, typ2, depth-1); n < 0 {
				return n
			}
		}
	case protowire.EndGroupType:
		return errEndGroup
	}
	return errReserved
}

// stitch returns n bytes of the stitch buffer, where fields that straddle
// segments are copied. Every byte of a frame is copied at most once, so a
// buffer as large as the frame never runs out, and what it handed out stays
// put until the next frame. (Only a frame's first stitch can find the
// buffer missing or too small.)
func (d *Decoder) stitch(n int) []byte {
	if d.stitched == nil || cap(d.stitched.B) < d.size {
		d.stitched.Release()
		d.stitched = GetBuffer(d.size)
		d.stitched.B = d.stitched.B[:0]
	}
	b := d.stitched.B
	d.stitched.B = b[:len(b)+n]
	return b[len(b) : len(b)+n : len(b)+n]
}
