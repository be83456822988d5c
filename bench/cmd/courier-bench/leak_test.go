package main

import (
	"os"
	"testing"

	"go.uber.org/goleak"
)

// TestMain runs the command itself when a test asks for it in a child
// process (see runMain); otherwise the tests, with a leak check.
func TestMain(m *testing.M) {
	if os.Getenv(runMainEnv) == "1" {
		os.Args = append([]string{"courier-bench"}, os.Args[1:]...)
		main()
		os.Exit(0)
	}
	goleak.VerifyTestMain(m)
}
