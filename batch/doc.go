// Package batch is the second stage of courier's pipeline: it turns a run of
// envelopes into one wire frame, and a received frame back into envelopes.
//
// An Encoder belongs to one outbound stream and a Decoder to one inbound
// stream; neither is safe for concurrent use, and neither starts goroutines
// or touches the network.
//
// # Frames
//
// A frame is a flags byte followed by a protobuf-encoded courier.v1.Frame
// (see proto/courier/v1/courier.proto), S2-compressed when the flags say so.
// The Encoder writes a batch frame in one pass at Flush, straight from the
// envelopes it was given, into a pooled buffer sized to the byte: the bytes
// protobuf's marshal makes of the message, without building the message.
// Control frames go through the vtproto-generated marshaller. The Decoder
// parses batch frames in one pass straight into Envelope values: it checks
// every limit before it allocates or trusts anything, resolves dictionary
// ids, and takes no heap memory per envelope. Any input either decodes or fails with an error that
// wraps one of this package's sentinels; no input makes it panic.
//
// A frame larger than one HTTP/2 DATA frame reaches gRPC's codec in 16 KiB
// pieces. DecodeSegments decodes it as it is: envelopes alias the pieces,
// and only a field that straddles two of them is copied, so the frame is
// never copied whole into one buffer.
//
// # Dictionary
//
// Strings that repeat (process ids, addresses, type names, header keys)
// travel once per stream and then as small integer ids. The Encoder keeps
// the map from string to id; in front of it sits a small cache keyed by the
// string's address, so that the strings an application sends again and
// again (its type names, the process ids it holds) cost a pointer compare.
// Both sides bound the dictionary by Limits; a sender that would exceed them
// starts the next frame with a reset.
//
// # Lifetimes
//
// Decoded payloads and header values alias the frame's bytes, and the
// envelopes themselves live in the Decoder: all of it is valid until the
// next call to Decode, DecodeSegments or Release on the same Decoder, and no
// longer. Envelope.Clone
// makes an owned copy. Dictionary strings (targets, senders, type names,
// header keys) are owned by the Decoder and outlive the frame.
//
// # Allocation
//
// In steady state, with a warm dictionary, Encoder.Add, Decoder.Decode and
// Decoder.DecodeSegments make no heap allocation per envelope and none per
// frame: frame buffers come
// from size-classed pools. A string seen for the first time on a stream costs
// one allocation on each side (its dictionary entry).
package batch
