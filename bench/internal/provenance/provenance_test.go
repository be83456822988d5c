package provenance

import (
	"encoding/json"
	"flag"
	"os/exec"
	"runtime"
	"testing"
	"time"
)

// TestCollect: the toolchain, platform, cores, start in UTC, the command
// line and every flag's value, and a commit from the build or from git.
func TestCollect(t *testing.T) {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.Int("rounds", 3, "")
	fs.Duration("duration", 2*time.Second, "")
	args := []string{"-rounds", "5"}
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	start := time.Date(2026, 12, 3, 17, 0, 0, 0, time.FixedZone("CET", 3600))
	p := Collect(fs, args, start)

	if p.GoVersion != runtime.Version() || p.GOOS != runtime.GOOS || p.GOARCH != runtime.GOARCH {
		t.Errorf("toolchain %s %s/%s", p.GoVersion, p.GOOS, p.GOARCH)
	}
	if p.NumCPU != runtime.NumCPU() || p.GOMAXPROCS != runtime.GOMAXPROCS(0) {
		t.Errorf("cores %d, GOMAXPROCS %d", p.NumCPU, p.GOMAXPROCS)
	}
	if !p.Start.Equal(start) || p.Start.Location() != time.UTC {
		t.Errorf("start %v, want %v in UTC", p.Start, start)
	}
	if p.Flags["rounds"] != "5" || p.Flags["duration"] != "2s" || len(p.Flags) != 2 {
		t.Errorf("flags %v, want rounds=5 and the default duration=2s", p.Flags)
	}
	if len(p.Args) != 2 || p.Args[1] != "5" {
		t.Errorf("args %q", p.Args)
	}
	args[1] = "changed"
	if p.Args[1] != "5" {
		t.Error("Args shares the caller's slice")
	}

	// A test binary has no VCS stamp: the commit comes from git, when this
	// source is in a git work tree.
	_, gitErr := exec.LookPath("git")
	_, _, inTree := fromGit(sourceDir())
	switch {
	case p.CommitFrom == "build":
	case gitErr == nil && inTree:
		if p.CommitFrom != "git" || len(p.Commit) < 40 {
			t.Errorf("commit %q from %q, want a full hash from git", p.Commit, p.CommitFrom)
		}
	default:
		if p.Commit != Unknown || p.Modified {
			t.Errorf("without git: commit %q, modified %v", p.Commit, p.Modified)
		}
	}

	b, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	var keys map[string]any
	if err := json.Unmarshal(b, &keys); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"commit", "modified", "go_version", "goos", "goarch", "args", "flags", "num_cpu", "gomaxprocs", "start"} {
		if _, ok := keys[k]; !ok {
			t.Errorf("the JSON lacks %q: %s", k, b)
		}
	}
}
