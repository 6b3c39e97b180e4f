package main

import (
	"fmt"
	"math"
	"strings"
)

// row is one line of the suite's table.
type row struct {
	label string
	get   func(m *ModeResult) (float64, bool)
	unit  string // "", "ms", "KB", "MB", "/s", "s"
	ratio bool   // show mode / memory
	prec  int
}

func suiteRows() []row {
	conns := func(f func(r *ConnectionsResult) float64) func(m *ModeResult) (float64, bool) {
		return func(m *ModeResult) (float64, bool) {
			if m.Connections == nil {
				return 0, false
			}
			return f(m.Connections), true
		}
	}
	direct := func(rate bool, f func(r *DirectResult) float64) func(m *ModeResult) (float64, bool) {
		return func(m *ModeResult) (float64, bool) {
			r := m.Direct
			if rate {
				r = m.Rate
			}
			if r == nil {
				return 0, false
			}
			return f(r), true
		}
	}
	recon := func(f func(r *ReconnectResult) float64) func(m *ModeResult) (float64, bool) {
		return func(m *ModeResult) (float64, bool) {
			if m.Reconnect == nil {
				return 0, false
			}
			return f(m.Reconnect), true
		}
	}
	group := func(f func(r *GroupResult) float64) func(m *ModeResult) (float64, bool) {
		return func(m *ModeResult) (float64, bool) {
			if m.Group == nil {
				return 0, false
			}
			return f(m.Group), true
		}
	}
	groupAt := func(f func(r *GroupResult) float64) func(m *ModeResult) (float64, bool) {
		return func(m *ModeResult) (float64, bool) {
			if m.GroupAtTarget == nil {
				return 0, false
			}
			return f(m.GroupAtTarget), true
		}
	}
	return []row{
		{"server RSS idle (MB)", func(m *ModeResult) (float64, bool) { return float64(m.Idle.RSSKB) / 1024, m.Idle.RSSKB > 0 }, "", true, 1},
		{"sidecar RSS idle (MB)", func(m *ModeResult) (float64, bool) {
			return float64(m.Idle.SidecarRSSKB) / 1024, m.Idle.SidecarRSSKB > 0
		}, "", false, 1},
		{"**idle connections**: held", conns(func(r *ConnectionsResult) float64 { return float64(r.Connected) }), "", false, 0},
		{"users per group (0: no groups)", conns(func(r *ConnectionsResult) float64 { return float64(r.GroupSize) }), "", false, 0},
		{"connects/s", conns(func(r *ConnectionsResult) float64 { return r.ConnectPerSec }), "", true, 0},
		{"server RSS per connection (KB)", conns(func(r *ConnectionsResult) float64 { return r.RSSPerConnKB }), "", true, 2},
		{"server RSS held ÷ connections (KB)", conns(func(r *ConnectionsResult) float64 { return r.RSSTotalPerConnKB }), "", true, 2},
		{"server goroutines per connection", func(m *ModeResult) (float64, bool) {
			if m.Connections == nil || m.Connections.GoroutinesPerConn < 0 {
				return 0, false
			}
			return m.Connections.GoroutinesPerConn, true
		}, "", false, 2},
		{"dropped while held", conns(func(r *ConnectionsResult) float64 { return float64(r.DroppedHeld + r.Failed) }), "", false, 0},
		{"**direct, flat out**: ACKed msg/s, each run", nil, "", false, 0},
		{"ACKed msg/s, median run", direct(false, func(r *DirectResult) float64 { return r.AckedPerSec }), "", true, 0},
		{"delivered msg/s", direct(false, func(r *DirectResult) float64 { return r.DeliveredPerSec }), "", true, 0},
		{"send→ACK p50 / p99 (ms)", nil, "", false, 0},
		{"send→deliver p50 (ms)", direct(false, func(r *DirectResult) float64 { return r.DeliverLatency.P50Ms }), "", true, 2},
		{"send→deliver p99 (ms)", direct(false, func(r *DirectResult) float64 { return r.DeliverLatency.P99Ms }), "", true, 2},
		{"lost, all runs (must be 0)", func(m *ModeResult) (float64, bool) { return float64(m.DirectLost), m.Direct != nil }, "", false, 0},
		{"CPU cores: server / sidecar / load generator", nil, "", false, 0},
		{"**direct at target rate**: target msg/s", direct(true, func(r *DirectResult) float64 { return r.TargetRate }), "", false, 0},
		{"ACKed msg/s", direct(true, func(r *DirectResult) float64 { return r.AckedPerSec }), "", true, 0},
		{"delivered msg/s", direct(true, func(r *DirectResult) float64 { return r.DeliveredPerSec }), "", true, 0},
		{"send→ACK p99 (ms)", direct(true, func(r *DirectResult) float64 { return r.AckLatency.P99Ms }), "", true, 2},
		{"send→deliver p50 (ms)", direct(true, func(r *DirectResult) float64 { return r.DeliverLatency.P50Ms }), "", true, 2},
		{"send→deliver p90 (ms)", direct(true, func(r *DirectResult) float64 { return r.DeliverLatency.P90Ms }), "", true, 2},
		{"send→deliver p99 (ms)", direct(true, func(r *DirectResult) float64 { return r.DeliverLatency.P99Ms }), "", true, 2},
		{"send→deliver p99.9 (ms)", direct(true, func(r *DirectResult) float64 { return r.DeliverLatency.P999Ms }), "", true, 2},
		{"lost (must be 0)", direct(true, func(r *DirectResult) float64 { return float64(r.Lost) }), "", false, 0},
		{"**reconnect**: clients × missed", nil, "", false, 0},
		{"all reconnected (s)", recon(func(r *ReconnectResult) float64 { return r.AllConnectedSeconds }), "", true, 2},
		{"all fully synced (s)", recon(func(r *ReconnectResult) float64 { return r.AllSyncedSeconds }), "", true, 2},
		{"per client p99 to synced (ms)", recon(func(r *ReconnectResult) float64 { return r.Synced.P99Ms }), "", true, 1},
		{"lost (must be 0)", recon(func(r *ReconnectResult) float64 { return float64(r.Lost) }), "", false, 0},
		{groupHeading, nil, "", false, 0},
		{"messages ACKed/s", group(func(r *GroupResult) float64 { return r.AckedPerSec }), "", true, 0},
		{"deliveries/s (messages × recipients)", group(func(r *GroupResult) float64 { return r.DeliveriesPerSec }), "", true, 0},
		{"send→deliver p50 (ms)", group(func(r *GroupResult) float64 { return r.DeliverLatency.P50Ms }), "", true, 2},
		{"send→deliver p99 (ms)", group(func(r *GroupResult) float64 { return r.DeliverLatency.P99Ms }), "", true, 2},
		{"lost (must be 0)", group(func(r *GroupResult) float64 { return float64(r.Lost) }), "", false, 0},
		{"at the target rate: messages sent/s", groupAt(func(r *GroupResult) float64 { return r.SentPerSec }), "", true, 1},
		{"at the target rate: deliveries/s", groupAt(func(r *GroupResult) float64 { return r.DeliveriesPerSec }), "", true, 0},
		{"at the target rate: send→deliver p50 (ms)", groupAt(func(r *GroupResult) float64 { return r.DeliverLatency.P50Ms }), "", true, 2},
		{"at the target rate: send→deliver p99 (ms)", groupAt(func(r *GroupResult) float64 { return r.DeliverLatency.P99Ms }), "", true, 2},
		{"at the target rate: lost (must be 0)", groupAt(func(r *GroupResult) float64 { return float64(r.Lost) }), "", false, 0},
		{"connections dropped (senders)", nil, "", false, 0},
		{groupCPULabel, nil, "", false, 0},
	}
}

