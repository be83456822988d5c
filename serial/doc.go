// Package serial turns application messages into envelope payloads and back:
// a registry of serializers, numbered as protoactor-go numbers them (0 is
// protobuf, 1 is JSON), over a resolver of protobuf message types.
//
// serial is not a stage of courier's pipeline but sits at its two ends. A
// sender calls Registry.Encode (or Append) before Send; it fills an
// envelope's TypeName, SerializerID and Payload. A receiver calls
// Registry.Decode in Deliver; it looks the type name up, makes a new message
// of that type and decodes the payload into it. Nothing here knows of
// goroutines, streams or the network, and any protobuf message works: the
// messages need not be courier's.
//
// # Invariants
//
//   - A message decoded by Unmarshal or Decode never aliases the bytes it was
//     decoded from. A received payload aliases its frame and is valid only
//     until Deliver returns; the message outlives it.
//   - Every error a Registry returns wraps exactly one of the package's
//     sentinels (and, for ErrDecode and ErrEncode, the serializer's own error
//     too); compare with errors.Is. No input bytes make Unmarshal panic.
//   - The type names a registry accepts, at both ends, are those its
//     TypeResolver knows: a sender cannot send a type its own registry would
//     refuse to decode.
//   - TypeName returns the same string, backed by the same memory, for every
//     message of one type, so that the batch encoder's dictionary, which
//     caches strings by address, finds it with a pointer compare.
//
// # Concurrency and cost
//
// A Registry is immutable after New and safe for concurrent use. Its hot
// path takes no lock and makes no heap allocation of its own: type lookups go
// through two lock-free caches, one keyed by message descriptor for the
// sending side and one keyed by type name for the receiving side, filled on
// first use. Only names that resolve are cached, so the caches are bounded by
// the number of real types and a peer that sends made-up names cannot grow
// them. The cost of a message is then its serializer's: Protobuf uses the
// methods that vtprotobuf generates when a message has them, and appends
// into the spare capacity of the caller's buffer.
package serial
