package serial

import (
	"errors"
	"fmt"
	"slices"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

// Serializer ids, numbered as protoactor-go numbers them, so that an
// envelope's SerializerID means the same on both kinds of node.
const (
	// ProtobufID is the id of Protobuf, the binary protobuf encoding.
	ProtobufID uint32 = 0
	// JSONID is the id of JSON, the protobuf JSON mapping.
	JSONID uint32 = 1
)

// Serializer turns messages into payload bytes and back. A Serializer must be
// safe for concurrent use: a Registry calls it from every goroutine that
// sends or receives.
type Serializer interface {
	// ID is the serializer's id: what an envelope's SerializerID says. It
	// must return the same value every time.
	ID() uint32
	// Append appends msg's encoding to dst and returns the extended slice.
	// On error it returns dst with its length unchanged; its spare capacity
	// may have been written.
	Append(dst []byte, msg proto.Message) ([]byte, error)
	// Decode fills msg, a new empty message of the payload's type, from
	// data. It must not keep data, nor let msg alias it: the caller reuses
	// data once Decode returns.
	Decode(data []byte, msg proto.Message) error
}

// vtMarshaler is the part of vtprotobuf's generated code (features size and
// marshal) that Protobuf's fast path uses.
type vtMarshaler interface {
	SizeVT() int
	MarshalToSizedBufferVT(dst []byte) (int, error)
}

// vtUnmarshaler is vtprotobuf's generated copying decoder (feature
// unmarshal).
type vtUnmarshaler interface {
	UnmarshalVT(data []byte) error
}

// vtAliasingUnmarshaler is vtprotobuf's decoder whose strings and bytes
// alias its input (feature unmarshal_unsafe): only
// Registry.UnmarshalAliasing uses it, for callers that own the input.
type vtAliasingUnmarshaler interface {
	UnmarshalVTUnsafe(data []byte) error
}

// errSizeChanged: the message changed between SizeVT and the encoding, which
// only a data race on the message does.
var errSizeChanged = errors.New("message size changed while it was encoded")

type protobufSerializer struct{}

// Protobuf returns the binary protobuf serializer, id ProtobufID (0).
//
// A message with vtprotobuf's generated methods is encoded with SizeVT and
// MarshalToSizedBufferVT straight into dst's spare capacity (dst grows only
// when that is too small) and decoded with UnmarshalVT. Any other message
// goes through proto.MarshalOptions{}.MarshalAppend and proto.Unmarshal. The
// two paths produce the same wire format, so either end may use either.
func Protobuf() Serializer { return protobufSerializer{} }

// ID returns ProtobufID.
func (protobufSerializer) ID() uint32 { return ProtobufID }

// Append appends msg's binary protobuf encoding to dst.
func (protobufSerializer) Append(dst []byte, msg proto.Message) ([]byte, error) {
	vt, ok := msg.(vtMarshaler)
	if !ok {
		out, err := proto.MarshalOptions{}.MarshalAppend(dst, msg)
		if err != nil {
			return dst, err
		}
		return out, nil
	}
	n := vt.SizeVT()
	dst = slices.Grow(dst, n)
	// MarshalToSizedBufferVT writes backwards from the end of the slice it
	// is given, so it must be given exactly n bytes.
	w, err := vt.MarshalToSizedBufferVT(dst[len(dst) : len(dst)+n])
	if err != nil {
		return dst, err
	}
	if w != n {
		return dst, fmt.Errorf("%w: %d bytes, then %d", errSizeChanged, n, w)
	}
	return dst[:len(dst)+n], nil
}

// Decode decodes data, binary protobuf, into msg.
func (protobufSerializer) Decode(data []byte, msg proto.Message) error {
	if vt, ok := msg.(vtUnmarshaler); ok {
		return vt.UnmarshalVT(data)
	}
	return proto.Unmarshal(data, msg)
}

type jsonSerializer struct{}

// JSON returns the protobuf JSON serializer, id JSONID (1), built on
// protojson with its default options. Decoding discards fields the message
// does not have, as protoactor-go's JSON serializer allows them, so that a
// newer sender's message still decodes. google.protobuf.Any values inside a
// message resolve their types in protoregistry.GlobalTypes, whatever the
// registry's WithTypes says.
//
// protojson's output is not byte-stable (it varies whitespace on purpose);
// compare decoded messages, never payloads.
func JSON() Serializer { return jsonSerializer{} }

// ID returns JSONID.
func (jsonSerializer) ID() uint32 { return JSONID }

// Append appends msg's protobuf JSON encoding to dst.
func (jsonSerializer) Append(dst []byte, msg proto.Message) ([]byte, error) {
	out, err := protojson.MarshalOptions{}.MarshalAppend(dst, msg)
	if err != nil {
		return dst, err
	}
	return out, nil
}

// Decode decodes data, protobuf JSON, into msg, discarding unknown fields.
func (jsonSerializer) Decode(data []byte, msg proto.Message) error {
	return protojson.UnmarshalOptions{DiscardUnknown: true}.Unmarshal(data, msg)
}
