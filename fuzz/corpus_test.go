package fuzz

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
)

var updateCorpus = flag.Bool("update-corpus", false, "rewrite the seed corpus files under testdata/fuzz")

// seedFile is one committed seed of a []byte fuzz target.
type seedFile struct {
	name string
	data []byte
}

// seedArgs is one committed seed of a fuzz target of several arguments, each
// a []byte, a string or a uint32, in the target's order.
type seedArgs struct {
	name string
	args []any
}

// checkCorpus makes sure the committed corpus of target holds exactly seeds,
// or rewrites it with -update-corpus. A target whose corpus went missing or
// stale fails here, not silently in a fuzz run with nothing to start from.
func checkCorpus(t *testing.T, target string, seeds []seedFile) {
	t.Helper()
	args := make([]seedArgs, len(seeds))
	for i, s := range seeds {
		args[i] = seedArgs{s.name, []any{s.data}}
	}
	checkCorpusArgs(t, target, args)
}

// checkCorpusArgs is checkCorpus for targets of any arguments.
func checkCorpusArgs(t *testing.T, target string, seeds []seedArgs) {
	t.Helper()
	dir := filepath.Join("testdata", "fuzz", target)
	if *updateCorpus {
		if err := os.RemoveAll(dir); err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for _, s := range seeds {
			if err := os.WriteFile(filepath.Join(dir, s.name), []byte(seedBody(s.args)), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		return
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatalf("seed corpus of %s: %v (run go test ./fuzz -run Corpus -update-corpus)", target, err)
	}
	var have []string
	for _, e := range entries {
		have = append(have, e.Name())
	}
	var want []string
	for _, s := range seeds {
		want = append(want, s.name)
		args, err := readSeed(filepath.Join(dir, s.name))
		if err != nil {
			t.Errorf("seed %s/%s: %v", target, s.name, err)
			continue
		}
		// Compared in the file format, so that a nil and an empty []byte
		// are the same seed.
		if seedBody(args) != seedBody(s.args) {
			t.Errorf("seed %s/%s is stale (run go test ./fuzz -run Corpus -update-corpus)", target, s.name)
		}
	}
	sort.Strings(have)
	sort.Strings(want)
	if strings.Join(have, ",") != strings.Join(want, ",") {
		t.Errorf("seed corpus of %s holds %v, want %v", target, have, want)
	}
}

// seedBody is a corpus file in the `go test fuzz v1` format.
func seedBody(args []any) string {
	var b strings.Builder
	b.WriteString("go test fuzz v1\n")
	for _, a := range args {
		switch v := a.(type) {
		case []byte:
			b.WriteString("[]byte(" + strconv.Quote(string(v)) + ")\n")
		case string:
			b.WriteString("string(" + strconv.Quote(v) + ")\n")
		case uint32:
			b.WriteString("uint32(" + strconv.FormatUint(uint64(v), 10) + ")\n")
		default:
			panic(fmt.Sprintf("seed argument of type %T", a))
		}
	}
	return b.String()
}

// readSeed parses a corpus file written by seedBody (or by go test, for the
// same types).
func readSeed(path string) ([]any, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	lines := strings.Split(strings.TrimSpace(string(raw)), "\n")
	if len(lines) < 2 || lines[0] != "go test fuzz v1" {
		return nil, fmt.Errorf("not a go fuzz corpus file")
	}
	var args []any
	for _, line := range lines[1:] {
		typ, lit, ok := strings.Cut(strings.TrimSuffix(line, ")"), "(")
		if !ok {
			return nil, fmt.Errorf("malformed line %q", line)
		}
		switch typ {
		case "[]byte", "string":
			s, err := strconv.Unquote(lit)
			if err != nil {
				return nil, fmt.Errorf("line %q: %w", line, err)
			}
			if typ == "string" {
				args = append(args, s)
			} else {
				args = append(args, []byte(s))
			}
		case "uint32":
			n, err := strconv.ParseUint(lit, 0, 32)
			if err != nil {
				return nil, fmt.Errorf("line %q: %w", line, err)
			}
			args = append(args, uint32(n))
		default:
			return nil, fmt.Errorf("line %q: unsupported type %s", line, typ)
		}
	}
	return args, nil
}
