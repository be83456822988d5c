package reader

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/courier-go/courier/batch"
	"github.com/courier-go/courier/internal/wire"
	courierv1 "github.com/courier-go/courier/proto/courier/v1"
	"github.com/courier-go/courier/proto/courier/v1/transportv1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Errors of the receive loop. Each error Receive returns wraps one of these
// or a batch decoding sentinel.
var (
	// ErrGoodbye: the peer closed the stream on purpose.
	ErrGoodbye = errors.New("reader: peer said goodbye")
	// ErrProtocol: the peer sent a frame that is well formed but not
	// allowed here, such as a second Hello, a batch that breaks the lane's
	// numbering or an envelope its lane does not allow.
	ErrProtocol = errors.New("reader: protocol violation")
	// ErrInvalidEnvelope: a batch holds an envelope its lane does not allow:
	// one without a target, or of a system kind that does not belong to the
	// lane (see the package doc). It wraps ErrProtocol.
	ErrInvalidEnvelope = fmt.Errorf("%w: invalid envelope", ErrProtocol)
	// ErrBadPosition: a batch's positions break the lane's numbering (see
	// the package doc); the error is a *PositionError. It wraps ErrProtocol.
	ErrBadPosition = fmt.Errorf("%w: bad position", ErrProtocol)
	// ErrHandlerPanic: the delivery handler panicked; the stream is closed.
	ErrHandlerPanic = errors.New("reader: handler panicked")
	// ErrSuperseded: a newer stream of the same peer and lane took over.
	ErrSuperseded = errors.New("reader: superseded by a newer stream")
	// ErrQuarantined: this node gave up on the peer incarnation (its
	// endpoint terminated, or the peer restarted); nothing more from it is
	// delivered.
	ErrQuarantined = errors.New("reader: peer incarnation quarantined")
)

// Peer identifies the node at the other end of a stream, as its Hello or
// Welcome stated it.
type Peer struct {
	// SystemID is the peer's system id.
	SystemID string
	// Address is where the peer listens, or, for a client-only peer, the
	// address this node gave it (see the manager's documentation).
	Address string
	// Incarnation is the peer's random start-up number.
	Incarnation uint64
}

// pad keeps the counters off other cache lines.
type pad [128]byte

// Counters are a stream's receive statistics. Only the receive loop writes
// them.
type Counters struct {
	_ pad
	// Frames counts frames received, of every kind.
	Frames atomic.Uint64
	// BytesIn counts the bytes of every frame received.
	BytesIn atomic.Uint64
	// Delivered counts envelopes handed to the handler.
	Delivered atomic.Uint64
	// Duplicates counts envelopes dropped because they were delivered
	// before (resent after a reconnect).
	Duplicates atomic.Uint64
	_          pad
}

// LaneState is what one lane from one peer incarnation has delivered. It
// outlives streams, so that envelopes resent on a new stream after a
// reconnect are delivered once, and it fences streams: only the stream that
// claimed it last delivers. A receive loop holds its lock while it delivers
// a batch (one uncontended lock per frame, none per envelope), so a new
// stream's claim waits for the old stream's batch in progress and the lane
// never delivers out of order.
type LaneState struct {
	mu     sync.Mutex
	last   uint64        // last position delivered
	shown  atomic.Uint64 // last as of the end of the latest batch, for Last
	owner  uint64        // generation of the stream allowed to deliver
	closed bool          // Close was called: nothing is delivered again
	wanted atomic.Int32  // Claims and Closes waiting for the batch in progress
}

// lock takes mu for Claim or Close, counted in wanted while it waits, so
// that a handler holding a batch back can see that it should let go.
func (s *LaneState) lock() {
	s.wanted.Add(1)
	s.mu.Lock()
	s.wanted.Add(-1)
}

// Wanted reports whether a Claim or a Close waits for the batch in
// progress: a new stream of the peer, a peer given up on or blocked, a node
// closing. A handler that holds a delivery back (waiting for room
// downstream) should return promptly once it reports true.
func (s *LaneState) Wanted() bool { return s.wanted.Load() > 0 }

