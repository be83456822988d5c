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

// checkCorpus makes sure the committed corpus of target holds exactly seeds,
// or rewrites it with -update-corpus. A target whose corpus went missing or
// stale fails here, not silently in a fuzz run with nothing to start from.
func checkCorpus(t *testing.T, target string, seeds []seedFile) {
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
			body := "go test fuzz v1\n[]byte(" + strconv.Quote(string(s.data)) + ")\n"
			if err := os.WriteFile(filepath.Join(dir, s.name), []byte(body), 0o644); err != nil {
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
		data, err := readSeed(filepath.Join(dir, s.name))
		if err != nil {
			t.Errorf("seed %s/%s: %v", target, s.name, err)
			continue
		}
		if string(data) != string(s.data) {
			t.Errorf("seed %s/%s is stale (run go test ./fuzz -run Corpus -update-corpus)", target, s.name)
		}
	}
	sort.Strings(have)
	sort.Strings(want)
	if strings.Join(have, ",") != strings.Join(want, ",") {
		t.Errorf("seed corpus of %s holds %v, want %v", target, have, want)
	}
}

func readSeed(path string) ([]byte, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	lines := strings.SplitN(strings.TrimSpace(string(raw)), "\n", 2)
	if len(lines) != 2 || lines[0] != "go test fuzz v1" {
		return nil, fmt.Errorf("not a go fuzz corpus file")
	}
	arg := strings.TrimSuffix(strings.TrimPrefix(lines[1], "[]byte("), ")")
	s, err := strconv.Unquote(arg)
	return []byte(s), err
}
