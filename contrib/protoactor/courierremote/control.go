package courierremote

import (
	"errors"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/courier-go/courier/batch"
	"github.com/courier-go/courier/serial"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoregistry"
)

// The adapter's protocol relies on two of the actor system's own messages:
// Terminated, which carries why a watched process ended, and
// DeadLetterResponse, which fails a peer's future at once instead of
// letting it time out. They must encode and decode whatever the configured
// registry knows: a registry narrowed to the application's types (see
// serial.WithTypes) would otherwise leave remote watchers without their
// Terminated and remote futures without their answer. The control
// registry knows them, and is used only when the configured one does not.

// isControl reports whether msg is one of the messages of the control
// registry.
func isControl(msg any) bool {
	switch msg.(type) {
	case *actor.Terminated, *actor.DeadLetterResponse:
		return true
	}
	return false
}

// controlRegistry returns a registry that knows the control messages.
func controlRegistry() (*serial.Registry, error) {
	types := new(protoregistry.Types)
	for _, m := range []proto.Message{(*actor.Terminated)(nil), (*actor.DeadLetterResponse)(nil)} {
		if err := types.RegisterMessage(m.ProtoReflect().Type()); err != nil {
			return nil, err
		}
	}
	return serial.New(serial.WithTypes(types))
}

// encodeControl is the fallback of an encoding of msg that failed with err:
// a control message the configured registry does not know is encoded by
// the control registry, as protobuf; anything else keeps err.
func (r *Remote) encodeControl(env *batch.Envelope, msg any, err error) error {
	if !errors.Is(err, serial.ErrUnknownType) || !isControl(msg) {
		return err
	}
	return r.ctl.Encode(env, msg, serial.ProtobufID)
}

// encodeWith is r.ser.Encode with the control fallback.
func (r *Remote) encodeWith(env *batch.Envelope, msg any, serializerID uint32) error {
	if err := r.ser.Encode(env, msg, serializerID); err != nil {
		return r.encodeControl(env, msg, err)
	}
	return nil
}

// decode is r.ser.Decode with the control fallback: a type name the
// configured registry does not know may be a control message's.
func (r *Remote) decode(env *batch.Envelope) (proto.Message, error) {
	msg, err := r.ser.Decode(env)
	return r.orControl(env, msg, err)
}

// orControl is the fallback of a decoding of env that gave msg and err:
// a type the configured registry does not know may be a control message's.
func (r *Remote) orControl(env *batch.Envelope, msg proto.Message, err error) (proto.Message, error) {
	if err != nil && errors.Is(err, serial.ErrUnknownType) {
		if m, cerr := r.ctl.Decode(env); cerr == nil {
			return m, nil
		}
	}
	return msg, err
}