// Claim makes a new stream the lane's only deliverer and returns its
// generation, for Receive.Generation. It waits for a batch in progress.
func (s *LaneState) Claim() uint64 {
	s.lock()
	defer s.mu.Unlock()
	s.owner++
	return s.owner
}

// Last returns the last position delivered as of the end of the latest
// batch. It does not wait for a batch in progress.
func (s *LaneState) Last() uint64 { return s.shown.Load() }

// Close ends delivery on the lane for good, for a peer incarnation this
// node has given up on or a node that is closing: it waits for a batch in
// progress, and every stream of the lane, current or future, fails with
// ErrQuarantined at its next batch. It returns the last position delivered,
// final from now on.
func (s *LaneState) Close() (last uint64) {
	s.lock()
	defer s.mu.Unlock()
	s.closed = true
	s.owner++
	return s.last
}

// Receive is the receive side of one established stream, either end.
type Receive struct {
	// Stream is the stream; Receive is its only receiver.
	Stream wire.Stream
	// Peer is who is at the other end.
	Peer Peer
	// Lane is the lane the stream carries.
	Lane batch.Lane
	// Limits are the negotiated limits.
	Limits batch.Limits
	// Deliver receives each new envelope, in order. The envelope is valid
	// until Deliver returns. Required.
	Deliver func(peer *Peer, env *batch.Envelope)
	// State is the lane's delivery state, shared by every stream of this
	// peer incarnation and lane, and Generation the value Claim returned
	// for this stream. Required.
	State      *LaneState
	Generation uint64
	// Ack sends, or has sent, an Ack for everything delivered up to pos on
	// this stream. Called after batches that ask for one. Required.
	Ack func(pos uint64) error
	// PeerAcked receives the peer's acks of what this node sent on the
	// stream; nil ignores them.
	PeerAcked func(pos uint64)
	// Heartbeat answers the peer's heartbeats (those that are not replies
	// themselves), with the peer's clock to echo; nil ignores them.
	Heartbeat func(nanos uint64) error
	// Delivered, if set, is called after every batch, outside the lane's
	// lock, with the last position the lane has delivered.
	Delivered func(last uint64)
	// Counters receives statistics. Required.
	Counters *Counters
	// Logger receives debug logs; nil means none.
	Logger *slog.Logger

	waits atomic.Uint64 // see Waits
}

// yieldFrameBytes is the frame size from which the loop yields after asking
// its writer for an ack; package writer yields from the same size.
const yieldFrameBytes = 16 << 10

// Waits counts the loop's waits for a frame, begun and ended: the count is
// odd while Run waits for the next frame. A watchdog that sees the same odd
// count for a while knows the peer has sent nothing for that long, while a
// loop held up by its own handler never looks idle.
func (r *Receive) Waits() uint64 { return r.waits.Load() }

