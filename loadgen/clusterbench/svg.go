package clusterbench

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// SVGPath is where an arm's chart goes for --svg target: inside target
// when it is a directory (or ends in a slash), else target-ARM.svg.
func SVGPath(target, arm string) string {
	name := strings.ReplaceAll(arm, ":", "-")
	if st, err := os.Stat(target); (err == nil && st.IsDir()) || strings.HasSuffix(target, "/") {
		return filepath.Join(target, "cluster-"+name+".svg")
	}
	return strings.TrimSuffix(target, ".svg") + "-" + name + ".svg"
}

// WriteSVGs draws one chart per arm (the budget sweep included) and
// returns the files written.
func (r *Report) WriteSVGs(target string) ([]string, error) {
	if strings.HasSuffix(target, "/") {
		if err := os.MkdirAll(target, 0o755); err != nil {
			return nil, err
		}
	}
	var files []string
	arms := append([]Arm(nil), r.Arms...)
	for _, a := range r.BudgetSweep {
		if r.Arm(a.Name) == nil {
			arms = append(arms, a)
		}
	}
	for _, a := range arms {
		p := SVGPath(target, a.Name)
		if err := os.WriteFile(p, a.svg(r), 0o644); err != nil {
			return files, fmt.Errorf("write %s: %w", p, err)
		}
		files = append(files, p)
	}
	return files, nil
}

// nodeColors tell the nodes apart in the grants panel (the first is the
// hot spot's node); more nodes than colours reuse them.
var nodeColors = []string{"#cf222e", "#0550ae", "#1a7f37", "#8250df", "#bf8700", "#57606a", "#e16f24", "#1b7c83"}

