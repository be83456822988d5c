package manager

import (
	"fmt"
	"net"

	"github.com/courier-go/courier/batch"
	"google.golang.org/protobuf/encoding/protowire"
)

// initialized reports whether m was made by New. Every exported method
// asks first, so that a zero or nil Manager answers ErrNotInitialized, or
// zero values, instead of dereferencing what New did not set.
func (m *Manager) initialized() bool { return m != nil && m.events != nil }

// checkAddress reports whether address is one Send can dial: host:port with
// a host and a port in [1, 65535]. Whether the host resolves is the dialer's
// business; this only keeps an address that can never work from making an
// endpoint that retries for nothing.
func checkAddress(address string) error {
	host, port, err := net.SplitHostPort(address)
	switch {
	case err != nil:
		return fmt.Errorf("%w %q: %v", ErrInvalidAddress, address, err)
	case host == "":
		return fmt.Errorf("%w %q: no host", ErrInvalidAddress, address)
	}
	if p, ok := parsePort(port); !ok || p == 0 {
		return fmt.Errorf("%w %q: port %q is not a number in [1, 65535]", ErrInvalidAddress, address, port)
	}
	return nil
}

// checkListenAddress reports whether addr is one Start can listen on:
// host:port, the host possibly empty (every interface), the port a number
// in [0, 65535] (0 picks a free one).
func checkListenAddress(addr string) error {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return err
	}
	if _, ok := parsePort(port); !ok {
		return fmt.Errorf("port %q is not a number in [0, 65535]", port)
	}
	return nil
}

// parsePort parses a port of decimal digits only: no sign, no service name.
func parsePort(s string) (int, bool) {
	if s == "" || len(s) > 5 {
		return 0, false
	}
	p := 0
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
		p = p*10 + int(s[i]-'0')
	}
	return p, p <= 65535
}

// checkSystemID reports whether id may name a system: letters, digits, '-',
// '_' and '.', at least one. Addresses are built with ':' (a client-only
// peer's is "client:" + id + ":" + incarnation) and logs and block lists
// quote ids bare, so nothing else is let in.
func checkSystemID(id string) bool {
	if id == "" {
		return false
	}
	for i := 0; i < len(id); i++ {
		switch c := id[i]; {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '-', c == '_', c == '.':
		default:
			return false
		}
	}
	return true
}

// frameOverhead bounds what a frame adds around its new strings and one
// envelope; it is batch's own bound (the flags byte, the frame's tag and
// length, the batch's position, reset flag and ack request).
const frameOverhead = 1 + 1 + 5 + 11 + 2 + 2

// plainBound bounds what an envelope without header entries adds to a frame
// beyond its strings' and payload's bytes: four new_strings fields' tags and
// lengths and four dictionary ids (1+5 and 1+5 bytes each), the payload's
// tag and length (1+5), the request id, serializer id, kind and data
// position at their widest (11, 6, 3 and 11), and the envelope field's own
// tag and length (1+5).
const plainBound = 4*(6+6) + 6 + 11 + 6 + 3 + 11 + 6