// Run receives and delivers frames until the stream ends or fails. It
// returns the reason: ErrGoodbye when the peer closed on purpose, a wrapped
// batch sentinel for bad frames, ErrProtocol, wrapped, for frames that break
// the rules of the package doc, or the stream's error.
func (r *Receive) Run() error {
	if r.Logger == nil {
		r.Logger = slog.New(slog.DiscardHandler)
	}
	dec, err := batch.NewDecoder(batch.DecoderConfig{Limits: r.Limits, Lane: r.Lane})
	if err != nil {
		return err
	}
	defer dec.Close()
	var in wire.InFrame
	defer in.Free()
	for {
		r.waits.Add(1)
		err := r.Stream.RecvMsg(&in)
		r.waits.Add(1)
		if err != nil {
			return err
		}
		r.Counters.Frames.Add(1)
		r.Counters.BytesIn.Add(uint64(in.Len()))
		d, err := dec.DecodeSegments(in.Segments())
		if err != nil {
			return err
		}
		switch d.Kind {
		case batch.FrameBatch:
			if err := checkEnvelopes(r.Lane, &d); err != nil {
				return err
			}
			last, err := r.deliver(&d)
			if err != nil {
				return err
			}
			if r.Delivered != nil {
				r.Delivered(last)
			}
			if d.AckRequested {
				if err := r.Ack(last); err != nil {
					return err
				}
				// The lane's writer sends the ack. Woken by Ack, it would
				// wait for this processor until the loop blocks, a frame or
				// more later, while the sender's window stays full: after a
				// large frame, let it run now (as the sending writer does).
				if in.Len() >= yieldFrameBytes {
					runtime.Gosched()
				}
			}
		case batch.FrameAck:
			if r.PeerAcked != nil {
				r.PeerAcked(d.Control.GetAck().GetPosition())
			}
		case batch.FrameHeartbeat:
			if hb := d.Control.GetHeartbeat(); r.Heartbeat != nil && !hb.GetReply() {
				if err := r.Heartbeat(hb.GetNanos()); err != nil {
					return err
				}
			}
		case batch.FrameGoodbye:
			return fmt.Errorf("%w: %s", ErrGoodbye, d.Control.GetGoodbye().GetReason())
		default:
			return fmt.Errorf("%w: %v frame after the handshake", ErrProtocol, d.Kind)
		}
		dec.Release()
		in.Free()
	}
}

// checkEnvelopes refuses a batch that holds an envelope its lane does not
// allow, before any of it is delivered: the schema requires a target, and a
// kind is the transport's to interpret, so one it does not know, or one
// outside the system lane, would reach the handler with a meaning nobody
// gave it.
func checkEnvelopes(lane batch.Lane, d *batch.Decoded) error {
	for i := range d.Envelopes {
		e := &d.Envelopes[i]
		if e.Target == "" {
			return fmt.Errorf("%w: %s lane, envelope %d of the batch at position %d has no target",
				ErrInvalidEnvelope, lane, i, d.Position)
		}
		// KindStop is the highest kind courier knows.
		if e.Kind != batch.KindNone && (lane != batch.LaneSystem || e.Kind > batch.KindStop) {
			return fmt.Errorf("%w: %s lane, envelope %d of the batch at position %d is of kind %v",
				ErrInvalidEnvelope, lane, i, d.Position, e.Kind)
		}
	}
	return nil
}

// PositionError is a batch whose positions break the lane's numbering (see
// the package doc). It wraps ErrBadPosition, and so ErrProtocol.
type PositionError struct {
	// Lane is the stream's lane.
	Lane batch.Lane
	// Position is the batch's position, Envelopes how many it holds.
	Position  uint64
	Envelopes int
	// Last is the last position the lane had delivered or skipped.
	Last uint64
	// Rule says which rule the batch breaks.
	Rule string
}

// Error describes the batch and the rule it breaks.
func (e *PositionError) Error() string {
	return fmt.Sprintf("%v: %s lane, batch of %d at position %d after %d: %s",
		ErrBadPosition, e.Lane, e.Envelopes, e.Position, e.Last, e.Rule)
}

// Unwrap returns ErrBadPosition.
func (e *PositionError) Unwrap() error { return ErrBadPosition }

// positionRule returns the rule a batch of n envelopes at pos breaks when
// the lane stands at last, or "" when it breaks none.
func positionRule(pos, n, last uint64) string {
	switch {
	case pos == 0:
		return "positions start at 1"
	case n > 0 && pos-1 > last:
		return "it starts beyond the next position, so the positions between would be lost"
	case n > 0 && n-1 > math.MaxUint64-pos:
		return "its positions wrap past 2^64"
	}
	return ""
}

