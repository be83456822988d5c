// Package provenance records where a benchmark's results come from, for
// the JSON files of courier-bench and of the comparison (bench/compare):
// the commit, the toolchain and platform, the command line with every
// flag's value, the cores and the start time. A file then says how to
// reproduce it, and two files say whether they can be compared.
//
// The commit is the one the binary was stamped with (go build stamps the
// VCS state unless -buildvcs=false, which the Makefile and CI set in
// places, and go run does not stamp); without a stamp it is the state of
// the git work tree holding this package's source, read with git at the
// start of the run; without git, "unknown".
//
// Collect runs git at most once a call, and holds no state: it is safe to
// call from any goroutine.
package provenance

import (
	"bytes"
	"context"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"
	"time"
)

// Unknown is the commit when neither the build nor git tells it.
const Unknown = "unknown"

// Provenance describes one run of a benchmark command.
type Provenance struct {
	// Program is the main package's import path.
	Program string `json:"program"`
	// Commit is the full hash of the commit built, or Unknown.
	Commit string `json:"commit"`
	// Modified: the work tree had changes not committed (tracked or
	// untracked files), so Commit alone does not reproduce the run. False
	// when Commit is Unknown.
	Modified bool `json:"modified"`
	// CommitFrom says where Commit comes from: "build" (the binary's VCS
	// stamp), "git" (git in the source's work tree at the start) or
	// "unknown".
	CommitFrom string `json:"commit_from"`
	GoVersion  string `json:"go_version"`
	GOOS       string `json:"goos"`
	GOARCH     string `json:"goarch"`
	// Build holds the build settings other than the VCS's and the
	// platform, those set: -race, CGO_ENABLED, GOAMD64, -tags and the
	// like.
	Build map[string]string `json:"build,omitempty"`
	// Args is the command line after the program's name, as given.
	Args []string `json:"args"`
	// Flags holds every flag of the command with the value it had, the
	// defaults included.
	Flags map[string]string `json:"flags"`
	// NumCPU is runtime.NumCPU: the cores the process could use.
	NumCPU     int `json:"num_cpu"`
	GOMAXPROCS int `json:"gomaxprocs"`
	// Start is when the run started, in UTC.
	Start time.Time `json:"start"`
}

// Collect describes the current process's run, started at start, with the
// flags of fs (parsed already) and the command line args (os.Args[1:]).
func Collect(fs *flag.FlagSet, args []string, start time.Time) Provenance {
	p := Provenance{
		Commit:     Unknown,
		CommitFrom: "unknown",
		GoVersion:  runtime.Version(),
		GOOS:       runtime.GOOS,
		GOARCH:     runtime.GOARCH,
		Args:       append([]string{}, args...),
		Flags:      map[string]string{},
		NumCPU:     runtime.NumCPU(),
		GOMAXPROCS: runtime.GOMAXPROCS(0),
		Start:      start.UTC(),
	}
	if fs != nil {
		fs.VisitAll(func(f *flag.Flag) { p.Flags[f.Name] = f.Value.String() })
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		p.Program = bi.Path
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				p.Commit, p.CommitFrom = s.Value, "build"
			case "vcs.modified":
				p.Modified = s.Value == "true"
			case "vcs", "vcs.time", "GOOS", "GOARCH":
			default:
				if s.Value == "" {
					continue
				}
				if p.Build == nil {
					p.Build = map[string]string{}
				}
				p.Build[s.Key] = s.Value
			}
		}
	}
	if p.CommitFrom == "unknown" {
		if commit, modified, ok := fromGit(sourceDir()); ok {
			p.Commit, p.Modified, p.CommitFrom = commit, modified, "git"
		}
	}
	return p
}

// sourceDir is the directory of this package's source when it is on this
// machine (not built with -trimpath), else the working directory.
func sourceDir() string {
	if _, file, _, ok := runtime.Caller(0); ok && filepath.IsAbs(file) {
		if dir := filepath.Dir(file); isDir(dir) {
			return dir
		}
	}
	return "."
}

func isDir(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.IsDir()
}

// fromGit reads the commit checked out in dir's work tree and whether the
// tree has changes; ok is false without git or outside a work tree.
func fromGit(dir string) (commit string, modified, ok bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	git := func(args ...string) ([]byte, error) {
		return exec.CommandContext(ctx, "git", append([]string{"-C", dir}, args...)...).Output()
	}
	head, err := git("rev-parse", "HEAD")
	if err != nil {
		return "", false, false
	}
	status, err := git("status", "--porcelain")
	if err != nil {
		return "", false, false
	}
	return strings.TrimSpace(string(head)), len(bytes.TrimSpace(status)) > 0, true
}
