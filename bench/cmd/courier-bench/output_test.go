package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/courier-go/courier/bench/internal/provenance"
)

// TestWriteJSON: the file is an object with the run's provenance and its
// results.
func TestWriteJSON(t *testing.T) {
	args := []string{"-scenarios", "throughput", "-duration", "1s"}
	cfg, err := parseFlags(args)
	if err != nil {
		t.Fatal(err)
	}
	prov := provenance.Collect(cfg.flags, args, time.Now())
	path := filepath.Join(t.TempDir(), "out.json")
	want := []result{{Scenario: "throughput", Payload: 64, Senders: 1, Messages: 10, MsgsPerS: 5}}
	if err := writeJSON(path, prov, want); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		Provenance provenance.Provenance `json:"provenance"`
		Results    []result              `json:"results"`
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&got); err != nil {
		t.Fatalf("%v in\n%s", err, b)
	}
	if len(got.Results) != 1 || got.Results[0].Messages != 10 {
		t.Errorf("results %+v", got.Results)
	}
	p := got.Provenance
	if p.Flags["duration"] != "1s" || p.Flags["scenarios"] != "throughput" || p.Flags["payloads"] != "64,1024,16384" || p.NumCPU == 0 || p.GoVersion == "" || p.Commit == "" {
		t.Errorf("provenance %+v", p)
	}
}
