package main

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// runMainEnv makes the test binary run main with its arguments.
const runMainEnv = "COURIER_BENCH_RUN_MAIN"

// runMain runs the command with args in a child process and returns its
// exit code and output.
func runMain(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], args...)
	// The race detector's default pause at exit would take a second a run.
	cmd.Env = append(os.Environ(), runMainEnv+"=1", "GORACE="+os.Getenv("GORACE")+" atexit_sleep_ms=0")
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &exit):
		code = exit.ExitCode()
	default:
		t.Fatal(err)
	}
	return code, out.String(), errOut.String()
}

// TestHelpExitsZero: asking for help prints the usage and succeeds; a flag
// that does not exist is still a usage error.
func TestHelpExitsZero(t *testing.T) {
	for _, arg := range []string{"-h", "-help", "--help"} {
		code, stdout, stderr := runMain(t, arg)
		if code != 0 {
			t.Errorf("courier-bench %s exited %d, want 0; stderr:\n%s", arg, code, stderr)
		}
		if !strings.Contains(stdout+stderr, "-scenarios") || strings.Contains(stderr, "help requested") {
			t.Errorf("courier-bench %s printed:\n%s%s\nwant the usage alone", arg, stdout, stderr)
		}
	}
	if code, _, stderr := runMain(t, "-no-such-flag"); code != 2 || !strings.Contains(stderr, "-scenarios") {
		t.Errorf("courier-bench -no-such-flag exited %d, want 2 with the usage; stderr:\n%s", code, stderr)
	}
}
