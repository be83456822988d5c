package batch

import (
	"strings"
	"unsafe"
)

// cacheBits sizes the encoder's string cache: 1<<cacheBits entries.
const cacheBits = 8

// cacheEntry remembers the id of one string by its address and length. Go
// strings are immutable, and the entry keeps its string alive, so an entry
// whose address and length match is the same string.
type cacheEntry struct {
	p  *byte
	n  int
	id uint32
}

// encDict is the encoder's side of a stream dictionary.
type encDict struct {
	ids   map[string]uint32 // owned copies of every string sent, by id
	bytes int               // sum of the lengths of the keys of ids
	cache [1 << cacheBits]cacheEntry
}

// lookup returns the id of s, 0 for the empty string, or 0 and false when s
// is not in the dictionary.
func (d *encDict) lookup(s string) (uint32, bool) {
	if len(s) == 0 {
		return 0, true
	}
	p := unsafe.StringData(s)
	// Fibonacci hashing of the address; strings are at least byte aligned,
	// the multiply spreads neighbours across the table.
	h := (uint64(uintptr(unsafe.Pointer(p))) * 0x9e3779b97f4a7c15) >> (64 - cacheBits)
	e := &d.cache[h]
	if e.p == p && e.n == len(s) {
		return e.id, true
	}
	id, ok := d.ids[s]
	if ok {
		*e = cacheEntry{p: p, n: len(s), id: id}
	}
	return id, ok
}

// add defines s with the next id and returns it with the owned copy that the
// frame sends. The caller has checked the limits.
func (d *encDict) add(s string) (uint32, string) {
	owned := strings.Clone(s)
	id := uint32(len(d.ids) + 1)
	d.ids[owned] = id
	d.bytes += len(owned)
	return id, owned
}

// remove undoes add for the newest ids, newest first.
func (d *encDict) remove(owned string) {
	delete(d.ids, owned)
	d.bytes -= len(owned)
	d.cache = [1 << cacheBits]cacheEntry{}
}

func (d *encDict) reset() {
	clear(d.ids)
	d.bytes = 0
	d.cache = [1 << cacheBits]cacheEntry{}
}

// decDict is the decoder's side of a stream dictionary: id i is strs[i-1].
type decDict struct {
	strs  []string
	bytes int
}

func (d *decDict) reset() {
	clear(d.strs) // drop references so the strings can be collected
	d.strs = d.strs[:0]
	d.bytes = 0
}

// get resolves id; 0 is the empty string.
func (d *decDict) get(id uint64) (string, bool) {
	if id == 0 {
		return "", true
	}
	if id > uint64(len(d.strs)) {
		return "", false
	}
	return d.strs[id-1], true
}
