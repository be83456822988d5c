package serial

import (
	"errors"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/courier-go/courier/batch"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
)

// Registry maps serializer ids to serializers and type names to message
// types. It is immutable after New, apart from its caches, and safe for
// concurrent use. The zero Registry is not usable; create one with New.
type Registry struct {
	types       TypeResolver
	serializers map[uint32]Serializer // read-only after New: no lock needed

	// byName caches, for Unmarshal, the type of every name the resolver
	// found: string → *typeEntry. Keys are owned copies, never the caller's
	// string, which may alias a network buffer.
	byName sync.Map
	// byDesc caches, for the sending side, the descriptors of the messages
	// whose names the resolver found: protoreflect.MessageDescriptor →
	// *nameEntry. Descriptors are pointers, so a lookup hashes one word.
	byDesc sync.Map
	// byType caches the same by Go type: reflect.Type → *lastType. last is
	// the entry the sending side used last: a sender of one type at a time,
	// the common case, skips protobuf's reflection and the map lookup.
	// Entries are made once per type, so switching types allocates nothing.
	byType sync.Map
	last   atomic.Pointer[lastType]
	// lastName is the entry the receiving side looked up last: a stream
	// of one type, the common case, skips the map and the hashing of the
	// name.
	lastName atomic.Pointer[typeEntry]
}

type lastType struct {
	t    reflect.Type
	name string
}

// typeEntry is what byName holds for a type name.
type typeEntry struct {
	name string // an owned copy
	mt   protoreflect.MessageType
	// elem is the struct type of the messages UnmarshalAliasing carves
	// from slabs, perSlab at a time; nil when the type's messages are not
	// generated structs with vtprotobuf's aliasing decoder, or too big.
	elem    reflect.Type
	array   reflect.Type // [perSlab]elem
	perSlab int
	slab    atomic.Pointer[slab]
}

// slab is an array of zero messages handed out one at a time.
type slab struct {
	items reflect.Value // an addressable [perSlab]elem
	next  atomic.Int64  // the index of the next item to hand out
}

// slabBytes is the most memory a slab takes: a decoded message may keep
// this much of its neighbours' alive, on top of the payload chunk it
// aliases.
const slabBytes = 4 << 10

func newTypeEntry(name string, mt protoreflect.MessageType) *typeEntry {
	e := &typeEntry{name: name, mt: mt}
	zero := mt.Zero().Interface()
	t := reflect.TypeOf(zero)
	if _, vt := zero.(vtAliasingUnmarshaler); vt && t.Kind() == reflect.Pointer && t.Elem().Kind() == reflect.Struct {
		if n := slabBytes / max(int(t.Elem().Size()), 1); n >= 2 {
			e.elem, e.array, e.perSlab = t.Elem(), reflect.ArrayOf(n, t.Elem()), n
		}
	}
	return e
}

// newAliasing returns a new zero message of the entry's type, carved from
// a slab when the type has them: one allocation per perSlab messages
// instead of one each. Slabs are shared by every goroutine without a lock.
func (e *typeEntry) newAliasing() proto.Message {
	if e.elem == nil {
		return e.mt.New().Interface()
	}
	for {
		s := e.slab.Load()
		if s != nil {
			if i := s.next.Add(1) - 1; i < int64(e.perSlab) {
				return s.items.Index(int(i)).Addr().Interface().(proto.Message)
			}
		}
		fresh := &slab{items: reflect.New(e.array).Elem()}
		fresh.next.Store(1)
		if e.slab.CompareAndSwap(s, fresh) {
			return fresh.items.Index(0).Addr().Interface().(proto.Message)
		}
	}
}

type nameEntry struct{ name string }

