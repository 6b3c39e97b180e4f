package main

import (
	"bytes"
	"fmt"
	"html"
	"math"
	"time"
)

// latencySeries is one curve of a latency chart.
type latencySeries struct {
	name string
	h    *Histogram
}

var palette = []string{"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf"}

// latencySVG draws the percentile spectrum of each series, as HdrHistogram
// plots do: the x axis is the percentile on a log scale of 1/(1-q), so the
// tail (99%, 99.9%, 99.99%) gets as much room as the median.
func latencySVG(title string, series []latencySeries) []byte {
	const (
		w, h                     = 860, 480
		left, right, top, bottom = 70, 30, 50, 60
		pw, ph                   = w - left - right, h - top - bottom
		steps                    = 25 // points per decade
	)
	var maxCount uint64
	for _, s := range series {
		if s.h != nil {
			maxCount = max(maxCount, s.h.Count())
		}
	}
	xmax := 1.0
	if maxCount > 0 {
		xmax = math.Min(4, math.Max(1, math.Floor(math.Log10(float64(maxCount)))))
	}
	type pt struct{ x, y float64 }
	curves := make([][]pt, len(series))
	var ymax float64
	for i, s := range series {
		if s.h == nil || s.h.Count() == 0 {
			continue
		}
		for k := 0; k <= int(xmax*steps); k++ {
			x := float64(k) / steps
			q := 1 - math.Pow(10, -x)
			y := float64(s.h.Quantile(q)) / float64(time.Millisecond)
			curves[i] = append(curves[i], pt{x, y})
			ymax = math.Max(ymax, y)
		}
	}
	ytop, ystep := niceScale(ymax)
	sx := func(x float64) float64 { return left + x/xmax*pw }
	sy := func(y float64) float64 { return top + ph - y/ytop*ph }

	var b bytes.Buffer
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="12">`+"\n", w, h, w, h)
	fmt.Fprintf(&b, `<rect width="%d" height="%d" fill="white"/>`+"\n", w, h)
	fmt.Fprintf(&b, `<text x="%d" y="28" font-size="16" font-weight="bold">%s</text>`+"\n", left, html.EscapeString(title))
	// Grid and axes.
	for y := 0.0; y <= ytop+ystep/2; y += ystep {
		fmt.Fprintf(&b, `<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#ddd"/>`+"\n", left, sy(y), left+pw, sy(y))
		fmt.Fprintf(&b, `<text x="%d" y="%.1f" text-anchor="end">%s</text>`+"\n", left-6, sy(y)+4, fmtMs(y))
	}
	labels := []string{"0%", "90%", "99%", "99.9%", "99.99%"}
	for x := 0; x <= int(xmax); x++ {
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#ddd"/>`+"\n", sx(float64(x)), top, sx(float64(x)), top+ph)
		fmt.Fprintf(&b, `<text x="%.1f" y="%d" text-anchor="middle">%s</text>`+"\n", sx(float64(x)), top+ph+18, labels[x])
	}
	fmt.Fprintf(&b, `<rect x="%d" y="%d" width="%d" height="%d" fill="none" stroke="#333"/>`+"\n", left, top, pw, ph)
	fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="middle">percentile</text>`+"\n", left+pw/2, h-14)
	fmt.Fprintf(&b, `<text transform="translate(18,%d) rotate(-90)" text-anchor="middle">latency (ms)</text>`+"\n", top+ph/2)
	// Curves and legend.
	for i, c := range curves {
		if len(c) == 0 {
			continue
		}
		color := palette[i%len(palette)]
		var path bytes.Buffer
		for j, p := range c {
			cmd := "L"
			if j == 0 {
				cmd = "M"
			}
			fmt.Fprintf(&path, "%s%.1f,%.1f ", cmd, sx(p.x), sy(p.y))
		}
		fmt.Fprintf(&b, `<path d="%s" fill="none" stroke="%s" stroke-width="2"/>`+"\n", path.String(), color)
		s := series[i]
		ly := top + 18 + 18*i
		fmt.Fprintf(&b, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="%s" stroke-width="3"/>`+"\n", left+12, ly-4, left+36, ly-4, color)
		fmt.Fprintf(&b, `<text x="%d" y="%d">%s — p50 %s, p99 %s, p99.9 %s ms (n=%d)</text>`+"\n", left+42, ly,
			html.EscapeString(s.name), fmtMs(float64(s.h.Quantile(0.5))/1e6), fmtMs(float64(s.h.Quantile(0.99))/1e6),
			fmtMs(float64(s.h.Quantile(0.999))/1e6), s.h.Count())
	}
	if len(curves) == 0 || ymax == 0 {
		fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="middle">no samples</text>`+"\n", left+pw/2, top+ph/2)
	}
	b.WriteString("</svg>\n")
	return b.Bytes()
}

// niceScale returns an axis top of 1, 2 or 5 times a power of ten, at or
// above v, split into five steps.
func niceScale(v float64) (top, step float64) {
	if v <= 0 {
		return 1, 0.2
	}
	p := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 5, 10} {
		if m*p >= v {
			return m * p, m * p / 5
		}
	}
	return 10 * p, 2 * p
}

func fmtMs(v float64) string {
	switch {
	case v == 0:
		return "0"
	case v < 1:
		return fmt.Sprintf("%.2f", v)
	case v < 10:
		return fmt.Sprintf("%.1f", v)
	}
	return fmt.Sprintf("%.0f", v)
}
