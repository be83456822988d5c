package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// baseline is this comparison built from another commit of the project:
// -baseline REV checks REV out in a git worktree, builds its
// bench/compare, and runs it once per round, right after the round of the
// current tree, with the same flags and its own child-process receivers.
// Its samples join the run's under the implementation's name with "@" and
// the commit appended, so the table's ratio columns read as the current
// tree over the baseline. By default the baseline is built with this
// tree's comparison (bench/compare and bench/internal copied over the
// worktree's), so that only the library differs: the same scenarios, flags
// and receivers; -baseline-harness=own builds the commit's own.
type baseline struct {
	Rev    string `json:"rev"`    // as given
	Commit string `json:"commit"` // what it resolved to
	Impls  string `json:"impls"`  // which implementations it ran

	dir  string // a temporary directory: the worktree and the binary
	repo string // the repository the worktree belongs to
	bin  string
	args []string // the flags passed to every round
	prof string   // -cpuprofile of the current tree, "" if none
}

// newBaseline checks out and builds rev. The flags given to this run are
// passed on, apart from the ones the baseline's rounds set themselves.
func newBaseline(rev, impls string, ownHarness bool, fs *flag.FlagSet) (*baseline, error) {
	b := &baseline{Rev: rev, Impls: impls}
	out, err := exec.Command("git", "rev-parse", "--show-toplevel").Output()
	if err != nil {
		return nil, fmt.Errorf("baseline: not in a git repository: %w", err)
	}
	b.repo = strings.TrimSpace(string(out))
	out, err = exec.Command("git", "-C", b.repo, "rev-parse", "--verify", rev+"^{commit}").Output()
	if err != nil {
		return nil, fmt.Errorf("baseline: %q is not a commit: %w", rev, err)
	}
	b.Commit = strings.TrimSpace(string(out))
	if b.dir, err = os.MkdirTemp("", "compare-baseline-"); err != nil {
		return nil, err
	}
	src := filepath.Join(b.dir, "src")
	if err := run(exec.Command("git", "-C", b.repo, "worktree", "add", "--detach", src, b.Commit)); err != nil {
		os.RemoveAll(b.dir)
		return nil, fmt.Errorf("baseline: worktree of %s: %w", rev, err)
	}
	if !ownHarness {
		for _, d := range []string{"bench/compare", "bench/internal"} {
			if err := copyTree(filepath.Join(b.repo, d), filepath.Join(src, d)); err != nil {
				b.close()
				return nil, fmt.Errorf("baseline: copying this tree's %s: %w", d, err)
			}
		}
	}
	b.bin = filepath.Join(b.dir, "compare")
	build := exec.Command("go", "build", "-o", b.bin, ".")
	build.Dir = filepath.Join(src, "bench", "compare")
	if err := run(build); err != nil {
		b.close()
		return nil, fmt.Errorf("baseline: building %s: %w", rev, err)
	}
	skip := map[string]bool{"baseline": true, "baseline-impls": true, "baseline-harness": true, "rounds": true, "json": true, "impls": true, "cpuprofile": true, "trace": true}
	fs.Visit(func(f *flag.Flag) {
		if f.Name == "cpuprofile" {
			b.prof = f.Value.String()
		}
		if !skip[f.Name] {
			b.args = append(b.args, "-"+f.Name+"="+f.Value.String())
		}
	})
	return b, nil
}

// short is the commit's abbreviation used in the samples' names.
func (b *baseline) short() string { return b.Commit[:min(len(b.Commit), 7)] }

// round runs one round of the baseline and returns its samples, renamed.
// With -cpuprofile, the baseline's profiles are the current tree's names
// with ".baseline" inserted before any ".child".
func (b *baseline) round(n int) ([]sample, error) {
	file := filepath.Join(b.dir, fmt.Sprintf("round-%d.json", n))
	args := append([]string{"-rounds=1", "-json=" + file, "-impls=" + b.Impls}, b.args...)
	if b.prof != "" {
		args = append(args, "-cpuprofile="+b.prof+".baseline")
	}
	cmd := exec.Command(b.bin, args...)
	cmd.Stderr = os.Stderr
	if err := run(cmd); err != nil {
		return nil, fmt.Errorf("baseline %s round %d: %w", b.short(), n, err)
	}
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	samples, err := readSamples(data)
	if err != nil {
		return nil, fmt.Errorf("baseline %s round %d: %w", b.short(), n, err)
	}
	for i := range samples {
		samples[i].Impl += "@" + b.short()
	}
	return samples, nil
}

// mustRound is round, ending the run when the baseline fails: a
// comparison without it is not the one asked for.
func (b *baseline) mustRound(n int) []sample {
	samples, err := b.round(n)
	if err != nil {
		fmt.Fprintln(os.Stderr, "compare:", err)
		b.close()
		os.Exit(1)
	}
	return samples
}

// readSamples reads a results file: an object with "samples", or the
// older top-level array.
func readSamples(data []byte) ([]sample, error) {
	if data = bytes.TrimSpace(data); len(data) > 0 && data[0] == '[' {
		var s []sample
		return s, json.Unmarshal(data, &s)
	}
	var f resultsFile
	return f.Samples, json.Unmarshal(data, &f)
}

// copyTree copies the files under from over to, but results/ (samples of
// earlier runs).
func copyTree(from, to string) error {
	return filepath.WalkDir(from, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(from, path)
		if d.IsDir() {
			if d.Name() == "results" {
				return filepath.SkipDir
			}
			return os.MkdirAll(filepath.Join(to, rel), 0o755)
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(to, rel), data, 0o644)
	})
}

// close removes the worktree and the binary.
func (b *baseline) close() {
	_ = exec.Command("git", "-C", b.repo, "worktree", "remove", "--force", filepath.Join(b.dir, "src")).Run()
	os.RemoveAll(b.dir)
}

// run runs cmd, its output going to stderr unless set, and says what
// failed with the command's own words.
func run(cmd *exec.Cmd) error {
	var out bytes.Buffer
	if cmd.Stderr == nil {
		cmd.Stderr = &out
	}
	cmd.Stdout = &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s: %w: %s", strings.Join(cmd.Args[:min(len(cmd.Args), 3)], " "), err, bytes.TrimSpace(out.Bytes()))
	}
	return nil
}