// New returns a registry holding Protobuf and JSON, and the serializers and
// resolver the options give. It validates every option and reports every
// problem at once: a nil Option, Serializer or TypeResolver
// (ErrInvalidOption) and ids given twice (ErrDuplicate).
func New(opts ...Option) (*Registry, error) {
	o := defaultOptions()
	var errs []error
	for i, opt := range opts {
		if opt == nil {
			errs = append(errs, fmt.Errorf("%w: option %d is nil", ErrInvalidOption, i))
			continue
		}
		opt.apply(&o)
	}
	r := &Registry{
		types:       o.types,
		serializers: map[uint32]Serializer{ProtobufID: Protobuf(), JSONID: JSON()},
	}
	if o.types == nil {
		errs = append(errs, fmt.Errorf("%w: WithTypes(nil)", ErrInvalidOption))
	}
	given := make(map[uint32]bool, len(o.serializers))
	for _, s := range o.serializers {
		if s == nil {
			errs = append(errs, fmt.Errorf("%w: WithSerializer(nil)", ErrInvalidOption))
			continue
		}
		id := s.ID()
		if given[id] {
			errs = append(errs, fmt.Errorf("%w: %d given twice", ErrDuplicate, id))
			continue
		}
		given[id] = true
		r.serializers[id] = s
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return r, nil
}

// Serializer returns the registry's serializer with the given id.
func (r *Registry) Serializer(id uint32) (Serializer, bool) {
	s, ok := r.serializers[id]
	return s, ok
}

// TypeName returns msg's protobuf full name, the name Unmarshal takes. It
// fails with ErrUnsupported if msg is not a proto.Message or is nil (a nil
// pointer too), and with ErrUnknownType if the registry's resolver does not
// know the type. For one type it returns the same string every time.
func (r *Registry) TypeName(msg any) (string, error) {
	_, name, err := r.message(msg)
	return name, err
}

// Append appends msg's encoding by the serializer with id serializerID to dst
// and returns the extended slice and msg's type name. With a vtprotobuf
// message and enough spare capacity in dst, Protobuf makes no allocation at
// all. On error, out is dst with its length unchanged and typeName is empty;
// the error wraps ErrUnsupported, ErrUnknownType, ErrUnknownSerializer or
// ErrEncode.
func (r *Registry) Append(dst []byte, msg any, serializerID uint32) (out []byte, typeName string, err error) {
	m, name, err := r.message(msg)
	if err != nil {
		return dst, "", fmt.Errorf("%w (serializer %d)", err, serializerID)
	}
	s, ok := r.serializers[serializerID]
	if !ok {
		return dst, "", fmt.Errorf("%w: %d (type %s)", ErrUnknownSerializer, serializerID, quote(name))
	}
	out, err = s.Append(dst, m)
	if err != nil {
		return dst, "", fmt.Errorf("%w: %s (serializer %d): %w", ErrEncode, quote(name), serializerID, err)
	}
	return out, name, nil
}

// Marshal is Append(nil, msg, serializerID): it returns a new payload.
func (r *Registry) Marshal(msg any, serializerID uint32) (payload []byte, typeName string, err error) {
	return r.Append(nil, msg, serializerID)
}

// Unmarshal decodes data, encoded by the serializer with id serializerID,
// into a new message of the type named typeName and returns it. The message
// never aliases data, and typeName is not kept, so both may alias a frame
// that is about to be reused. The error wraps ErrUnknownSerializer,
// ErrUnknownType or ErrDecode.
//
// Beyond the decoding itself, a type seen before costs no lock and no
// allocation.
func (r *Registry) Unmarshal(typeName string, serializerID uint32, data []byte) (proto.Message, error) {
	s, ok := r.serializers[serializerID]
	if !ok {
		return nil, fmt.Errorf("%w: %d (type %s)", ErrUnknownSerializer, serializerID, quote(typeName))
	}
	mt, err := r.messageType(typeName)
	if err != nil {
		return nil, fmt.Errorf("%w (serializer %d)", err, serializerID)
	}
	msg := mt.New().Interface()
	if err := s.Decode(data, msg); err != nil {
		return nil, fmt.Errorf("%w: %s (serializer %d): %w", ErrDecode, quote(typeName), serializerID, err)
	}
	return msg, nil
}

// UnmarshalAliasing is Unmarshal for a caller that owns data and leaves it
// unchanged for as long as the message lives: with the protobuf
// serializer, a message with vtprotobuf's unmarshal_unsafe methods is
// decoded by them, and its string and bytes fields alias data instead of
// being copied, which saves an allocation per such field, and the message
// itself is carved from a slab of its type (at most 4 KiB, shared with the
// messages decoded around it), which saves the allocation of the message:
// the memory of a slab is freed when none of its messages is referenced.
// Any other message, or serializer, decodes as with Unmarshal. data must
// not alias a buffer that is reused, such as a frame's.
func (r *Registry) UnmarshalAliasing(typeName string, serializerID uint32, data []byte) (proto.Message, error) {
	s, ok := r.serializers[serializerID]
	if _, builtin := s.(protobufSerializer); !ok || !builtin {
		return r.Unmarshal(typeName, serializerID, data)
	}
	e, err := r.typeEntry(typeName)
	if err != nil {
		return nil, fmt.Errorf("%w (serializer %d)", err, serializerID)
	}
	msg := e.newAliasing()
	vt, ok := msg.(vtAliasingUnmarshaler)
	if !ok {
		err = s.Decode(data, msg)
	} else {
		err = vt.UnmarshalVTUnsafe(data)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %s (serializer %d): %w", ErrDecode, quote(typeName), serializerID, err)
	}
	return msg, nil
}

// Encode serializes msg into env with the serializer with id serializerID:
// it sets env.TypeName, env.SerializerID and env.Payload, a new slice, which
// the envelope owns from then on. On error env is left as it was.
func (r *Registry) Encode(env *batch.Envelope, msg any, serializerID uint32) error {
	payload, name, err := r.Marshal(msg, serializerID)
	if err != nil {
		return err
	}
	env.TypeName, env.SerializerID, env.Payload = name, serializerID, payload
	return nil
}

// Decode is Unmarshal(env.TypeName, env.SerializerID, env.Payload). The
// message it returns stays valid after the envelope's frame is reused.
func (r *Registry) Decode(env *batch.Envelope) (proto.Message, error) {
	return r.Unmarshal(env.TypeName, env.SerializerID, env.Payload)
}

// message checks that msg is a non-nil proto.Message whose type the resolver
// knows, and returns it with its type name.
func (r *Registry) message(msg any) (proto.Message, string, error) {
	m, ok := msg.(proto.Message)
	if !ok {
		return nil, "", fmt.Errorf("%w: %T", ErrUnsupported, msg)
	}
	t := reflect.TypeOf(msg)
	e := r.last.Load()
	if e == nil || e.t != t {
		v, ok := r.byType.Load(t)
		if !ok {
			_, name, err := r.resolveMessage(m)
			if err != nil {
				return nil, "", err
			}
			v, _ = r.byType.LoadOrStore(t, &lastType{t: t, name: name})
		}
		e = v.(*lastType)
		r.last.Store(e)
	}
	if v := reflect.ValueOf(msg); v.Kind() == reflect.Pointer && v.IsNil() {
		return nil, "", fmt.Errorf("%w: nil %T", ErrUnsupported, msg)
	}
	return m, e.name, nil
}

// resolveMessage is message without the last-type cache.
func (r *Registry) resolveMessage(m proto.Message) (proto.Message, string, error) {
	pm := m.ProtoReflect()
	if !pm.IsValid() {
		// A nil pointer encodes as an empty message, which the receiver
		// would decode as a non-nil one: refuse it rather than change it.
		return nil, "", fmt.Errorf("%w: nil %T", ErrUnsupported, m)
	}
	desc := pm.Descriptor()
	if e, ok := r.byDesc.Load(desc); ok {
		return m, e.(*nameEntry).name, nil
	}
	name := string(desc.FullName())
	if _, err := r.messageType(name); err != nil {
		return nil, "", err
	}
	e, _ := r.byDesc.LoadOrStore(desc, &nameEntry{name: name})
	return m, e.(*nameEntry).name, nil
}

// messageType resolves typeName, through the cache when it can. Only names
// that resolve are cached, so that made-up names cannot grow it.
func (r *Registry) messageType(typeName string) (protoreflect.MessageType, error) {
	e, err := r.typeEntry(typeName)
	if err != nil {
		return nil, err
	}
	return e.mt, nil
}

// typeEntry returns the cached entry of typeName, resolving it on the
// first lookup.
func (r *Registry) typeEntry(typeName string) (*typeEntry, error) {
	if e := r.lastName.Load(); e != nil && e.name == typeName {
		return e, nil
	}
	if e, ok := r.byName.Load(typeName); ok {
		r.lastName.Store(e.(*typeEntry))
		return e.(*typeEntry), nil
	}
	name := protoreflect.FullName(typeName)
	if !name.IsValid() {
		return nil, fmt.Errorf("%w: %s is not a valid name", ErrUnknownType, quote(typeName))
	}
	mt, err := r.types.FindMessageByName(name)
	switch {
	case errors.Is(err, protoregistry.NotFound) || (err == nil && mt == nil):
		return nil, fmt.Errorf("%w: %s", ErrUnknownType, quote(typeName))
	case err != nil:
		return nil, fmt.Errorf("%w: %s: %w", ErrUnknownType, quote(typeName), err)
	}
	owned := strings.Clone(typeName)
	e, _ := r.byName.LoadOrStore(owned, newTypeEntry(owned, mt))
	return e.(*typeEntry), nil
}

// maxNameInError bounds how much of a type name an error quotes: names come
// from the network, and an error must not copy a megabyte of one.
const maxNameInError = 128

// quote quotes name for an error message, cut to maxNameInError bytes.
func quote(name string) string {
	if len(name) <= maxNameInError {
		return strconv.Quote(name)
	}
	return strconv.Quote(name[:maxNameInError]) + "... (" + strconv.Itoa(len(name)) + " bytes)"
}
