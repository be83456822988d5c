package main

import (
	"encoding/json"
	"fmt"
	"html"
	"io"
	"math"
	"os"
	"runtime"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/courier-go/courier/bench/internal/provenance"
)

func printTable(w io.Writer, results []result) {
	fmt.Fprintf(w, "\ncourier-bench on %d cores, %s\n\n", runtime.NumCPU(), runtime.Version())
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "scenario\tmsgs/s\tMB/s\tCPU µs/msg\tallocs/msg (send+recv)\tdropped\tnotes\t")
	for _, r := range results {
		notes := ""
		switch r.Scenario {
		case "priority":
			notes = fmt.Sprintf("system lane p50 %.0fµs p99 %.0fµs p999 %.0fµs max %.0fµs (%d envelopes)",
				r.LatencyP50US, r.LatencyP99US, r.LatencyP999US, r.LatencyMaxUS, r.Messages)
		case "fan-out":
			notes = fmt.Sprintf("heap per endpoint: idle %.0f KiB, busy %.0f KiB", r.IdleBytesPerEP/1024, r.BusyBytesPerEP/1024)
		}
		allocs := ""
		if r.AllocsPerMsg > 0 || r.MsgsPerS > 0 {
			allocs = fmt.Sprintf("%.3f (%.3f+%.3f)", r.AllocsPerMsg, r.SendAllocsPer, r.RecvAllocsPer)
		}
		rate, mb, cpu := "", "", ""
		if r.MsgsPerS > 0 {
			rate, mb, cpu = fmt.Sprintf("%.0f", r.MsgsPerS), fmt.Sprintf("%.1f", r.MBPerS), fmt.Sprintf("%.2f", r.CPUPerMsgUS)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%s\t\n", r.name(), rate, mb, cpu, allocs, r.Dropped, notes)
	}
	tw.Flush()
}

// resultsFile is the JSON file of a run: where it comes from, and its
// results in the order they ran.
type resultsFile struct {
	Provenance provenance.Provenance `json:"provenance"`
	Results    []result              `json:"results"`
}

func writeJSON(path string, prov provenance.Provenance, results []result) error {
	b, err := json.MarshalIndent(resultsFile{Provenance: prov, Results: results}, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

// writeChart writes a self-contained SVG: a bar per throughput run, and the
// distribution of system-lane latency as a cumulative curve.
func writeChart(path string, results []result) error {
	var b strings.Builder
	const width, barH, gap, left = 900, 22, 6, 330
	var bars []result
	var lat []float64
	for _, r := range results {
		if r.MsgsPerS > 0 {
			bars = append(bars, r)
		}
		if r.Scenario == "priority" {
			lat = slices.Sorted(slices.Values(r.LatenciesUS))
		}
	}
	top := 40
	barsH := len(bars) * (barH + gap)
	curveTop := top + barsH + 60
	curveH := 0
	if len(lat) > 0 {
		curveH = 260
	}
	height := curveTop + curveH + 50
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" font-size="12">`+"\n", width, height)
	fmt.Fprintf(&b, `<text x="10" y="22" font-size="16">courier-bench: throughput (msgs/s)</text>`+"\n")
	maxRate := 0.0
	for _, r := range bars {
		maxRate = math.Max(maxRate, r.MsgsPerS)
	}
	for i, r := range bars {
		y := top + i*(barH+gap)
		w := (width - left - 120) * r.MsgsPerS / maxRate
		fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="end">%s</text>`, left-8, y+15, html.EscapeString(r.name()))
		fmt.Fprintf(&b, `<rect x="%d" y="%d" width="%.1f" height="%d" fill="#3a7bd5"/>`, left, y, w, barH)
		fmt.Fprintf(&b, `<text x="%.1f" y="%d">%.0f</text>`+"\n", float64(left)+w+6, y+15, r.MsgsPerS)
	}
	if len(lat) > 0 {
		fmt.Fprintf(&b, `<text x="10" y="%d" font-size="16">system-lane latency under a flooded, stalled user lane: share of envelopes delivered within x µs</text>`+"\n", curveTop-20)
		x0, x1 := float64(left-250), float64(width-40)
		y0, y1 := float64(curveTop+curveH), float64(curveTop)
		maxL := lat[len(lat)-1]
		fmt.Fprintf(&b, `<line x1="%.0f" y1="%.0f" x2="%.0f" y2="%.0f" stroke="black"/>`, x0, y0, x1, y0)
		fmt.Fprintf(&b, `<line x1="%.0f" y1="%.0f" x2="%.0f" y2="%.0f" stroke="black"/>`+"\n", x0, y0, x0, y1)
		// Logarithmic latency axis.
		lo := math.Max(1, lat[0])
		pos := func(v float64) float64 {
			if maxL <= lo {
				return x0
			}
			return x0 + (x1-x0)*math.Log(math.Max(v, lo)/lo)/math.Log(maxL/lo)
		}
		var pts []string
		for i, v := range lat {
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", pos(v), y0-(y0-y1)*float64(i+1)/float64(len(lat))))
		}
		fmt.Fprintf(&b, `<polyline fill="none" stroke="#d53a3a" stroke-width="2" points="%s"/>`+"\n", strings.Join(pts, " "))
		for _, tick := range []float64{lo, math.Sqrt(lo * maxL), maxL} {
			fmt.Fprintf(&b, `<text x="%.1f" y="%.0f" text-anchor="middle">%.0fµs</text>`, pos(tick), y0+16, tick)
		}
		for _, f := range []float64{0.5, 0.99, 1} {
			fmt.Fprintf(&b, `<text x="%.0f" y="%.1f" text-anchor="end">%g%%</text>`, x0-4, y0-(y0-y1)*f+4, f*100)
		}
		b.WriteString("\n")
	}
	b.WriteString("</svg>\n")
	return os.WriteFile(path, []byte(b.String()), 0o644)
}
