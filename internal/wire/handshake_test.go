package wire

import (
	"errors"
	"strings"
	"testing"

	courierv1 "github.com/courier-go/courier/proto/courier/v1"
)

// TestRefusedErrorReasons: a refusal wraps ErrRefused and its reason's
// sentinel, and names the reason; a reason this code does not know is
// taken for an invalid Hello, a final refusal.
func TestRefusedErrorReasons(t *testing.T) {
	for _, c := range []struct {
		reason courierv1.RefuseReason
		err    error
		name   string
	}{
		{courierv1.RefuseReason_REFUSE_REASON_VERSION, ErrVersion, "version"},
		{courierv1.RefuseReason_REFUSE_REASON_BLOCKED, ErrBlocked, "blocked"},
		{courierv1.RefuseReason_REFUSE_REASON_INVALID, ErrInvalidHello, "invalid"},
		{courierv1.RefuseReason_REFUSE_REASON_UNAUTHORIZED, ErrUnauthorized, "unauthorized"},
		{courierv1.RefuseReason_REFUSE_REASON_UNAVAILABLE, ErrUnavailable, "unavailable"},
		{courierv1.RefuseReason_REFUSE_REASON_QUARANTINED, ErrQuarantined, "quarantined"},
		{courierv1.RefuseReason(99), ErrInvalidHello, "invalid"},
	} {
		err := Refuse(c.reason, "why")
		if !errors.Is(err, ErrRefused) || !errors.Is(err, c.err) {
			t.Errorf("%v: %v does not wrap ErrRefused and %v", c.reason, err, c.err)
		}
		if !strings.Contains(err.Error(), "("+c.name+")") {
			t.Errorf("%v: %q does not name %q", c.reason, err, c.name)
		}
	}
}
