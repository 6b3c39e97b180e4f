package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"
)

// centrifugoRedisPrefix is the redis key prefix of the Centrifugo measured
// beside the parley run appID: its own, so that its keys can be deleted.
func centrifugoRedisPrefix(appID string) string { return appID + "-centrifugo" }

// startReference starts the Centrifugo of ref (its engine is ref.Mode's
// suffix) and returns run, which measures one direct run against it, and
// done, which stops it and picks the median run; done may be called more
// than once. A failure is recorded in ref.Failed, and parley's own runs go
// on without the reference.
func startReference(ctx context.Context, cfg suiteConfig, dir, appID string, mi int, ref *ModeResult, u ui, stderr io.Writer) (run func(i int), done func()) {
	engine := strings.TrimPrefix(ref.Mode, "centrifugo-")
	start := time.Now()
	p, err := startCentrifugo(ctx, cfg.centrifugo, dir, centrifugoConfig{
		Engine: engine, RedisAddr: cfg.redisAddr, RedisPrefix: centrifugoRedisPrefix(appID),
	})
	if err != nil {
		ref.Failed = err.Error()
		fmt.Fprintf(stderr, "%s: %v\n", ref.Mode, err)
		return func(int) {}, func() {}
	}
	ref.ServerLog, ref.StartSeconds = p.LogPath, round2(time.Since(start).Seconds())
	// Source addresses of its own, away from parley's in this mode's range.
	c := common{
		target: p.Base, serverPID: p.Cmd.Process.Pid, sourceBase: fmt.Sprintf("127.0.%d.100", mi+1),
		progress: cfg.progress, concurrency: cfg.concurrency,
	}
	newE := func(conns int) (*env, error) {
		e, err := newEnv(ctx, c, conns, stderr)
		if e != nil {
			e.ui = u
		}
		return e, err
	}
	if e, err := newE(0); err == nil {
		ref.Idle = e.probe.sample(ctx)
	}
	var runs []*DirectResult
	var once sync.Once
	done = func() {
		once.Do(func() {
			if !p.stop(10 * time.Second) {
				fmt.Fprintln(stderr, "centrifugo did not stop within 10s; killed it")
			}
			if len(runs) > 0 {
				ref.Direct = medianRun(runs)
			}
		})
	}
	run = func(i int) {
		if ref.Failed != "" || ctx.Err() != nil {
			return
		}
		fmt.Fprintf(stderr, "-- %s direct, flat out, run %d of %d: %d pairs for %s\n", ref.Mode, i+1, max(cfg.runs, 1), cfg.direct.pairs, cfg.direct.duration)
		e, err := newE(2 * cfg.direct.pairs)
		var r *DirectResult
		if err == nil {
			r, err = runDirectCentrifugo(ctx, e, cfg.direct, p)
		}
		if err != nil {
			ref.Failed = "direct: " + err.Error()
			fmt.Fprintf(stderr, "%s: %s\n", ref.Mode, ref.Failed)
			return
		}
		fmt.Fprint(stderr, r.text())
		fmt.Fprintf(stderr, "  echoes to the publisher %d (Centrifugo pushes a publication to every subscriber)\n", r.Echoes)
		runs = append(runs, r)
		ref.DirectRuns = append(ref.DirectRuns, r.AckedPerSec)
		ref.DirectLost += r.Lost
	}
	return run, done
}