// The group rows whose cells are not one number.
const (
	groupHeading  = "**group, all online**: members × senders"
	groupCPULabel = "CPU per delivery, µs: server / sidecar / load generator"
)

// suiteTable renders the modes side by side, with each dapr mode's ratio
// to memory, then the targets.
func suiteTable(res *SuiteResult) string {
	var b strings.Builder
	var mem *ModeResult
	var others []*ModeResult
	for _, m := range res.Modes {
		if m.Mode == "memory" && m.Skipped == "" {
			mem = m
		}
	}
	header := []string{"metric"}
	for _, m := range res.Modes {
		header = append(header, m.Mode)
	}
	if mem != nil {
		for _, m := range res.Modes {
			if m != mem {
				others = append(others, m)
				header = append(header, m.Mode+" / memory")
			}
		}
	}
	fmt.Fprintf(&b, "parley load test, %s, %.0fs\n\n", res.Machine, res.Seconds)
	b.WriteString("| " + strings.Join(header, " | ") + " |\n")
	b.WriteString("|" + strings.Repeat("---|", len(header)) + "\n")
	for _, r := range suiteRows() {
		cells := []string{r.label}
		for _, m := range res.Modes {
			cells = append(cells, cell(m, r))
		}
		for _, m := range others {
			cells = append(cells, ratioCell(m, mem, r))
		}
		b.WriteString("| " + strings.Join(cells, " | ") + " |\n")
	}
	for _, m := range res.Modes {
		switch {
		case m.Skipped != "":
			fmt.Fprintf(&b, "\n%s skipped: %s", m.Mode, m.Skipped)
		case m.Failed != "":
			fmt.Fprintf(&b, "\n%s failed: %s", m.Mode, m.Failed)
		}
	}
	b.WriteString(referenceTable(res))
	b.WriteString("\n\nTargets (from the issue):\n\n")
	b.WriteString("| target | measured | met |\n|---|---|---|\n")
	if mem != nil && mem.Connections != nil {
		c := mem.Connections
		fmt.Fprintf(&b, "| 19,000 idle connections on one node at ≤10 KB server RSS each | %d held, %.2f KB each (%.2f KB counting the baseline) | %s |\n",
			c.Connected, c.RSSPerConnKB, c.RSSTotalPerConnKB, yes(c.Connected >= 19000 && c.RSSPerConnKB <= 10))
	}
	for _, m := range res.Modes {
		if c := m.Connections; c != nil && c.Groups > 0 {
			fmt.Fprintf(&b, "| %s: idle connections cost no more because groups exist: 19,000 at ≤6 KB server RSS each, every user in a group | %d held in %d groups of up to %d, %.2f KB each | %s |\n",
				m.Mode, c.Connected, c.Groups, c.GroupSize, c.RSSPerConnKB, yes(c.Connected >= 19000 && c.RSSPerConnKB <= 6))
		}
	}
	for _, m := range res.Modes {
		if m.Rate == nil {
			continue
		}
		r := m.Rate
		fmt.Fprintf(&b, "| %s ≥%.0f msg/s with p99 send→deliver ≤%.0f ms | %.0f msg/s delivered, p99 %.2f ms, lost %d | %s |\n",
			m.Mode, m.targetRate, m.targetP99, r.DeliveredPerSec, r.DeliverLatency.P99Ms, r.Lost,
			yes(r.DeliveredPerSec >= 0.98*m.targetRate && r.DeliverLatency.P99Ms <= m.targetP99 && r.Lost == 0))
	}
	for _, m := range res.Modes {
		goal, ok := groupTargets[m.Mode]
		if !ok || m.GroupAtTarget == nil {
			continue
		}
		g := m.GroupAtTarget
		fmt.Fprintf(&b, "| %s: a group of %d members all online on one node, ≥%.0f deliveries/s, p99 send→deliver ≤%d ms | group of %d at %.1f msg/s: %.0f deliveries/s, p99 %.2f ms, lost %d | %s |\n",
			m.Mode, groupTargetMembers, goal, groupTargetP99, g.Members, g.TargetRate, g.DeliveriesPerSec, g.DeliverLatency.P99Ms, g.Lost,
			yes(g.Members >= groupTargetMembers && g.DeliveriesPerSec >= goal && g.DeliverLatency.P99Ms <= groupTargetP99 && g.Lost == 0))
	}
	for _, m := range res.Modes {
		if m.Mode == "dapr-local" && m.Direct != nil && mem != nil && mem.Direct != nil && mem.Direct.AckedPerSec > 0 {
			ratio := m.Direct.AckedPerSec / mem.Direct.AckedPerSec
			fmt.Fprintf(&b, "| dapr-local throughput ≥0.5× in-memory (flat out, median runs) | %.2f× | %s |\n", ratio, yes(ratio >= 0.5))
		}
	}
	b.WriteString("\nThe load generator runs on the same machine as the server and the sidecar; the CPU row shows how the cores were shared.\n")
	return b.String()
}

