package serial

import (
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
)

// TypeResolver finds message types by full name. *protoregistry.Types
// satisfies it, protoregistry.GlobalTypes among them. It must be safe for
// concurrent use.
type TypeResolver interface {
	FindMessageByName(protoreflect.FullName) (protoreflect.MessageType, error)
}

// An Option configures a Registry in New.
type Option interface{ apply(*options) }

type optionFunc func(*options)

func (f optionFunc) apply(o *options) { f(o) }

// options is what New reads; the Options only record, New validates.
type options struct {
	serializers []Serializer
	types       TypeResolver
}

func defaultOptions() options {
	return options{types: protoregistry.GlobalTypes}
}

// WithSerializer adds s to the registry under s.ID(). The default registry
// holds Protobuf (id 0) and JSON (id 1); a serializer with id 0 or 1 replaces
// that default. Any uint32 is a valid id, but two WithSerializer options with
// the same id make New fail with ErrDuplicate, and a nil s with
// ErrInvalidOption.
func WithSerializer(s Serializer) Option {
	return optionFunc(func(o *options) { o.serializers = append(o.serializers, s) })
}

// WithTypes sets the resolver of message types, by default
// protoregistry.GlobalTypes: every generated message linked into the
// program. A narrower resolver, such as a *protoregistry.Types holding only
// the messages an actor system exchanges, refuses every other type with
// ErrUnknownType at both ends: Append and TypeName will not send it, and
// Unmarshal will not decode it. The resolver's answers for a name are
// cached once found, so types it learns later are seen but a type it has
// answered for cannot change. A nil t makes New fail with ErrInvalidOption;
// of several WithTypes options, the last wins.
func WithTypes(t TypeResolver) Option {
	return optionFunc(func(o *options) { o.types = t })
}