// svg draws, over the seconds of the load, the goodput against the offered
// load (top), the downstream's peak in-flight bytes against its knee,
// overloaded seconds shaded (middle), and, where a cluster budget is
// shared (the learned and hand-set budget arms), each node's grant
// (bottom).
func (a Arm) svg(r *Report) []byte {
	const w, left, right, top, panel, gap = 900, 70, 20, 40, 150, 40
	grants := a.Name == ArmLearned || strings.HasPrefix(a.Name, "budget:")
	var maxGrant float64
	for _, nd := range a.Nodes {
		for _, s := range nd.Series {
			maxGrant = max(maxGrant, float64(s.GrantBytes))
		}
	}
	grants = grants && maxGrant > 0
	h, bottom := 420, top+2*panel+gap // the chart's height, the last panel's foot
	if grants {
		h, bottom = h+panel+gap, bottom+panel+gap
	}
	n := len(a.Series)
	var maxRate, maxBytes float64
	for _, s := range a.Series {
		maxRate = max(maxRate, s.OfferedRPS, s.GoodputRPS)
		maxBytes = max(maxBytes, float64(s.InFlightBytes), float64(s.KneeBytes)*1.5)
	}
	maxRate, maxBytes = max(maxRate, 1), max(maxBytes, 1)
	x := func(t float64) float64 { return left + t*float64(w-left-right)/float64(max(n, 1)) }
	y1 := func(v float64) float64 { return top + panel - v/maxRate*panel }
	y2 := func(v float64) float64 { return top + panel + gap + panel - v/maxBytes*panel }
	var b bytes.Buffer
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" font-size="11">`+"\n", w, h)
	fmt.Fprintf(&b, `<rect width="%d" height="%d" fill="white"/>`+"\n", w, h)
	fmt.Fprintf(&b, `<text x="%d" y="18" font-size="13">%s, %d nodes: goodput %.0f/s, p99 %.0f ms, overloaded %.1f%% of seconds, Jain %.3f</text>`+"\n",
		left, a.Name, r.Nodes, a.GoodputRPS, a.P99ms, 100*a.OverloadRatio, a.JainIndex)
	for i, s := range a.Series {
		if s.Overloaded {
			fmt.Fprintf(&b, `<rect x="%.1f" y="%d" width="%.1f" height="%d" fill="#f8d0d0"/>`+"\n", x(float64(i)), top+panel+gap, x(1)-x(0), panel)
		}
		if i == 0 || s.Phase != a.Series[i-1].Phase {
			fmt.Fprintf(&b, `<line x1="%.1f" x2="%.1f" y1="%d" y2="%d" stroke="#999" stroke-dasharray="3,3"/><text x="%.1f" y="%d" fill="#555">%s</text>`+"\n",
				x(float64(i)), x(float64(i)), top, bottom, x(float64(i))+3, top+10, s.Phase)
		}
	}
	line := func(color string, pts func(i int) (float64, float64)) {
		var p strings.Builder
		for i := range n {
			px, py := pts(i)
			fmt.Fprintf(&p, "%.1f,%.1f ", px, py)
		}
		fmt.Fprintf(&b, `<polyline fill="none" stroke="%s" stroke-width="1.5" points="%s"/>`+"\n", color, p.String())
	}
	line("#aaa", func(i int) (float64, float64) { return x(float64(i) + 0.5), y1(a.Series[i].OfferedRPS) })
	line("#1a7f37", func(i int) (float64, float64) { return x(float64(i) + 0.5), y1(a.Series[i].GoodputRPS) })
	line("#c00", func(i int) (float64, float64) { return x(float64(i) + 0.5), y2(float64(a.Series[i].KneeBytes)) })
	line("#0550ae", func(i int) (float64, float64) { return x(float64(i) + 0.5), y2(float64(a.Series[i].InFlightBytes)) })
	if a.Name == ArmLearned {
		line("#8250df", func(i int) (float64, float64) {
			return x(float64(i) + 0.5), y2(min(float64(a.Series[i].BudgetBytes), maxBytes))
		})
	}
	fmt.Fprintf(&b, `<text x="4" y="%d">%.0f/s</text><text x="4" y="%d">0</text>`+"\n", top+8, maxRate, top+panel)
	fmt.Fprintf(&b, `<text x="4" y="%d">%.0f KiB</text><text x="4" y="%d">0</text>`+"\n", top+panel+gap+8, maxBytes/1024, top+2*panel+gap)
	fmt.Fprintf(&b, `<text x="%d" y="%d"><tspan fill="#1a7f37">goodput within the SLO</tspan>, <tspan fill="#888">offered</tspan> (records/s, all nodes)</text>`+"\n", left, top+panel+14)
	fmt.Fprintf(&b, `<text x="%d" y="%d"><tspan fill="#0550ae">downstream in-flight bytes (peak per second)</tspan>, <tspan fill="#c00">its knee</tspan>%s; shaded: past the knee or 429</text>`+"\n", left, top+2*panel+gap+14, learnedLegend(a.Name))
	if grants {
		y3 := func(v float64) float64 { return float64(bottom) - v/maxGrant*panel }
		var legend strings.Builder
		for k, nd := range a.Nodes {
			color := nodeColors[k%len(nodeColors)]
			var p strings.Builder
			for i, s := range nd.Series {
				fmt.Fprintf(&p, "%.1f,%.1f ", x(float64(i)+0.5), y3(float64(s.GrantBytes)))
			}
			fmt.Fprintf(&b, `<polyline fill="none" stroke="%s" stroke-width="1.2" points="%s"/>`+"\n", color, p.String())
			fmt.Fprintf(&legend, `<tspan fill="%s">%s</tspan> `, color, nd.Name)
		}
		fmt.Fprintf(&b, `<text x="4" y="%d">%.0f KiB</text><text x="4" y="%d">0</text>`+"\n", bottom-panel+8, maxGrant/1024, bottom)
		fmt.Fprintf(&b, `<text x="%d" y="%d">each node's grant (bytes, once a second): %s</text>`+"\n", left, bottom+14, legend.String())
	}
	b.WriteString("</svg>\n")
	return b.Bytes()
}

func learnedLegend(arm string) string {
	if arm == ArmLearned {
		return `, <tspan fill="#8250df">the learned budget</tspan>`
	}
	return ""
}
