package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// ui draws progress bars on a terminal and nothing elsewhere, so that logs
// and CI output stay clean. The zero value draws nothing.
type ui struct {
	w  io.Writer
	on bool
}

// newUI decides from mode ("auto", "on", "off") whether w gets bars; auto
// means only when w is a terminal.
func newUI(mode string, w *os.File) ui {
	switch mode {
	case "on":
		return ui{w: w, on: true}
	case "off":
		return ui{w: w}
	}
	st, err := w.Stat()
	return ui{w: w, on: err == nil && st.Mode()&os.ModeCharDevice != 0}
}

// bar is one progress bar: by count when total > 0, else by time up to d.
type bar struct {
	u      ui
	label  string
	total  int64
	d      time.Duration
	start  time.Time
	n      atomic.Int64
	extra  func() string
	stop   chan struct{}
	done   sync.WaitGroup
	closed sync.Once
}

// count starts a bar that fills as Add reaches total.
func (u ui) count(label string, total int, extra func() string) *bar {
	return u.start(&bar{label: label, total: int64(total), extra: extra})
}

// timed starts a bar that fills over d.
func (u ui) timed(label string, d time.Duration, extra func() string) *bar {
	return u.start(&bar{label: label, d: d, extra: extra})
}

func (u ui) start(b *bar) *bar {
	b.u, b.start, b.stop = u, time.Now(), make(chan struct{})
	if !u.on {
		return b
	}
	b.done.Add(1)
	go func() {
		defer b.done.Done()
		t := time.NewTicker(200 * time.Millisecond)
		defer t.Stop()
		for {
			b.draw()
			select {
			case <-b.stop:
				return
			case <-t.C:
			}
		}
	}()
	return b
}

// Add counts n more units done.
func (b *bar) Add(n int) { b.n.Add(int64(n)) }

// Set sets the units done.
func (b *bar) Set(n int) { b.n.Store(int64(n)) }

func (b *bar) draw() {
	const width = 30
	el := time.Since(b.start)
	var frac float64
	var what string
	if b.total > 0 {
		n := b.n.Load()
		frac = float64(n) / float64(b.total)
		what = fmt.Sprintf("%d/%d", n, b.total)
	} else if b.d > 0 {
		frac = float64(el) / float64(b.d)
		what = fmt.Sprintf("%.0fs/%.0fs", el.Seconds(), b.d.Seconds())
	}
	frac = min(max(frac, 0), 1)
	fill := int(frac * width)
	line := fmt.Sprintf("%-14s [%s%s] %3.0f%% %s %5.1fs", b.label, strings.Repeat("=", fill), strings.Repeat(" ", width-fill), frac*100, what, el.Seconds())
	if b.extra != nil {
		line += "  " + b.extra()
	}
	fmt.Fprintf(b.u.w, "\r\033[K%s", line)
}

// Done draws the bar a last time and ends its line.
func (b *bar) Done() {
	b.closed.Do(func() {
		close(b.stop)
		b.done.Wait()
		if b.u.on {
			b.draw()
			fmt.Fprintln(b.u.w)
		}
	})
}