// deliver hands a batch's new envelopes to the handler, drops the ones
// delivered before, and returns the lane's last delivered position. A batch
// that breaks the lane's numbering is refused whole.
func (r *Receive) deliver(d *batch.Decoded) (last uint64, err error) {
	st := r.State
	st.mu.Lock()
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("%w: %v", ErrHandlerPanic, p)
		}
		st.shown.Store(st.last)
		st.mu.Unlock()
	}()
	if st.closed {
		return 0, ErrQuarantined
	}
	if st.owner != r.Generation {
		return 0, ErrSuperseded
	}
	last = st.last
	pos, n := d.Position, uint64(len(d.Envelopes))
	if rule := positionRule(pos, n, last); rule != "" {
		return last, &PositionError{Lane: r.Lane, Position: pos, Envelopes: len(d.Envelopes), Last: last, Rule: rule}
	}
	if n == 0 {
		// A skip: the sender will never send the positions before pos
		// (envelopes it could not send, or owed to an incarnation it
		// settled with). One at or below last+1 is old news.
		if pos-1 > last {
			last = pos - 1
			st.last = last
		}
		return last, nil
	}
	var dup uint64 // the batch's first dup envelopes were delivered before
	if pos <= last {
		dup = min(n, last-pos+1)
	}
	for i := dup; i < n; i++ {
		last = pos + i
		st.last = last // before Deliver: a panicking handler does not get it again
		r.Deliver(&r.Peer, &d.Envelopes[i])
	}
	r.Counters.Delivered.Add(n - dup)
	if dup > 0 {
		r.Counters.Duplicates.Add(dup)
	}
	return last, nil
}

// HeartbeatInline returns a Heartbeat function for a stream whose only
// sender is its receive loop: it sends the reply itself.
func HeartbeatInline(s wire.Stream) func(nanos uint64) error {
	return func(nanos uint64) error {
		buf, err := batch.EncodeControl(&courierv1.Frame{Kind: &courierv1.Frame_Heartbeat{
			Heartbeat: &courierv1.Heartbeat{Nanos: nanos, Reply: true},
		}})
		if err != nil {
			return err
		}
		return s.SendMsg(buf)
	}
}

// AckInline returns an Ack function for a stream whose only sender is its
// receive loop: it sends the Ack frame itself.
func AckInline(s wire.Stream) func(pos uint64) error {
	var acks batch.AckEncoder // the receive loop is the only caller
	return func(pos uint64) error {
		buf, err := acks.Encode(pos)
		if err != nil {
			return err
		}
		return s.SendMsg(buf)
	}
}

// Accepted is what a node decides about a stream once its handshake
// succeeded.
type Accepted struct {
	// Receive is the receive loop to run; the Server fills in Stream,
	// Lane and Limits.
	Receive Receive
	// Done is called with Run's result when the stream ends; nil ignores
	// it.
	Done func(err error)
	// Kill, if set, ends the stream at once when it is closed, even while
	// the receive loop waits for a frame: the stream fails with KillErr.
	Kill    <-chan struct{}
	KillErr error
}

// ServerConfig configures a Server.
type ServerConfig struct {
	// HandshakeTimeout bounds the wait for a stream's Hello.
	HandshakeTimeout time.Duration
	// Check decides on a Hello that passed wire.CheckHello: it returns the
	// Welcome to send, with the negotiated limits, or a *wire.RefusedError.
	Check func(ctx context.Context, hello *courierv1.Hello) (*courierv1.Welcome, error)
	// Accept sets up the receive side of an accepted stream, or returns an
	// error to close it.
	Accept func(ctx context.Context, hello *courierv1.Hello, welcome *courierv1.Welcome, s wire.Stream) (*Accepted, error)
	// Refused is told of every handshake this node refused or that failed;
	// nil ignores them.
	Refused func(hello *courierv1.Hello, err error)
	// Abandoned is told of a Hello that Check accepted when the stream then
	// fails before Accept: whatever Check set aside for the stream is to be
	// given back. nil ignores it.
	Abandoned func(hello *courierv1.Hello)
}

// Server is the Transport gRPC service: it runs the listener's side of the
// handshake on every Connect stream, then its receive loop.
type Server struct {
	transportv1.UnimplementedTransportServer
	cfg ServerConfig
	wg  sync.WaitGroup // receive loops of killed streams, until they exit
}

