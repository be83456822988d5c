package reader

import (
	"context"
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/courier-go/courier/batch"
	"github.com/courier-go/courier/internal/wire"
	courierv1 "github.com/courier-go/courier/proto/courier/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// TestStatusOf: every way a handshake or a stream fails has a gRPC status
// of its own; only a timeout is DeadlineExceeded.
func TestStatusOf(t *testing.T) {
	refuse := func(r courierv1.RefuseReason) error { return wire.Refuse(r, "no") }
	for _, c := range []struct {
		name string
		err  error
		want codes.Code
	}{
		{"version", refuse(courierv1.RefuseReason_REFUSE_REASON_VERSION), codes.FailedPrecondition},
		{"blocked", refuse(courierv1.RefuseReason_REFUSE_REASON_BLOCKED), codes.PermissionDenied},
		{"invalid", refuse(courierv1.RefuseReason_REFUSE_REASON_INVALID), codes.InvalidArgument},
		{"unauthorized", refuse(courierv1.RefuseReason_REFUSE_REASON_UNAUTHORIZED), codes.PermissionDenied},
		{"unavailable", refuse(courierv1.RefuseReason_REFUSE_REASON_UNAVAILABLE), codes.Unavailable},
		{"quarantined", refuse(courierv1.RefuseReason(6)), codes.Aborted},
		{"wrapped refusal", fmt.Errorf("limit: %w", refuse(courierv1.RefuseReason_REFUSE_REASON_UNAVAILABLE)), codes.Unavailable},
		{"no hello in time", fmt.Errorf("%w: no hello within %v: %w", wire.ErrHandshake, time.Second, context.DeadlineExceeded), codes.DeadlineExceeded},
		{"not a hello", fmt.Errorf("%w: first frame is an ack, want a hello", wire.ErrHandshake), codes.InvalidArgument},
		{"corrupt hello", fmt.Errorf("%w: first frame: %w", wire.ErrHandshake, batch.ErrCorruptFrame), codes.InvalidArgument},
		{"oversize hello", fmt.Errorf("%w: first frame: %w", wire.ErrHandshake, batch.ErrFrameTooLarge), codes.ResourceExhausted},
		{"closed before hello", fmt.Errorf("%w: %w", wire.ErrHandshake, io.EOF), codes.Canceled},
		{"dialer gone", fmt.Errorf("%w: %w", wire.ErrHandshake, context.Canceled), codes.Canceled},
		{"stream status", fmt.Errorf("%w: %w", wire.ErrHandshake, status.Error(codes.Unavailable, "gone")), codes.Unavailable},
		{"protocol", fmt.Errorf("%w: second hello", ErrProtocol), codes.InvalidArgument},
		{"panic", ErrHandlerPanic, codes.Internal},
	} {
		if got := status.Code(statusOf(c.err)); got != c.want {
			t.Errorf("%s (%v): %v, want %v", c.name, c.err, got, c.want)
		}
	}
}
