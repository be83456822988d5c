package batch

import (
	"bytes"
	"strconv"
	"strings"
)

// Lane is the lane an envelope travels on.
type Lane uint8

const (
	// LaneUser carries application messages: batched, bounded, and subject to
	// the overflow policy when a peer is slow.
	LaneUser Lane = iota
	// LaneSystem carries watch, unwatch, terminated, stop and other system
	// messages on a stream of their own; they are never dropped for
	// backpressure.
	LaneSystem
)

// String returns "user" or "system".
func (l Lane) String() string {
	switch l {
	case LaneUser:
		return "user"
	case LaneSystem:
		return "system"
	}
	return "lane(" + strconv.FormatUint(uint64(l), 10) + ")"
}

// SystemKind names the system messages the transport itself understands. Its
// values are those of the wire's courier.v1.SystemKind.
type SystemKind uint8

const (
	// KindNone is a user envelope, or a system envelope the transport does
	// not interpret.
	KindNone SystemKind = iota
	// KindWatch: the sender starts watching the target.
	KindWatch
	// KindUnwatch: the sender stops watching the target.
	KindUnwatch
	// KindTerminated: the process named by the sender has terminated.
	KindTerminated
	// KindStop: the target is asked to stop.
	KindStop
)

// String returns the kind's name.
func (k SystemKind) String() string {
	switch k {
	case KindNone:
		return "none"
	case KindWatch:
		return "watch"
	case KindUnwatch:
		return "unwatch"
	case KindTerminated:
		return "terminated"
	case KindStop:
		return "stop"
	}
	return "kind(" + strconv.FormatUint(uint64(k), 10) + ")"
}

// Header is one key/value entry of an envelope's header. Keys are interned in
// the stream dictionary; values travel as they are.
type Header struct {
	Key   string
	Value string
}

// Envelope is the unit that flows through the whole pipeline: one message
// from a process on one node to a process on another.
//
// An Envelope returned by a Decoder aliases memory the Decoder reuses: its
// Payload and header values point into the frame, and its Header slice into
// the Decoder. They are valid until the next Decode on that Decoder. Use
// Clone to keep an envelope longer.
type Envelope struct {
	// Target is the id of the receiving process on the receiving node.
	// Interned.
	Target string
	// RequestID correlates a request with its response; 0 when none.
	RequestID uint64
	// SenderAddress is the node address of the sending process; empty means
	// the sending node itself. Interned.
	SenderAddress string
	// SenderID is the id of the sending process; empty when there is none.
	// Interned.
	SenderID string
	// TypeName names the payload's type, for the receiver's deserializer.
	// Interned.
	TypeName string
	// Payload is the serialized message.
	Payload []byte
	// Header is small key/value metadata, nil when there is none.
	Header []Header
	// DataPosition, for KindTerminated, is the number of user-lane envelopes
	// the sender had sent to the peer when it sent this one; the transport
	// sets it.
	DataPosition uint64
	// SerializerID says which serializer encoded Payload; its meaning is the
	// embedder's. (It sits with the small fields below, so that an envelope
	// takes 136 bytes, not 144: a queue slot holds one.)
	SerializerID uint32
	// Lane is the lane the envelope travels on. It is not encoded: a stream
	// carries one lane, and the Decoder sets it.
	Lane Lane
	// Kind is the system kind of a system-lane envelope.
	Kind SystemKind
}

// Clone returns a deep copy of e that shares no memory with it, safe to keep
// after the Decoder that produced e has moved on.
func (e *Envelope) Clone() Envelope {
	c := *e
	c.Target = strings.Clone(e.Target)
	c.SenderAddress = strings.Clone(e.SenderAddress)
	c.SenderID = strings.Clone(e.SenderID)
	c.TypeName = strings.Clone(e.TypeName)
	if e.Payload != nil {
		c.Payload = bytes.Clone(e.Payload)
	}
	if e.Header != nil {
		c.Header = make([]Header, len(e.Header))
		for i, h := range e.Header {
			c.Header[i] = Header{Key: strings.Clone(h.Key), Value: strings.Clone(h.Value)}
		}
	}
	return c
}

// Equal reports whether e and o carry the same values. A nil and an empty
// Payload or Header are equal.
func (e *Envelope) Equal(o *Envelope) bool {
	if e.Target != o.Target || e.RequestID != o.RequestID || e.SenderAddress != o.SenderAddress ||
		e.SenderID != o.SenderID || e.TypeName != o.TypeName || e.SerializerID != o.SerializerID ||
		!bytes.Equal(e.Payload, o.Payload) || e.Lane != o.Lane || e.Kind != o.Kind ||
		e.DataPosition != o.DataPosition || len(e.Header) != len(o.Header) {
		return false
	}
	for i := range e.Header {
		if e.Header[i] != o.Header[i] {
			return false
		}
	}
	return true
}
