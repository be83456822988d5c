package wire

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/courier-go/courier/batch"
	courierv1 "github.com/courier-go/courier/proto/courier/v1"
)

// ProtocolVersion is the version of the wire protocol this code speaks.
const ProtocolVersion = 1

// HandshakeLimits bound the first frame of a stream, read before any limits
// are negotiated: a Hello or a Welcome is small.
var HandshakeLimits = batch.Limits{
	MaxFrameBytes:        16 << 10,
	MaxBatchEnvelopes:    1,
	MaxDictionaryEntries: 16,
	MaxDictionaryBytes:   1024,
	MaxStringBytes:       1024,
	MaxHeaderEntries:     1,
}

// Errors of the handshake. A refusal wraps ErrRefused and, through
// RefusedError, the sentinel of its reason.
var (
	// ErrRefused: the listener answered the Hello with a refusal.
	ErrRefused = errors.New("courier: refused by peer")
	// ErrVersion: the two sides speak different protocol versions.
	ErrVersion = errors.New("courier: protocol version mismatch")
	// ErrBlocked: the dialer's system id is on the listener's block list.
	ErrBlocked = errors.New("courier: system blocked")
	// ErrInvalidHello: a Hello is malformed.
	ErrInvalidHello = errors.New("courier: invalid hello")
	// ErrUnauthorized: the listener's authorisation refused the dialer.
	ErrUnauthorized = errors.New("courier: unauthorized")
	// ErrUnavailable: the listener is shutting down or at a limit. The one
	// refusal worth trying again.
	ErrUnavailable = errors.New("courier: peer unavailable")
	// ErrQuarantined: the listener gave up on the dialer's incarnation and
	// refuses it for good; only a restart, with a new incarnation, helps.
	ErrQuarantined = errors.New("courier: incarnation quarantined by peer")
	// ErrHandshake: the handshake did not complete: wrong first frame,
	// timeout (wrapping context.DeadlineExceeded too), or the stream failed.
	ErrHandshake = errors.New("courier: handshake failed")
)

// RefusedError is a refused handshake, on either side.
type RefusedError struct {
	Reason  courierv1.RefuseReason // why
	Message string                 // the refusing side's explanation
}

// Error says that, why and how the handshake was refused.
func (e *RefusedError) Error() string {
	return fmt.Sprintf("courier: refused (%s): %s", reasonName(e.Reason), e.Message)
}

// Unwrap returns ErrRefused and the sentinel of the reason.
func (e *RefusedError) Unwrap() []error {
	return []error{ErrRefused, reasonErr(e.Reason)}
}

func reasonErr(r courierv1.RefuseReason) error {
	switch r {
	case courierv1.RefuseReason_REFUSE_REASON_VERSION:
		return ErrVersion
	case courierv1.RefuseReason_REFUSE_REASON_BLOCKED:
		return ErrBlocked
	case courierv1.RefuseReason_REFUSE_REASON_UNAUTHORIZED:
		return ErrUnauthorized
	case courierv1.RefuseReason_REFUSE_REASON_UNAVAILABLE:
		return ErrUnavailable
	case courierv1.RefuseReason_REFUSE_REASON_QUARANTINED:
		return ErrQuarantined
	}
	// REFUSE_REASON_INVALID, or a reason from a newer protocol: final.
	return ErrInvalidHello
}

func reasonName(r courierv1.RefuseReason) string {
	switch r {
	case courierv1.RefuseReason_REFUSE_REASON_VERSION:
		return "version"
	case courierv1.RefuseReason_REFUSE_REASON_BLOCKED:
		return "blocked"
	case courierv1.RefuseReason_REFUSE_REASON_UNAUTHORIZED:
		return "unauthorized"
	case courierv1.RefuseReason_REFUSE_REASON_UNAVAILABLE:
		return "unavailable"
	case courierv1.RefuseReason_REFUSE_REASON_QUARANTINED:
		return "quarantined"
	}
	return "invalid"
}

// Refuse returns the RefusedError for reason and message.
func Refuse(reason courierv1.RefuseReason, format string, args ...any) *RefusedError {
	return &RefusedError{Reason: reason, Message: fmt.Sprintf(format, args...)}
}

// LaneFromProto converts a wire lane; ok is false for an invalid one.
func LaneFromProto(l courierv1.Lane) (batch.Lane, bool) {
	switch l {
	case courierv1.Lane_LANE_USER:
		return batch.LaneUser, true
	case courierv1.Lane_LANE_SYSTEM:
		return batch.LaneSystem, true
	}
	return 0, false
}

// LaneToProto converts a lane to the wire's.
func LaneToProto(l batch.Lane) courierv1.Lane {
	if l == batch.LaneSystem {
		return courierv1.Lane_LANE_SYSTEM
	}
	return courierv1.Lane_LANE_USER
}

// send encodes a control frame and sends it; the buffer passes to gRPC.
func send(s Stream, f *courierv1.Frame) error {
	buf, err := batch.EncodeControl(f)
	if err != nil {
		return err
	}
	return s.SendMsg(buf)
}

// Goodbye tells the peer the stream is closing on purpose. The caller must
// be the stream's only sender.
func Goodbye(s Stream, reason string) error {
	return send(s, &courierv1.Frame{Kind: &courierv1.Frame_Goodbye{Goodbye: &courierv1.Goodbye{Reason: reason}}})
}