func yes(ok bool) string {
	if ok {
		return "yes"
	}
	return "**no**"
}

func cell(m *ModeResult, r row) string {
	if m.Skipped != "" {
		return "skipped"
	}
	switch r.label {
	case "send→ACK p50 / p99 (ms)":
		if m.Direct == nil {
			return "–"
		}
		return fmt.Sprintf("%.2f / %.2f", m.Direct.AckLatency.P50Ms, m.Direct.AckLatency.P99Ms)
	case "**direct, flat out**: ACKed msg/s, each run":
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
	case groupHeading:
		if m.Group == nil {
			return "–"
		}
		return fmt.Sprintf("%d × %d", m.Group.Members, m.Group.Senders)
	case "connections dropped (senders)":
		if m.Group == nil {
			return "–"
		}
		return fmt.Sprintf("%d (%d)", m.Group.DroppedConnections, m.Group.DroppedSenders)
	case groupCPULabel:
		if m.Group == nil {
			return "–"
		}
		g := m.Group
		return fmt.Sprintf("%.2f / %.2f / %.2f", g.ServerCPUPerDeliveryUs, g.SidecarCPUPerDeliveryUs, g.LoadgenCPUPerDeliveryUs)
	case "**reconnect**: clients × missed":
		if m.Reconnect == nil {
			return "–"
		}
		return fmt.Sprintf("%d × %d", m.Reconnect.Clients, m.Reconnect.Missed)
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

func ratioCell(m, mem *ModeResult, r row) string {
	if !r.ratio || r.get == nil || m.Skipped != "" {
		return ""
	}
	a, ok1 := r.get(m)
	b, ok2 := r.get(mem)
	if !ok1 || !ok2 || b == 0 || math.IsNaN(a/b) {
		return ""
	}
	return fmt.Sprintf("%.2f×", a/b)
}