// checkEnvelope reports whether env can ever be sent in a frame under lim,
// so that Send refuses, synchronously, what the writer would otherwise
// dead-letter as too large: more header entries than a frame allows, or
// strings more or larger than an empty dictionary takes (ErrInvalidEnvelope
// for a count, ErrTooLarge for bytes), or an encoding larger than a frame.
//
// It prices env as the encoder does for an envelope alone in a frame with
// every string new, the worst case of both lanes, with dictionary ids as
// wide as lim allows; so an envelope it passes is one the encoder takes,
// and one it refuses for the frame size is within a few bytes of fitting
// at best. A peer that negotiates smaller limits can still make the writer
// dead-letter an envelope as too large. An ordinary envelope costs a few
// length checks and no allocation; strings are compared only when their
// plain sum is over a dictionary or frame limit.
func checkEnvelope(lim *batch.Limits, env *Envelope) error {
	if len(env.Header) == 0 {
		// Most envelopes have no header and are far from every limit: a
		// bound by plain sums settles them without pricing each field.
		strBytes := len(env.Target) + len(env.SenderAddress) + len(env.SenderID) + len(env.TypeName)
		if strBytes <= lim.MaxStringBytes && strBytes <= lim.MaxDictionaryBytes && lim.MaxDictionaryEntries >= 4 &&
			frameOverhead+plainBound+strBytes+len(env.Payload) <= lim.MaxFrameBytes {
			return nil
		}
	}
	if len(env.Header) > lim.MaxHeaderEntries {
		return fmt.Errorf("%w: %d header entries, limit %d", ErrInvalidEnvelope, len(env.Header), lim.MaxHeaderEntries)
	}
	idField := 1 + protowire.SizeVarint(uint64(lim.MaxDictionaryEntries))
	longest := max(len(env.Target), len(env.SenderAddress), len(env.SenderID), len(env.TypeName))
	count, strBytes, newStrings := 0, 0, 0 // non-empty strings, their bytes, their new_strings fields
	var body int                           // the envelope message
	for _, s := range [...]string{env.Target, env.SenderAddress, env.SenderID, env.TypeName} {
		if s != "" {
			count++
			strBytes += len(s)
			newStrings += bytesField(len(s))
			body += idField
		}
	}
	for i := range env.Header {
		h := &env.Header[i]
		longest = max(longest, len(h.Key))
		var n int
		if h.Key != "" {
			count++
			strBytes += len(h.Key)
			newStrings += bytesField(len(h.Key))
			n += idField
		}
		if h.Value != "" {
			n += bytesField(len(h.Value))
		}
		body += bytesField(n)
	}
	if longest > lim.MaxStringBytes {
		return fmt.Errorf("%w: a string of %d bytes, limit %d", ErrTooLarge, longest, lim.MaxStringBytes)
	}
	if env.RequestID != 0 {
		body += 1 + protowire.SizeVarint(env.RequestID)
	}
	if env.SerializerID != 0 {
		body += 1 + protowire.SizeVarint(uint64(env.SerializerID))
	}
	if len(env.Payload) > 0 {
		body += bytesField(len(env.Payload))
	}
	if env.Kind != batch.KindNone {
		body += 1 + protowire.SizeVarint(uint64(env.Kind))
	}
	switch {
	case env.Lane == batch.LaneSystem && env.Kind == batch.KindTerminated:
		body += 1 + protowire.SizeVarint(^uint64(0)) // Send stamps the user lane's position
	case env.DataPosition != 0:
		body += 1 + protowire.SizeVarint(env.DataPosition)
	}
	frame := func() int { return frameOverhead + newStrings + bytesField(body) }
	if count <= lim.MaxDictionaryEntries && strBytes <= lim.MaxDictionaryBytes && frame() <= lim.MaxFrameBytes {
		return nil
	}
	// Over a limit, unless some strings repeat: the dictionary holds, and
	// the frame carries, each string once.
	count, strBytes, newStrings = distinctStrings(env)
	switch {
	case count > lim.MaxDictionaryEntries:
		return fmt.Errorf("%w: %d distinct strings, dictionary limit %d", ErrInvalidEnvelope, count, lim.MaxDictionaryEntries)
	case strBytes > lim.MaxDictionaryBytes:
		return fmt.Errorf("%w: strings of %d bytes in all, dictionary limit %d", ErrTooLarge, strBytes, lim.MaxDictionaryBytes)
	case frame() > lim.MaxFrameBytes:
		return fmt.Errorf("%w: up to %d bytes encoded, frame limit %d", ErrTooLarge, frame(), lim.MaxFrameBytes)
	}
	return nil
}

// bytesField is the encoded size of a length-delimited field of n bytes.
func bytesField(n int) int { return 1 + protowire.SizeVarint(uint64(n)) + n }

// distinctStrings counts env's distinct non-empty strings, their bytes and
// their new_strings fields. It compares every pair, which the header limit
// bounds (4096 entries at most), and runs only for an envelope at a limit.
func distinctStrings(env *Envelope) (count, bytes, fields int) {
	str := func(i int) string {
		switch i {
		case 0:
			return env.Target
		case 1:
			return env.SenderAddress
		case 2:
			return env.SenderID
		case 3:
			return env.TypeName
		}
		return env.Header[i-4].Key
	}
	n := 4 + len(env.Header)
next:
	for i := range n {
		s := str(i)
		if s == "" {
			continue
		}
		for j := range i {
			if str(j) == s {
				continue next
			}
		}
		count++
		bytes += len(s)
		fields += bytesField(len(s))
	}
	return count, bytes, fields
}