// recvControl receives one frame and decodes it as a control frame of kind.
func recvControl(s Stream, kind batch.FrameKind) (*courierv1.Frame, error) {
	var in InFrame
	defer in.Free()
	if err := s.RecvMsg(&in); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrHandshake, err)
	}
	dec, err := batch.NewDecoder(batch.DecoderConfig{Limits: HandshakeLimits})
	if err != nil {
		return nil, err
	}
	d, err := dec.DecodeSegments(in.Segments())
	if err != nil {
		return nil, fmt.Errorf("%w: first frame: %w", ErrHandshake, err)
	}
	if d.Kind != kind {
		return nil, fmt.Errorf("%w: first frame is a %v, want a %v", ErrHandshake, d.Kind, kind)
	}
	return d.Control, nil
}

// Dial performs the dialer's side of the handshake on a new stream: it
// sends hello and waits for the Welcome. A refusal returns a *RefusedError.
// The caller bounds the wait with the stream's context.
func Dial(s Stream, hello *courierv1.Hello) (*courierv1.Welcome, error) {
	if err := send(s, &courierv1.Frame{Kind: &courierv1.Frame_Hello{Hello: hello}}); err != nil {
		return nil, fmt.Errorf("%w: sending hello: %w", ErrHandshake, err)
	}
	f, err := recvControl(s, batch.FrameWelcome)
	if err != nil {
		return nil, err
	}
	w := f.GetWelcome()
	if !w.GetAccepted() {
		return nil, &RefusedError{Reason: w.GetRefuseReason(), Message: w.GetMessage()}
	}
	if w.GetProtocolVersion() != ProtocolVersion {
		return nil, fmt.Errorf("%w: welcome speaks version %d", ErrVersion, w.GetProtocolVersion())
	}
	return w, nil
}

// Accept performs the listener's side of the handshake: it waits up to
// timeout for the Hello and passes it to check, which returns the Welcome
// to send or a *RefusedError. A refusal is sent to the dialer and returned.
func Accept(ctx context.Context, s Stream, timeout time.Duration, check func(*courierv1.Hello) (*courierv1.Welcome, error)) (*courierv1.Hello, *courierv1.Welcome, error) {
	type result struct {
		f   *courierv1.Frame
		err error
	}
	got := make(chan result, 1)
	// RecvMsg has no deadline of its own; the caller returning from the
	// handler on timeout ends the stream, and with it this goroutine.
	go func() {
		f, err := recvControl(s, batch.FrameHello)
		got <- result{f, err}
	}()
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	var r result
	select {
	case r = <-got:
	case <-timer.C:
		return nil, nil, fmt.Errorf("%w: no hello within %v: %w", ErrHandshake, timeout, context.DeadlineExceeded)
	case <-ctx.Done():
		return nil, nil, fmt.Errorf("%w: %w", ErrHandshake, ctx.Err())
	}
	if r.err != nil {
		return nil, nil, r.err
	}
	hello := r.f.GetHello()
	welcome, err := check(hello)
	var refused *RefusedError
	if errors.As(err, &refused) {
		welcome = &courierv1.Welcome{Accepted: false, RefuseReason: refused.Reason, Message: refused.Message, ProtocolVersion: ProtocolVersion}
	} else if err != nil {
		return hello, nil, err
	}
	welcome.ProtocolVersion = ProtocolVersion
	if serr := send(s, &courierv1.Frame{Kind: &courierv1.Frame_Welcome{Welcome: welcome}}); serr != nil && err == nil {
		return hello, nil, fmt.Errorf("%w: sending welcome: %w", ErrHandshake, serr)
	}
	return hello, welcome, err
}

// Node is what a node states about itself in a handshake: who it is, where
// peers reach it, and the limits it works within.
type Node struct {
	SystemID    string
	Incarnation uint64
	Address     string
	Limits      batch.Limits
}

// NewHello returns the Hello with which n opens a stream of lane.
func NewHello(n Node, lane batch.Lane) *courierv1.Hello {
	return &courierv1.Hello{
		ProtocolVersion: ProtocolVersion,
		SystemId:        n.SystemID,
		Incarnation:     n.Incarnation,
		Address:         n.Address,
		Lane:            LaneToProto(lane),
		Limits:          n.Limits.Proto(),
	}
}

// NewWelcome returns the Welcome with which n accepts hello: the limits
// of the stream are the smaller of the two sides' (see Negotiated).
func NewWelcome(n Node, hello *courierv1.Hello) *courierv1.Welcome {
	return &courierv1.Welcome{
		Accepted:    true,
		SystemId:    n.SystemID,
		Incarnation: n.Incarnation,
		Address:     n.Address,
		Limits:      Negotiated(hello.GetLimits(), n.Limits).Proto(),
	}
}

// Negotiated returns the limits a stream works within, given the other
// side's as the handshake states them and this side's own: each the
// smaller, a field the other side left at zero taking this side's.
func Negotiated(theirs *courierv1.Limits, own batch.Limits) batch.Limits {
	return batch.LimitsFromProto(theirs, own).Min(own)
}

// CheckHello validates the fields every Hello must have and the protocol
// version; it returns a *RefusedError or nil.
func CheckHello(h *courierv1.Hello) error {
	switch {
	case h.GetProtocolVersion() != ProtocolVersion:
		return Refuse(courierv1.RefuseReason_REFUSE_REASON_VERSION, "speaks version %d, this node %d", h.GetProtocolVersion(), ProtocolVersion)
	case h.GetSystemId() == "":
		return Refuse(courierv1.RefuseReason_REFUSE_REASON_INVALID, "no system id")
	case h.GetIncarnation() == 0:
		return Refuse(courierv1.RefuseReason_REFUSE_REASON_INVALID, "no incarnation")
	}
	if _, ok := LaneFromProto(h.GetLane()); !ok {
		return Refuse(courierv1.RefuseReason_REFUSE_REASON_INVALID, "invalid lane %v", h.GetLane())
	}
	return nil
}
