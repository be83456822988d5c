package serial_test

import (
	"errors"
	"fmt"

	"github.com/courier-go/courier/batch"
	courierv1 "github.com/courier-go/courier/proto/courier/v1"
	"github.com/courier-go/courier/serial"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// A sender fills an envelope from a message; the receiver, in Deliver, turns
// the envelope back into a message it may keep.
func Example() {
	reg, err := serial.New()
	if err != nil {
		panic(err)
	}

	var env batch.Envelope
	env.Target = "greeter"
	if err := reg.Encode(&env, wrapperspb.String("hello"), serial.ProtobufID); err != nil {
		panic(err)
	}
	fmt.Println(env.TypeName, env.SerializerID)

	msg, err := reg.Decode(&env)
	if err != nil {
		panic(err)
	}
	fmt.Println(msg.(*wrapperspb.StringValue).GetValue())
	// Output:
	// google.protobuf.StringValue 0
	// hello
}

// Append reuses the caller's buffer: with a vtprotobuf message and enough
// capacity, encoding allocates nothing.
func ExampleRegistry_Append() {
	reg, _ := serial.New()
	buf := make([]byte, 0, 256)
	for i := range 3 {
		var name string
		var err error
		buf, name, err = reg.Append(buf[:0], &courierv1.Ack{Position: uint64(i + 1)}, serial.ProtobufID)
		if err != nil {
			panic(err)
		}
		msg, _ := reg.Unmarshal(name, serial.ProtobufID, buf)
		fmt.Println(name, msg.(*courierv1.Ack).GetPosition(), cap(buf))
	}
	// Output:
	// courier.v1.Ack 1 256
	// courier.v1.Ack 2 256
	// courier.v1.Ack 3 256
}

// The JSON serializer, id 1, decodes messages from senders that know fields
// the receiver does not.
func ExampleJSON() {
	reg, _ := serial.New()
	msg, err := reg.Unmarshal("courier.v1.Ack", serial.JSONID, []byte(`{"position": "7", "addedLater": true}`))
	if err != nil {
		panic(err)
	}
	fmt.Println(msg.(*courierv1.Ack).GetPosition())
	// Output:
	// 7
}

// A registry limited to the messages an application exchanges refuses every
// other type at both ends.
func ExampleWithTypes() {
	types := new(protoregistry.Types)
	if err := types.RegisterMessage((&wrapperspb.StringValue{}).ProtoReflect().Type()); err != nil {
		panic(err)
	}
	reg, _ := serial.New(serial.WithTypes(types))

	_, name, err := reg.Marshal(wrapperspb.String("allowed"), serial.ProtobufID)
	fmt.Println(name, err)
	_, _, err = reg.Marshal(wrapperspb.Int64(1), serial.ProtobufID)
	fmt.Println(errors.Is(err, serial.ErrUnknownType))
	_, err = reg.Unmarshal("google.protobuf.Int64Value", serial.ProtobufID, nil)
	fmt.Println(err)
	// Output:
	// google.protobuf.StringValue <nil>
	// true
	// serial: unknown type: "google.protobuf.Int64Value" (serializer 0)
}

// New checks every option and reports every problem at once.
func ExampleNew() {
	_, err := serial.New(serial.WithSerializer(serial.JSON()), serial.WithSerializer(serial.JSON()), serial.WithTypes(nil))
	fmt.Println(err)
	fmt.Println(errors.Is(err, serial.ErrDuplicate), errors.Is(err, serial.ErrInvalidOption))
	// Output:
	// serial: invalid option: WithTypes(nil)
	// serial: serializer id taken: 1 given twice
	// true true
}
