package batch_test

import (
	"fmt"

	"github.com/courier-go/courier/batch"
)

// A frame that arrives in pieces, as gRPC hands over a message larger than
// one HTTP/2 DATA frame, decodes without being joined first.
func ExampleDecoder_DecodeSegments() {
	enc, _ := batch.NewEncoder(batch.EncoderConfig{})
	for i := range 3 {
		env := batch.Envelope{Target: "counter", Payload: fmt.Appendf(nil, "tick %d", i)}
		if err := enc.Add(&env); err != nil {
			panic(err)
		}
	}
	frame, _ := enc.Flush()
	defer frame.Release()

	// Cut the frame into 8-byte pieces: most envelopes straddle a cut.
	var pieces [][]byte
	for b := frame.B; len(b) > 0; b = b[min(8, len(b)):] {
		pieces = append(pieces, b[:min(8, len(b))])
	}

	dec, _ := batch.NewDecoder(batch.DecoderConfig{})
	defer dec.Close()
	d, err := dec.DecodeSegments(pieces)
	if err != nil {
		panic(err)
	}
	fmt.Println(len(pieces) > 3, d.Kind)
	for _, e := range d.Envelopes {
		fmt.Printf("%s: %s\n", e.Target, e.Payload)
	}
	// Output:
	// true batch
	// counter: tick 0
	// counter: tick 1
	// counter: tick 2
}
