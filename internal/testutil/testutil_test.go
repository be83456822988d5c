package testutil

import (
	"fmt"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// fatalRecorder is a testing.TB whose Fatalf records the failure and ends
// the calling goroutine, as the real one does.
type fatalRecorder struct {
	testing.TB
	msg string
}

func (f *fatalRecorder) Helper() {}

func (f *fatalRecorder) Fatalf(format string, args ...any) {
	f.msg = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

// run calls Eventually with a recorder in a goroutine of its own and
// reports whether Eventually returned, and the failure it recorded.
func run(timeout time.Duration, cond func() bool) (returned bool, msg string) {
	f := &fatalRecorder{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		Eventually(f, "the thing", timeout, cond)
		returned = true
	}()
	<-done
	return returned, f.msg
}

func TestEventuallyReturnsOnceTrue(t *testing.T) {
	var looks atomic.Int32
	returned, msg := run(10*time.Second, func() bool { return looks.Add(1) == 3 })
	if !returned || msg != "" {
		t.Fatalf("returned %v, failure %q; want a return without failure", returned, msg)
	}
	if n := looks.Load(); n != 3 {
		t.Fatalf("looked %d times, want 3", n)
	}
}

func TestEventuallyTrueAtOnce(t *testing.T) {
	// A condition that already holds is seen even with no time to wait.
	if returned, msg := run(0, func() bool { return true }); !returned || msg != "" {
		t.Fatalf("returned %v, failure %q", returned, msg)
	}
}

func TestEventuallyFailsOnTimeout(t *testing.T) {
	start := time.Now()
	returned, msg := run(30*time.Millisecond, func() bool { return false })
	if returned {
		t.Fatal("Eventually returned on a timeout")
	}
	if !strings.Contains(msg, "the thing") || !strings.Contains(msg, "30ms") {
		t.Fatalf("failure %q does not name what was waited for and for how long", msg)
	}
	if el := time.Since(start); el < 30*time.Millisecond {
		t.Fatalf("gave up after %v, before the timeout", el)
	}
}

// A testing.TB whose Fatalf returns must not make a timeout look like
// success either.
type returningFatal struct {
	testing.TB
	failed bool
}

func (f *returningFatal) Helper()               {}
func (f *returningFatal) Fatalf(string, ...any) { f.failed = true }

func TestEventuallyNeverReturnsSilently(t *testing.T) {
	f := &returningFatal{}
	Eventually(f, "the thing", time.Millisecond, func() bool { return false })
	if !f.failed {
		t.Fatal("Eventually came back from a timeout without failing the test")
	}
}
