package main

import (
	"encoding/json"
	"errors"
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
		case "throughput":
			notes = fmt.Sprintf("%.0f envelopes per frame", r.EnvPerFrame)
		case "fan-out":
			notes = fmt.Sprintf("heap per endpoint: idle %.0f KiB, busy %.0f KiB", r.IdleBytesPerEP/1024, r.BusyBytesPerEP/1024)
		case "idle-peers":
			notes = fmt.Sprintf("heap %.1f MiB in all, %.0f KiB per endpoint; %d goroutines (%.1f per endpoint)",
				float64(r.HeapBytes)/(1<<20), r.IdleBytesPerEP/1024, r.Goroutines, float64(r.Goroutines)/float64(max(r.Peers, 1)))
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
	panels := scalingSeries(results)
	panelsTop := curveTop + curveH + 70
	if curveH == 0 {
		panelsTop = top + barsH + 30 // no latency curve between
	}
	height := panelsTop + ((len(panels)+1)/2)*(panelH+panelGap) + 10
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
	for i, pn := range panels {
		x := 10 + (i%2)*(width/2)
		y := panelsTop + (i/2)*(panelH+panelGap)
		pn.draw(&b, x, y, width/2-20)
	}
	b.WriteString("</svg>\n")
	return os.WriteFile(path, []byte(b.String()), 0o644)
}

// Sizes of the scaling panels.
const panelH, panelGap = 220, 30

// panel is a line chart of one measure against a run parameter (senders or
// peers), one line per series, the parameter's values evenly spaced.
type panel struct {
	title  string
	xLabel string
	xs     []int // the parameter's values, ascending
	series []line
}

type line struct {
	name string
	ys   map[int]float64 // by x
}

var seriesColours = []string{"#3a7bd5", "#d53a3a", "#2a9d4b", "#8e44ad"}

// scalingSeries makes the panels the results allow: msgs/s and CPU per
// message against senders (throughput, one line per payload) and against
// peers (fan-out), each where there are two values or more to compare.
func scalingSeries(results []result) []panel {
	type pick struct {
		scenario string
		x        func(result) int
		series   func(result) string
		xLabel   string
	}
	picks := []pick{
		{"throughput", func(r result) int { return r.Senders }, func(r result) string { return fmt.Sprintf("%d B", r.Payload) }, "senders"},
		{"fan-out", func(r result) int { return r.Peers }, func(result) string { return "64 B, 16 senders" }, "peers"},
	}
	var panels []panel
	for _, pk := range picks {
		rate := panel{title: "msgs/s against " + pk.xLabel, xLabel: pk.xLabel}
		cpu := panel{title: "CPU µs per message (both processes) against " + pk.xLabel, xLabel: pk.xLabel}
		index := map[string]int{}
		for _, r := range results {
			if r.Scenario != pk.scenario || r.MsgsPerS <= 0 {
				continue
			}
			name, x := pk.series(r), pk.x(r)
			i, ok := index[name]
			if !ok {
				i = len(rate.series)
				index[name] = i
				rate.series = append(rate.series, line{name: name, ys: map[int]float64{}})
				cpu.series = append(cpu.series, line{name: name, ys: map[int]float64{}})
			}
			rate.series[i].ys[x], cpu.series[i].ys[x] = r.MsgsPerS, r.CPUPerMsgUS
			if !slices.Contains(rate.xs, x) {
				rate.xs = append(rate.xs, x)
			}
		}
		if len(rate.xs) < 2 {
			continue
		}
		slices.Sort(rate.xs)
		cpu.xs = rate.xs
		panels = append(panels, rate, cpu)
	}
	return panels
}

// draw draws the panel with its top left corner at x, y.
func (p panel) draw(b *strings.Builder, x, y, w int) {
	const padL, padB, padT = 70, 40, 24
	x0, x1 := float64(x+padL), float64(x+w-10)
	y0, y1 := float64(y+panelH-padB), float64(y+padT)
	maxY := 0.0
	for _, s := range p.series {
		for _, v := range s.ys {
			maxY = math.Max(maxY, v)
		}
	}
	if maxY <= 0 {
		return
	}
	maxY *= 1.1
	fmt.Fprintf(b, `<text x="%d" y="%d" font-size="13">%s</text>`+"\n", x, y+14, html.EscapeString(p.title))
	fmt.Fprintf(b, `<line x1="%.0f" y1="%.0f" x2="%.0f" y2="%.0f" stroke="black"/>`, x0, y0, x1, y0)
	fmt.Fprintf(b, `<line x1="%.0f" y1="%.0f" x2="%.0f" y2="%.0f" stroke="black"/>`+"\n", x0, y0, x0, y1)
	px := func(i int) float64 { return x0 + (x1-x0)*(float64(i)+0.5)/float64(len(p.xs)) }
	py := func(v float64) float64 { return y0 - (y0-y1)*v/maxY }
	for _, f := range []float64{0, 0.5, 1} {
		v := maxY / 1.1 * f
		fmt.Fprintf(b, `<text x="%.0f" y="%.1f" text-anchor="end">%s</text>`, x0-4, py(v)+4, shortNumber(v))
	}
	for i, xv := range p.xs {
		fmt.Fprintf(b, `<text x="%.1f" y="%.0f" text-anchor="middle">%d</text>`, px(i), y0+16, xv)
	}
	fmt.Fprintf(b, `<text x="%.0f" y="%.0f" text-anchor="middle">%s</text>`+"\n", (x0+x1)/2, y0+32, p.xLabel)
	for si, s := range p.series {
		colour := seriesColours[si%len(seriesColours)]
		var pts []string
		for i, xv := range p.xs {
			if v, ok := s.ys[xv]; ok {
				pts = append(pts, fmt.Sprintf("%.1f,%.1f", px(i), py(v)))
				fmt.Fprintf(b, `<circle cx="%.1f" cy="%.1f" r="3" fill="%s"/>`, px(i), py(v), colour)
			}
		}
		fmt.Fprintf(b, `<polyline fill="none" stroke="%s" stroke-width="2" points="%s"/>`, colour, strings.Join(pts, " "))
		fmt.Fprintf(b, `<text x="%.0f" y="%d" fill="%s">%s</text>`+"\n", x1-110, int(y1)+14*si+4, colour, html.EscapeString(s.name))
	}
}

// shortNumber prints v with a k or M suffix, or with two decimals below 10.
func shortNumber(v float64) string {
	switch {
	case v >= 1e6:
		return fmt.Sprintf("%.1fM", v/1e6)
	case v >= 1e4:
		return fmt.Sprintf("%.0fk", v/1e3)
	case v >= 10:
		return fmt.Sprintf("%.0f", v)
	}
	return fmt.Sprintf("%.2f", v)
}

// chartFromJSON draws the chart of the results in the JSON file from into
// the SVG file to.
func chartFromJSON(from, to string) error {
	if to == "" {
		return errors.New("-chart-from needs -chart, the SVG file to write")
	}
	data, err := os.ReadFile(from)
	if err != nil {
		return err
	}
	var f resultsFile
	if err := json.Unmarshal(data, &f); err != nil {
		return fmt.Errorf("%s: %w", from, err)
	}
	return writeChart(to, f.Results)
}
