package bench

import (
	"bytes"
	"fmt"
	"html"
	"math"
	"os"
	"strings"
)

// The chart: three panels over the run's time — the batch size in force
// (log scale), goodput per second against the offered rate, and p99 per
// second (log scale) against the SLO — with one line per controller and the
// phases as shaded bands.

const (
	svgWidth   = 1000
	svgLeft    = 70 // room for the axis labels
	svgRight   = 20
	svgTop     = 92 // title, legend and phase names
	svgPanelH  = 190
	svgGap     = 40
	svgBottom  = 40
	svgPlotW   = svgWidth - svgLeft - svgRight
	svgPanels  = 3
	svgHeight  = svgTop + svgPanels*svgPanelH + (svgPanels-1)*svgGap + svgBottom
	svgMaxLogP = 10000.0 // ms: p99 axis top
)

// lineColors by controller name; others take the spare colors in turn.
var lineColors = map[string]string{
	"gradient":   "#1f5fd6",
	"aimd":       "#e07b00",
	"gradient2":  "#8a3ab9",
	"target":     "#2a9d55",
	"static:100": "#777777",
}

var spareColors = []string{"#c62828", "#00838f", "#6d4c41", "#ad1457", "#9e9d24"}

// WriteSVG draws the report's controllers over time to path.
func (r *Report) WriteSVG(path string) error {
	if err := os.WriteFile(path, r.SVG(), 0o644); err != nil {
		return fmt.Errorf("write svg: %w", err)
	}
	return nil
}

