package peer

import (
	"context"
	"time"

	"github.com/courier-go/courier/internal/wire"
	"github.com/courier-go/courier/proto/courier/v1/transportv1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
)

// Stream is the dialer's side of one Connect stream:
// transportv1.Transport_ConnectClient is one.
type Stream interface {
	wire.Stream
	// CloseSend tells the peer nothing more comes on the stream.
	CloseSend() error
}

// Conn is one connection to the peer; each lane opens its stream on a
// connection of its own.
type Conn interface {
	// Connect opens a Connect stream, which lives until ctx ends.
	Connect(ctx context.Context) (Stream, error)
	// Close closes the connection and every stream on it.
	Close() error
}

// Dialer makes connections. Dial must not block for long: gRPC's connects
// lazily, on the first stream.
type Dialer interface {
	Dial(address string) (Conn, error)
}

// GRPCDialer dials with gRPC: each Conn is a grpc.ClientConn made with
// Options, and each stream carries Metadata (key, value pairs).
type GRPCDialer struct {
	Options  []grpc.DialOption
	Metadata []string
}

// Dial returns a new gRPC connection to address.
func (d GRPCDialer) Dial(address string) (Conn, error) {
	cc, err := grpc.NewClient(address, d.Options...)
	if err != nil {
		return nil, err
	}
	return grpcConn{cc: cc, client: transportv1.NewTransportClient(cc), md: d.Metadata}, nil
}

type grpcConn struct {
	cc     *grpc.ClientConn
	client transportv1.TransportClient
	md     []string
}

func (c grpcConn) Connect(ctx context.Context) (Stream, error) {
	if len(c.md) > 0 {
		ctx = metadata.AppendToOutgoingContext(ctx, c.md...)
	}
	return c.client.Connect(ctx, grpc.ForceCodecV2(wire.Codec{}))
}

func (c grpcConn) Close() error { return c.cc.Close() }

// Clock is the endpoint's time: its timers and the times it records.
// Tests drive one of their own; RealClock is the time package's.
type Clock interface {
	Now() time.Time
	// NewTimer returns a started timer that sends on its channel after d.
	NewTimer(d time.Duration) Timer
	// AfterFunc calls f in a goroutine of its own after d; the timer's
	// channel is nil.
	AfterFunc(d time.Duration, f func()) Timer
}

// Timer is a Clock's timer, as time.Timer behaves since Go 1.23: Stop and
// Reset leave no stale tick in the channel.
type Timer interface {
	C() <-chan time.Time
	Stop() bool
	Reset(d time.Duration) bool
}

// RealClock is the time package's clock.
type RealClock struct{}

// Now returns time.Now().
func (RealClock) Now() time.Time { return time.Now() }

// NewTimer returns a time.Timer.
func (RealClock) NewTimer(d time.Duration) Timer { return realTimer{time.NewTimer(d)} }

// AfterFunc returns time.AfterFunc's timer.
func (RealClock) AfterFunc(d time.Duration, f func()) Timer { return realTimer{time.AfterFunc(d, f)} }

type realTimer struct{ *time.Timer }

func (t realTimer) C() <-chan time.Time { return t.Timer.C }
