// Package testutil is what the main module's tests share: one way to wait
// for a condition, so that no test waits a fixed time and then looks.
//
// Eventually either sees its condition hold or fails the test, naming what
// it waited for; it never returns on a timeout. Call it from the test's
// own goroutine (or a cleanup), as t.Fatalf requires.
package testutil

import (
	"testing"
	"time"
)

// The pause between two looks at a condition starts at minPause and doubles
// up to maxPause: a condition about to hold is seen at once, and one that
// takes long, or is costly to look at, does not keep a processor busy.
const (
	minPause = time.Millisecond
	maxPause = 20 * time.Millisecond
)

// Eventually returns once cond reports true, looking at once and then every
// few milliseconds. If cond still reports false when timeout has passed,
// after one last look, it fails the test with what, the thing waited for
// ("every watcher to hear Terminated"), and does not return.
func Eventually(t testing.TB, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	pause := minPause
	for !cond() {
		if !time.Now().Before(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
			return // a testing.TB whose Fatalf returns: still never report success
		}
		time.Sleep(pause)
		pause = min(2*pause, maxPause)
	}
}