// SVG renders the chart.
func (r *Report) SVG() []byte {
	var b bytes.Buffer
	dur := r.DurationS
	if dur <= 0 {
		dur = 1
	}
	x := func(t float64) float64 { return svgLeft + t/dur*svgPlotW }
	panelTop := func(i int) float64 { return float64(svgTop + i*(svgPanelH+svgGap)) }

	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="Helvetica, Arial, sans-serif" font-size="12">`+"\n",
		svgWidth, svgHeight, svgWidth, svgHeight)
	fmt.Fprintf(&b, `<rect width="%d" height="%d" fill="#ffffff"/>`+"\n", svgWidth, svgHeight)
	title := fmt.Sprintf("batchpilot bench: scenario %s, seed %d, SLO %.0f ms, control interval %.0f ms", r.Scenario, r.Seed, r.SLOms, r.ControlIntervalMS)
	if r.Quick {
		title += " (quick)"
	}
	fmt.Fprintf(&b, `<text x="%d" y="22" font-size="15" font-weight="bold">%s</text>`+"\n", svgLeft, esc(title))

	// Legend.
	colors := map[string]string{}
	spare := 0
	lx := float64(svgLeft)
	for _, res := range r.Results {
		c, ok := lineColors[res.Controller]
		if !ok {
			c = spareColors[spare%len(spareColors)]
			spare++
		}
		colors[res.Controller] = c
		label := fmt.Sprintf("%s (%.0f/s)", res.Controller, res.GoodputRPS)
		fmt.Fprintf(&b, `<line x1="%.1f" y1="42" x2="%.1f" y2="42" stroke="%s" stroke-width="%s"/>`+"\n", lx, lx+22, c, strokeWidth(res.Controller))
		fmt.Fprintf(&b, `<text x="%.1f" y="46">%s</text>`+"\n", lx+27, esc(label))
		lx += 27 + float64(len(label))*6.6 + 18
	}
	fmt.Fprintf(&b, `<line x1="%.1f" y1="42" x2="%.1f" y2="42" stroke="#999999" stroke-width="1.5" stroke-dasharray="4 3"/>`+"\n", lx, lx+22)
	fmt.Fprintf(&b, `<text x="%.1f" y="46">offered</text>`+"\n", lx+27)
	fmt.Fprintf(&b, `<text x="%d" y="64" fill="#555555">in brackets: goodput over the whole run; dashed: the offered load (goodput panel) and the SLO (p99 panel)</text>`+"\n", svgLeft)

	// Phase bands and names, across all panels.
	var start float64
	for i, name := range r.PhaseNames {
		length := phaseLength(r, i)
		if i%2 == 1 {
			for p := range svgPanels {
				fmt.Fprintf(&b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%d" fill="#f2f4f7"/>`+"\n",
					x(start), panelTop(p), x(start+length)-x(start), svgPanelH)
			}
		}
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="middle" fill="#333333">%s</text>`+"\n",
			(x(start)+x(start+length))/2, panelTop(0)-6, esc(name))
		start += length
	}

	// Panel 1: batch size, log scale.
	maxSize := 10.0
	for _, res := range r.Results {
		for _, s := range res.Series {
			maxSize = math.Max(maxSize, s.BatchSize)
		}
	}
	top := math.Pow(10, math.Ceil(math.Log10(maxSize)))
	logY := func(p int, v, lo, hi float64) float64 {
		v = math.Max(lo, math.Min(hi, v))
		f := (math.Log10(v) - math.Log10(lo)) / (math.Log10(hi) - math.Log10(lo))
		return panelTop(p) + svgPanelH - f*svgPanelH
	}
	axes(&b, panelTop(0), "batch size")
	for v := 1.0; v <= top; v *= 10 {
		yTick(&b, logY(0, v, 1, top), fmtCount(v))
	}
	for _, res := range r.Results {
		var pts []string
		for _, s := range res.Series {
			if s.BatchSize > 0 {
				pts = append(pts, fmt.Sprintf("%.1f,%.1f", x(float64(s.T)+0.5), logY(0, s.BatchSize, 1, top)))
			}
		}
		polyline(&b, pts, colors[res.Controller], strokeWidth(res.Controller), "")
	}

	// Panel 2: goodput per second, linear, with the offered rate.
	maxRate := 1.0
	var offered []Second
	if len(r.Results) > 0 {
		offered = r.Results[0].Series
	}
	for _, res := range r.Results {
		for _, s := range res.Series {
			maxRate = math.Max(maxRate, math.Max(s.GoodputRPS, s.OfferedRPS))
		}
	}
	rateTop := niceCeil(maxRate)
	linY := func(v float64) float64 {
		return panelTop(1) + svgPanelH - math.Max(0, math.Min(1, v/rateTop))*svgPanelH
	}
	axes(&b, panelTop(1), "goodput, records/s")
	for i := 0; i <= 4; i++ {
		v := rateTop * float64(i) / 4
		yTick(&b, linY(v), fmtCount(v))
	}
	var pts []string
	for _, s := range offered {
		pts = append(pts, fmt.Sprintf("%.1f,%.1f", x(float64(s.T)+0.5), linY(s.OfferedRPS)))
	}
	polyline(&b, pts, "#999999", "1.5", "4 3")
	for _, res := range r.Results {
		var pts []string
		for _, s := range res.Series {
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", x(float64(s.T)+0.5), linY(s.GoodputRPS)))
		}
		polyline(&b, pts, colors[res.Controller], strokeWidth(res.Controller), "")
	}

	// Panel 3: p99 per second, log scale, with the SLO.
	axes(&b, panelTop(2), "p99, ms")
	for v := 1.0; v <= svgMaxLogP; v *= 10 {
		yTick(&b, logY(2, v, 1, svgMaxLogP), fmtCount(v))
	}
	sloY := logY(2, r.SLOms, 1, svgMaxLogP)
	fmt.Fprintf(&b, `<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#999999" stroke-width="1.5" stroke-dasharray="4 3"/>`+"\n",
		svgLeft, sloY, svgLeft+svgPlotW, sloY)
	for _, res := range r.Results {
		var pts []string
		for _, s := range res.Series {
			if s.P99ms > 0 {
				pts = append(pts, fmt.Sprintf("%.1f,%.1f", x(float64(s.T)+0.5), logY(2, s.P99ms, 1, svgMaxLogP)))
			}
		}
		polyline(&b, pts, colors[res.Controller], strokeWidth(res.Controller), "")
	}

	// Time axis.
	base := panelTop(svgPanels-1) + svgPanelH
	step := niceCeil(dur / 8)
	for t := 0.0; t <= dur+1e-9; t += step {
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#333333"/>`+"\n", x(t), base, x(t), base+4)
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="middle">%s</text>`+"\n", x(t), base+17, fmtCount(t))
	}
	fmt.Fprintf(&b, `<text x="%d" y="%.1f" text-anchor="end" fill="#555555">seconds</text>`+"\n", svgLeft+svgPlotW, base+32)
	b.WriteString("</svg>\n")
	return b.Bytes()
}

// phaseLength is phase i's length in seconds (an even share of the run
// when the report does not say).
func phaseLength(r *Report, i int) float64 {
	if len(r.PhaseLengthsS) == len(r.PhaseNames) {
		return r.PhaseLengthsS[i]
	}
	return r.DurationS / float64(len(r.PhaseNames))
}

func strokeWidth(controller string) string {
	if controller == "gradient" {
		return "2.2"
	}
	return "1.4"
}

func axes(b *bytes.Buffer, top float64, label string) {
	fmt.Fprintf(b, `<rect x="%d" y="%.1f" width="%d" height="%d" fill="none" stroke="#333333"/>`+"\n", svgLeft, top, svgPlotW, svgPanelH)
	fmt.Fprintf(b, `<text x="%d" y="%.1f" font-weight="bold">%s</text>`+"\n", svgLeft+6, top+15, esc(label))
}

func yTick(b *bytes.Buffer, y float64, label string) {
	fmt.Fprintf(b, `<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#e0e0e0"/>`+"\n", svgLeft, y, svgLeft+svgPlotW, y)
	fmt.Fprintf(b, `<text x="%d" y="%.1f" text-anchor="end">%s</text>`+"\n", svgLeft-6, y+4, esc(label))
}

func polyline(b *bytes.Buffer, pts []string, color, width, dash string) {
	if len(pts) == 0 {
		return
	}
	extra := ""
	if dash != "" {
		extra = fmt.Sprintf(` stroke-dasharray="%s"`, dash)
	}
	fmt.Fprintf(b, `<polyline fill="none" stroke="%s" stroke-width="%s" stroke-linejoin="round"%s points="%s"/>`+"\n",
		color, width, extra, strings.Join(pts, " "))
}

// niceCeil rounds v up to 1, 2 or 5 times a power of ten.
func niceCeil(v float64) float64 {
	if v <= 0 {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 5, 10} {
		if m*p >= v {
			return m * p
		}
	}
	return 10 * p
}

// fmtCount writes 20000 as 20k.
func fmtCount(v float64) string {
	switch {
	case v >= 1e6 && math.Mod(v, 1e6) == 0:
		return fmt.Sprintf("%.0fM", v/1e6)
	case v >= 1e3 && math.Mod(v, 1e3) == 0:
		return fmt.Sprintf("%.0fk", v/1e3)
	case v >= 1e3:
		return fmt.Sprintf("%.1fk", v/1e3)
	}
	return fmt.Sprintf("%.0f", v)
}

func esc(s string) string { return html.EscapeString(s) }
