package wire

import (
	"testing"

	"github.com/courier-go/courier/batch"
)

func TestHelloAndWelcome(t *testing.T) {
	dialerLimits := batch.DefaultLimits()
	dialerLimits.MaxFrameBytes = 64 << 10
	dialer := Node{SystemID: "a", Incarnation: 7, Address: "127.0.0.1:1", Limits: dialerLimits}
	hello := NewHello(dialer, batch.LaneSystem)
	if err := CheckHello(hello); err != nil {
		t.Fatalf("a Hello NewHello made fails CheckHello: %v", err)
	}
	if lane, _ := LaneFromProto(hello.GetLane()); lane != batch.LaneSystem || hello.GetSystemId() != "a" ||
		hello.GetIncarnation() != 7 || hello.GetAddress() != "127.0.0.1:1" {
		t.Fatalf("hello %v", hello)
	}
	listener := Node{SystemID: "b", Incarnation: 9, Address: "127.0.0.1:2", Limits: batch.DefaultLimits()}
	w := NewWelcome(listener, hello)
	if !w.GetAccepted() || w.GetSystemId() != "b" || w.GetIncarnation() != 9 || w.GetAddress() != "127.0.0.1:2" {
		t.Fatalf("welcome %v", w)
	}
	// Both sides settle on the smaller limits, whichever side computes them.
	got := Negotiated(w.GetLimits(), dialerLimits)
	if got.MaxFrameBytes != 64<<10 || got != Negotiated(hello.GetLimits(), listener.Limits) {
		t.Fatalf("the two sides negotiated %+v and %+v", got, Negotiated(hello.GetLimits(), listener.Limits))
	}
}