// Wait returns once the receive loop of every stream has exited. Call it
// after the gRPC server has stopped.
func (s *Server) Wait() { s.wg.Wait() }

// NewServer returns a Server.
func NewServer(cfg ServerConfig) *Server { return &Server{cfg: cfg} }

// Connect serves one stream until it ends.
func (s *Server) Connect(stream transportv1.Transport_ConnectServer) error {
	ctx := stream.Context()
	checked := false
	hello, welcome, err := wire.Accept(ctx, stream, s.cfg.HandshakeTimeout, func(h *courierv1.Hello) (*courierv1.Welcome, error) {
		if err := wire.CheckHello(h); err != nil {
			return nil, err
		}
		w, err := s.cfg.Check(ctx, h)
		checked = err == nil
		return w, err
	})
	if err != nil {
		if checked && s.cfg.Abandoned != nil {
			s.cfg.Abandoned(hello)
		}
		if s.cfg.Refused != nil {
			s.cfg.Refused(hello, err)
		}
		return statusOf(err)
	}
	acc, err := s.cfg.Accept(ctx, hello, welcome, stream)
	if err != nil {
		return statusOf(err)
	}
	lane, _ := wire.LaneFromProto(hello.GetLane())
	acc.Receive.Stream = stream
	acc.Receive.Lane = lane
	acc.Receive.Limits = batch.LimitsFromProto(welcome.GetLimits(), batch.DefaultLimits())
	if acc.Kill == nil {
		err = acc.Receive.Run()
	} else {
		// The receive loop runs on its own goroutine, so that the handler
		// can return, and gRPC end the stream, while it waits for a frame.
		done := make(chan error, 1)
		s.wg.Go(func() { done <- acc.Receive.Run() })
		select {
		case err = <-done:
		case <-acc.Kill:
			err = acc.KillErr
		}
	}
	if acc.Done != nil {
		acc.Done(err)
	}
	if errors.Is(err, ErrGoodbye) {
		return nil
	}
	return statusOf(err)
}

// statusOf turns an error into the gRPC status the dialer sees. Each
// refusal reason has its code, so that a client that reads only statuses
// can tell them apart: blocked and unauthorized PermissionDenied, another
// protocol version FailedPrecondition, an invalid Hello or a first frame
// that is not one InvalidArgument, unavailable (retry later) Unavailable,
// a quarantined incarnation (retry only as a new one) Aborted. A
// handshake is DeadlineExceeded only when it timed out.
func statusOf(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	code := codes.Unknown
	switch {
	case errors.Is(err, wire.ErrBlocked), errors.Is(err, wire.ErrUnauthorized):
		code = codes.PermissionDenied
	case errors.Is(err, wire.ErrVersion):
		code = codes.FailedPrecondition
	case errors.Is(err, wire.ErrInvalidHello):
		code = codes.InvalidArgument
	case errors.Is(err, wire.ErrUnavailable):
		code = codes.Unavailable
	case errors.Is(err, wire.ErrQuarantined):
		code = codes.Aborted
	case errors.Is(err, context.DeadlineExceeded):
		code = codes.DeadlineExceeded
	case errors.Is(err, context.Canceled), errors.Is(err, wire.ErrHandshake) && errors.Is(err, io.EOF):
		// The dialer went away, or closed its side before its Hello.
		code = codes.Canceled
	case errors.Is(err, batch.ErrFrameTooLarge), errors.Is(err, batch.ErrTooManyEnvelopes),
		errors.Is(err, batch.ErrTooManyHeaders), errors.Is(err, batch.ErrDictionaryOverflow):
		code = codes.ResourceExhausted
	case errors.Is(err, batch.ErrCorruptFrame), errors.Is(err, batch.ErrUnknownString), errors.Is(err, ErrProtocol),
		errors.Is(err, wire.ErrHandshake):
		// A handshake that failed otherwise: the first frame was not a
		// Hello.
		code = codes.InvalidArgument
	case errors.Is(err, ErrHandlerPanic):
		code = codes.Internal
	}
	return status.Error(code, err.Error())
}
