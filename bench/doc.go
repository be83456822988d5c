// Package bench holds courier's end-to-end benchmarks (go test -bench) and,
// under cmd/courier-bench, the command that runs the benchmark scenarios and
// prints their tables. Comparisons with other projects live in the separate
// module under compare/, so that courier never depends on what it is
// compared with.
package bench
