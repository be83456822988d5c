package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
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

// TestChartScaling: the chart draws msgs/s and CPU per message against
// senders and against peers when the results hold two values or more of
// either, one line per series, a point per value; and no such panel when
// they do not.
func TestChartScaling(t *testing.T) {
	results := []result{
		{Scenario: "throughput", Payload: 64, Senders: 1, MsgsPerS: 1e6, CPUPerMsgUS: 0.3},
		{Scenario: "throughput", Payload: 64, Senders: 4, MsgsPerS: 2e6, CPUPerMsgUS: 0.25},
		{Scenario: "throughput", Payload: 1024, Senders: 1, MsgsPerS: 5e5, CPUPerMsgUS: 1.2},
		{Scenario: "throughput", Payload: 1024, Senders: 4, MsgsPerS: 6e5, CPUPerMsgUS: 1.1},
		{Scenario: "fan-out", Payload: 64, Senders: 16, Peers: 16, MsgsPerS: 3e6, CPUPerMsgUS: 0.6},
	}
	path := filepath.Join(t.TempDir(), "chart.svg")
	if err := writeChart(path, results); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	svg := string(b)
	for _, want := range []string{"msgs/s against senders", "CPU µs per message (both processes) against senders", ">64 B<", ">1024 B<"} {
		if !strings.Contains(svg, want) {
			t.Errorf("the chart lacks %q", want)
		}
	}
	if strings.Contains(svg, "against peers") {
		t.Error("a peers panel from one fan-out run")
	}
	// Two panels of two lines of two points each.
	if n := strings.Count(svg, "<circle"); n != 8 {
		t.Errorf("%d points, want 8", n)
	}
	if !strings.HasSuffix(strings.TrimSpace(svg), "</svg>") {
		t.Error("the SVG is not closed")
	}
}

// TestChartFromJSON: -chart-from draws the chart of a results file that
// -json wrote, and says what is missing without -chart.
func TestChartFromJSON(t *testing.T) {
	dir := t.TempDir()
	in, out := filepath.Join(dir, "r.json"), filepath.Join(dir, "c.svg")
	results := []result{
		{Scenario: "fan-out", Peers: 1, MsgsPerS: 3e6, CPUPerMsgUS: 0.3},
		{Scenario: "fan-out", Peers: 16, MsgsPerS: 2e6, CPUPerMsgUS: 0.5},
	}
	if err := writeJSON(in, provenance.Provenance{}, results); err != nil {
		t.Fatal(err)
	}
	if err := chartFromJSON(in, ""); err == nil {
		t.Fatal("no error without -chart")
	}
	if err := chartFromJSON(in, out); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), "msgs/s against peers") {
		t.Errorf("the chart lacks the peers panel:\n%s", b)
	}
}
