package serial

import "errors"

// Errors returned by Registry and New. Each error a Registry returns wraps
// exactly one of these, and its message says which type name and serializer
// id were involved; New reports every problem at once, so its error may wrap
// several. Compare with errors.Is.
var (
	// ErrUnknownSerializer: no serializer of the registry has that id.
	ErrUnknownSerializer = errors.New("serial: unknown serializer")
	// ErrUnknownType: at the receiver, the type name resolves to no message
	// type; at the sender, the message's type is not among the registry's
	// types (see WithTypes).
	ErrUnknownType = errors.New("serial: unknown type")
	// ErrUnsupported: the value is not a proto.Message, or is nil (an
	// untyped nil or a nil pointer).
	ErrUnsupported = errors.New("serial: unsupported message")
	// ErrDecode: the serializer failed on the payload's bytes. The error
	// wraps the serializer's error too.
	ErrDecode = errors.New("serial: cannot decode payload")
	// ErrEncode: the serializer failed on the message. The error wraps the
	// serializer's error too.
	ErrEncode = errors.New("serial: cannot encode message")
	// ErrDuplicate: New was given two serializers with the same id.
	ErrDuplicate = errors.New("serial: serializer id taken")
	// ErrInvalidOption: New was given a nil Option, a nil Serializer or a
	// nil TypeResolver.
	ErrInvalidOption = errors.New("serial: invalid option")
)