// referenceTable puts each parley mode beside the Centrifugo engine that
// alternated with it, with parley / Centrifugo ratios, and says what a
// reply means on each side. It is empty when no reference was asked for.
func referenceTable(res *SuiteResult) string {
	if len(res.Reference) == 0 {
		return ""
	}
	parley := map[string]*ModeResult{}
	for _, m := range res.Modes {
		parley[m.Mode] = m
	}
	type pair struct{ p, c *ModeResult }
	var pairs []pair
	for _, r := range res.Reference {
		if p := parley[r.Beside]; p != nil {
			pairs = append(pairs, pair{p, r})
		}
	}
	if len(pairs) == 0 {
		return ""
	}
	var b strings.Builder
	version, _, _ := strings.Cut(res.ReferenceVersion, " (") // "Centrifugo v6.9.1 (Go version: ...)"
	if version == "" {
		version = "Centrifugo v" + centrifugoVersion
	}
	load := "the direct scenario, flat out"
	for _, pr := range pairs {
		if d := pr.p.Direct; d != nil {
			load = fmt.Sprintf("the direct scenario, flat out: %d pairs, %d in flight per sender, %d-byte bodies, %.0f s a run", d.Pairs, d.Inflight, d.BodyBytes, d.WindowSeconds)
			break
		}
	}
	fmt.Fprintf(&b, "\nparley beside %s, %s; the same load generator and pacing; each parley run is followed by a Centrifugo run, and each side shows its median run:\n\n", version, load)
	header := []string{"metric"}
	for _, pr := range pairs {
		header = append(header, "parley "+pr.p.Mode, "Centrifugo "+strings.TrimPrefix(pr.c.Mode, "centrifugo-"), "parley / Centrifugo")
	}
	b.WriteString("| " + strings.Join(header, " | ") + " |\n")
	b.WriteString("|" + strings.Repeat("---|", len(header)) + "\n")
	direct := func(f func(r *DirectResult) float64) func(m *ModeResult) (float64, bool) {
		return func(m *ModeResult) (float64, bool) {
			if m.Direct == nil {
				return 0, false
			}
			return f(m.Direct), true
		}
	}
	rows := []row{
		{"ACKed msg/s, each run", nil, "", false, 0},
		{"ACKed msg/s, median run", direct(func(r *DirectResult) float64 { return r.AckedPerSec }), "", true, 0},
		{"delivered msg/s", direct(func(r *DirectResult) float64 { return r.DeliveredPerSec }), "", true, 0},
		{"send→ACK p50 (ms)", direct(func(r *DirectResult) float64 { return r.AckLatency.P50Ms }), "", true, 2},
		{"send→ACK p99 (ms)", direct(func(r *DirectResult) float64 { return r.AckLatency.P99Ms }), "", true, 2},
		{"send→deliver p50 (ms)", direct(func(r *DirectResult) float64 { return r.DeliverLatency.P50Ms }), "", true, 2},
		{"send→deliver p99 (ms)", direct(func(r *DirectResult) float64 { return r.DeliverLatency.P99Ms }), "", true, 2},
		{"lost, all runs", func(m *ModeResult) (float64, bool) { return float64(m.DirectLost), m.Direct != nil }, "", false, 0},
		{"CPU cores: server / sidecar / load generator", nil, "", false, 0},
		{"server + sidecar RSS after the run (MB)", direct(func(r *DirectResult) float64 {
			return float64(r.Server.RSSKB+r.Server.SidecarRSSKB) / 1024
		}), "", true, 1},
	}
	for _, r := range rows {
		cells := []string{r.label}
		for _, pr := range pairs {
			cells = append(cells, referenceCell(pr.p, r), referenceCell(pr.c, r), "")
			if r.ratio && pr.p.Skipped == "" && pr.c.Skipped == "" {
				cells[len(cells)-1] = ratioCell(pr.p, pr.c, r)
			}
		}
		b.WriteString("| " + strings.Join(cells, " | ") + " |\n")
	}
	for _, pr := range pairs {
		switch {
		case pr.c.Skipped != "":
			fmt.Fprintf(&b, "\n%s skipped: %s", pr.c.Mode, pr.c.Skipped)
		case pr.c.Failed != "":
			fmt.Fprintf(&b, "\n%s failed: %s", pr.c.Mode, pr.c.Failed)
		}
	}
	h := centrifugoConfig{}.withDefaults()
	fmt.Fprintf(&b, `

What an ACK means on each side:
- parley: the ACK comes after the message is written to the conversation's store (the process's memory in memory mode, Redis through daprd in dapr-redis); every conversation has a gap-free seq; a client message id makes a retried send idempotent; each device acknowledges what it got and what it did not is pushed again; a client that missed anything syncs it from the conversation's whole history.
- Centrifugo, with history on (the last %d publications of a channel, for %s; force_positioning and force_recovery): the publish reply comes after the publication is appended to the channel's history stream (in the process with the memory engine, in Redis with the redis engine); pushes to subscribers are at most once; a stream offset lets a client see a gap and recover the missed publications when it resubscribes, within that window only; a client publish carries no idempotency key; there are no delivery acknowledgements. Centrifugo pushes a publication back to its publisher too (counted as an echo, not a delivery).
- The Redis here keeps nothing on disk, for both. "lost" is what the other user had not received after the drain: parley counts it after a final sync from history, Centrifugo without one.
`, h.HistorySize, h.HistoryTTL)
	return b.String()
}

// referenceCell is a cell of the reference table.
func referenceCell(m *ModeResult, r row) string {
	if m.Skipped != "" {
		return "skipped"
	}
	switch r.label {
	case "ACKed msg/s, each run":
		if len(m.DirectRuns) == 0 {
			return "–"
		}
		runs := make([]string, len(m.DirectRuns))
		for i, v := range m.DirectRuns {
			runs[i] = fmt.Sprintf("%.0f", v)
		}
		return strings.Join(runs, " / ")
	case "CPU cores: server / sidecar / load generator":
		if m.Direct == nil {
			return "–"
		}
		s := m.Direct.Server
		return fmt.Sprintf("%.2f / %.2f / %.2f", s.CPUCores, s.SidecarCPUCores, s.LoadgenCPUCores)
	}
	if r.get == nil {
		return "–"
	}
	v, ok := r.get(m)
	if !ok {
		return "–"
	}
	return fmt.Sprintf("%.*f", r.prec, v)
}
