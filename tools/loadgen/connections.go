package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/parley-im/parley/client"
)

// workerConns is how many connections one worker holds by default: well
// under the 20,000 open files a process may have here.
const workerConns = 10_000

type connectionsConfig struct {
	n       int
	workers int
	hold    time.Duration
	settle  time.Duration
	route   bool
	// groupSize > 0 puts the users, in order, into groups of that many
	// before they connect: an idle connection should cost no more when its
	// user is in a group.
	groupSize int
}

func (c *connectionsConfig) register(fs *flag.FlagSet) {
	fs.IntVar(&c.n, "n", 10_000, "connections to open and hold")
	fs.IntVar(&c.workers, "workers", 0, "worker processes; 0 means one per 10,000 connections")
	fs.DurationVar(&c.hold, "hold", 10*time.Second, "how long to hold the connections once open")
	fs.DurationVar(&c.settle, "settle", 2*time.Second, "wait after the last connect before reading the server's RSS")
	fs.IntVar(&c.groupSize, "group-size", 0, "put the users into groups of this many (2 to 10,000) before they connect, so that RSS per connection counts group membership; 0 means no groups")
	fs.BoolVar(&c.route, "route", false, "spread the workers over the nodes GET /v1/route lists (a cluster); RSS is then read on every node and divided by the connections each holds")
}

// routeTargets asks base for the cluster's live nodes, keeping only
// loopback ones.
func routeTargets(ctx context.Context, base string) ([]string, error) {
	var out struct {
		Nodes []struct {
			URL string `json:"url"`
		} `json:"nodes"`
	}
	if err := client.DoJSON(ctx, "GET", base+"/v1/route", "", nil, &out); err != nil {
		return nil, fmt.Errorf("GET /v1/route: %w", err)
	}
	var urls []string
	for _, n := range out.Nodes {
		if _, err := loopbackTarget(ctx, n.URL); err != nil {
			return nil, fmt.Errorf("route names %s: %w", n.URL, err)
		}
		urls = append(urls, n.URL)
	}
	if len(urls) == 0 {
		return nil, errors.New("GET /v1/route listed no node")
	}
	return urls, nil
}

// ConnectionsResult is the connections scenario's report.
type ConnectionsResult struct {
	Scenario    string `json:"scenario"`
	Target      string `json:"target"`
	Requested   int    `json:"requested"`
	Connected   int    `json:"connected"`
	Failed      int    `json:"failed"`
	FirstError  string `json:"first_error,omitempty"`
	DroppedHeld int    `json:"dropped_while_held"`
	Workers     int    `json:"workers"`
	Sources     int    `json:"sources"`
	// GroupSize is the size of the groups the users were put into before
	// connecting (0: none), Groups how many there were.
	GroupSize         int     `json:"group_size,omitempty"`
	Groups            int     `json:"groups,omitempty"`
	GroupSetupSeconds float64 `json:"group_setup_seconds,omitempty"`

	ConnectSeconds float64 `json:"connect_seconds"`
	ConnectPerSec  float64 `json:"connects_per_sec"`
	ConnectLatency Summary `json:"connect_latency"`
	HoldSeconds    float64 `json:"hold_seconds"`

	ServerPID           int          `json:"server_pid"`
	Before              serverSample `json:"server_before"`
	Held                serverSample `json:"server_held"`
	MaxRSSKB            int64        `json:"server_max_rss_kb"`
	RSSPerConnKB        float64      `json:"server_rss_per_conn_kb"`
	RSSTotalPerConnKB   float64      `json:"server_rss_total_per_conn_kb"`
	GoroutinesPerConn   float64      `json:"server_goroutines_per_conn"` // -1: unknown
	GoroutinesSource    string       `json:"goroutines_source"`
	ServerCPUPerConnect float64      `json:"server_cpu_ms_per_connect"`
	LoadgenCPUPerConn   float64      `json:"loadgen_cpu_ms_per_connect"`

	// Nodes are the cluster's nodes under -route, each with its own RSS
	// and the connections it holds; RSSPerConnKB is then the growth of
	// every node together divided by every connection.
	Nodes []NodeMemory `json:"nodes,omitempty"`

	Hist        HistSnapshot `json:"connect_histogram"`
	connectHist *Histogram
}

// NodeMemory is one node's memory under load. PID 0 means its process was
// not found, and its figures are left out of the totals.
type NodeMemory struct {
	URL          string  `json:"url"`
	PID          int     `json:"pid"`
	Connected    int     `json:"connected"`
	BeforeRSSKB  int64   `json:"rss_before_kb"`
	HeldRSSKB    int64   `json:"rss_held_kb"`
	RSSPerConnKB float64 `json:"rss_per_conn_kb"`
}

// nodeTotals fills in each node's RSS growth per connection it holds, and
// returns the growth of all measured nodes per connection they hold, and
// their held RSS per connection: a node's growth is never divided by
// connections another node holds.
func nodeTotals(nodes []NodeMemory) (perConnKB, totalPerConnKB float64) {
	var grew, held int64
	conns := 0
	for i := range nodes {
		n := &nodes[i]
		if n.PID == 0 || n.Connected == 0 {
			continue
		}
		n.RSSPerConnKB = round2(float64(n.HeldRSSKB-n.BeforeRSSKB) / float64(n.Connected))
		grew += n.HeldRSSKB - n.BeforeRSSKB
		held += n.HeldRSSKB
		conns += n.Connected
	}
	if conns == 0 {
		return 0, 0
	}
	return round2(float64(grew) / float64(conns)), round2(float64(held) / float64(conns))
}

func (r *ConnectionsResult) text() string {
	var b strings.Builder
	fmt.Fprintf(&b, "connections: %d of %d open (%d failed, %d dropped while held %.0fs) over %d workers and %d source addresses\n",
		r.Connected, r.Requested, r.Failed, r.DroppedHeld, r.HoldSeconds, r.Workers, r.Sources)
	if r.FirstError != "" {
		fmt.Fprintf(&b, "  first error: %s\n", r.FirstError)
	}
	if r.Groups > 0 {
		fmt.Fprintf(&b, "  every user in one of %d groups of up to %d (set up in %.2fs, before the baseline)\n", r.Groups, r.GroupSize, r.GroupSetupSeconds)
	}
	fmt.Fprintf(&b, "  connect rate: %.0f/s (%.2fs); dial p50 %.1f ms p99 %.1f ms; CPU per connect: server %.2f ms, load generator %.2f ms\n",
		r.ConnectPerSec, r.ConnectSeconds, r.ConnectLatency.P50Ms, r.ConnectLatency.P99Ms, r.ServerCPUPerConnect, r.LoadgenCPUPerConn)
	if len(r.Nodes) > 0 {
		measured := 0
		for _, n := range r.Nodes {
			if n.PID == 0 {
				fmt.Fprintf(&b, "  node %s: %d connections, RSS not measured (no process found)\n", n.URL, n.Connected)
				continue
			}
			measured++
			fmt.Fprintf(&b, "  node %s (pid %d): %d connections, RSS %d KB before, %d KB held, %.2f KB per connection\n",
				n.URL, n.PID, n.Connected, n.BeforeRSSKB, n.HeldRSSKB, n.RSSPerConnKB)
		}
		fmt.Fprintf(&b, "  cluster RSS: %.2f KB per connection over %d of %d nodes (%.2f KB counting the baselines)\n",
			r.RSSPerConnKB, measured, len(r.Nodes), r.RSSTotalPerConnKB)
	} else if r.ServerPID != 0 {
		fmt.Fprintf(&b, "  server RSS: %d KB before, %d KB held, %.2f KB per connection (%.2f KB counting the baseline)\n",
			r.Before.RSSKB, r.Held.RSSKB, r.RSSPerConnKB, r.RSSTotalPerConnKB)
		if r.Held.SidecarRSSKB > 0 {
			fmt.Fprintf(&b, "  sidecar RSS: %d KB\n", r.Held.SidecarRSSKB)
		}
	}
	if r.GoroutinesPerConn >= 0 {
		fmt.Fprintf(&b, "  server goroutines: %d before, %d held, %.2f per connection (%s)\n", r.Before.Goroutines, r.Held.Goroutines, r.GoroutinesPerConn, r.GoroutinesSource)
	} else {
		fmt.Fprintf(&b, "  server goroutines: unknown (%s)\n", r.GoroutinesSource)
	}
	return b.String()
}

// workerMsg is one JSON line a worker writes on stdout.
type workerMsg struct {
	Event     string        `json:"event"` // tokens, progress, connected, closed, error
	Tokens    int           `json:"tokens,omitempty"`
	Connected int           `json:"connected,omitempty"`
	Failed    int           `json:"failed,omitempty"`
	Dropped   int           `json:"dropped,omitempty"`
	CPUMs     int64         `json:"cpu_ms,omitempty"` // the worker's CPU time while connecting
	Err       string        `json:"err,omitempty"`
	Hist      *HistSnapshot `json:"hist,omitempty"`
}

type workerEvent struct {
	idx    int
	msg    workerMsg
	exited bool
}

type workerProc struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	last  workerMsg
	phase string
	done  bool
}

// runConnections starts the workers, lets them fetch tokens, then tells
// them all to connect at once, holds, and reads the server meanwhile.
func runConnections(ctx context.Context, e *env, cfg connectionsConfig) (*ConnectionsResult, error) {
	if cfg.n <= 0 {
		return nil, errors.New("-n must be positive")
	}
	if cfg.groupSize != 0 && (cfg.groupSize < 2 || cfg.groupSize > 10_000) {
		return nil, fmt.Errorf("-group-size %d: want 0, or 2 to 10,000 (the server's default member cap)", cfg.groupSize)
	}
	k := cfg.workers
	if k <= 0 {
		k = (cfg.n + workerConns - 1) / workerConns
	}
	k = min(k, cfg.n)
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(cfg.hold + 5*time.Minute)
	}
	events := make(chan workerEvent, 64*k)
	procs := make([]*workerProc, k)
	var readers sync.WaitGroup
	defer func() {
		for _, p := range procs {
			if p != nil && p.stdin != nil {
				_ = p.stdin.Close()
			}
		}
		waitWorkers(procs, 30*time.Second)
		readers.Wait()
	}()
	targets := []string{e.base}
	var nodes []NodeMemory
	if cfg.route {
		if targets, err = routeTargets(ctx, e.base); err != nil {
			return nil, err
		}
		fmt.Fprintf(e.log, "connections: spreading %d workers over %d nodes\n", k, len(targets))
		nodes = make([]NodeMemory, len(targets))
		for i, u := range targets {
			nodes[i] = NodeMemory{URL: u, PID: nodePID(ctx, u)}
			if nodes[i].PID == 0 {
				fmt.Fprintf(e.log, "connections: node %s: no process found listening; its RSS will not be measured\n", u)
			}
		}
	}
	workerNode := make([]int, k) // the index in targets (and nodes) each worker connects to
	first := 0
	for i := range k {
		count := cfg.n / k
		if i < cfg.n%k {
			count++
		}
		args := []string{"worker",
			"-target", targets[i%len(targets)], "-first", strconv.Itoa(first), "-count", strconv.Itoa(count),
			"-prefix", e.prefix, "-sources", strconv.Itoa(e.sources), "-source-base", e.sourceBase,
			"-dial-concurrency", strconv.Itoa(max(1, e.concurrency/k)),
			"-deadline", time.Until(deadline).Round(time.Second).String(),
		}
		if e.proto {
			args = append(args, "-proto")
		}
		first += count
		workerNode[i] = i % len(targets)
		cmd := exec.Command(exe, args...)
		cmd.Stderr = e.log
		cmd.SysProcAttr = workerAttr()
		stdin, err := cmd.StdinPipe()
		if err != nil {
			return nil, err
		}
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			return nil, err
		}
		if err := cmd.Start(); err != nil {
			return nil, fmt.Errorf("start worker: %w", err)
		}
		procs[i] = &workerProc{cmd: cmd, stdin: stdin}
		readers.Add(1)
		go func() {
			defer readers.Done()
			sc := bufio.NewScanner(stdout)
			sc.Buffer(make([]byte, 64<<10), 8<<20)
			for sc.Scan() {
				var m workerMsg
				if json.Unmarshal(sc.Bytes(), &m) == nil {
					events <- workerEvent{idx: i, msg: m}
				}
			}
			events <- workerEvent{idx: i, exited: true}
		}()
	}

	sum := func(f func(p *workerProc) int) int {
		n := 0
		for _, p := range procs {
			n += f(p)
		}
		return n
	}
	// wait consumes worker events until every worker reached phase.
	wait := func(phase string, b *bar, count func(p *workerProc) int) error {
		for {
			if sum(func(p *workerProc) int { return btoi(p.phase == phase) }) == k {
				return nil
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case ev := <-events:
				p := procs[ev.idx]
				if ev.exited {
					p.done = true
					if p.phase != "closed" {
						return fmt.Errorf("worker %d exited while %s (its errors are above)", ev.idx, phaseOr(p.phase))
					}
					continue
				}
				if ev.msg.Event == "error" {
					return fmt.Errorf("worker %d: %s", ev.idx, ev.msg.Err)
				}
				p.last = mergeMsg(p.last, ev.msg)
				if ev.msg.Event != "progress" {
					p.phase = ev.msg.Event
				}
				if b != nil && count != nil {
					b.Set(sum(count))
				}
			}
		}
	}
	tell := func(cmd string) {
		for _, p := range procs {
			_, _ = io.WriteString(p.stdin, cmd+"\n")
		}
	}

	b := e.ui.count("tokens", cfg.n, nil)
	err = wait("tokens", b, func(p *workerProc) int { return p.last.Tokens })
	b.Done()
	if err != nil {
		return nil, err
	}
	res := &ConnectionsResult{Scenario: "connections", Target: e.base, Requested: cfg.n, Workers: k, Sources: e.sources, ServerPID: e.probe.pid}
	if cfg.groupSize > 0 {
		t0 := time.Now()
		if res.Groups, err = connectionGroups(ctx, e, cfg.n, cfg.groupSize); err != nil {
			return nil, err
		}
		res.GroupSize, res.GroupSetupSeconds = cfg.groupSize, round2(time.Since(t0).Seconds())
	}
	res.Before = e.probe.sample(ctx)
	for i := range nodes {
		nodes[i].BeforeRSSKB = nodeRSS(nodes[i].PID)
	}
	start := time.Now()
	tell("go")
	b = e.ui.count("connecting", cfg.n, func() string {
		return fmt.Sprintf("failed %d", sum(func(p *workerProc) int { return p.last.Failed }))
	})
	err = wait("connected", b, func(p *workerProc) int { return p.last.Connected + p.last.Failed })
	b.Done()
	if err != nil {
		return nil, err
	}
	connectDur := time.Since(start)
	afterConnect := e.probe.sample(ctx)
	res.connectHist = &Histogram{}
	var workerCPU int64
	for _, p := range procs {
		workerCPU += p.last.CPUMs
		res.Connected += p.last.Connected
		res.Failed += p.last.Failed
		if res.FirstError == "" {
			res.FirstError = p.last.Err
		}
		if p.last.Hist != nil {
			res.connectHist.Merge(*p.last.Hist)
		}
	}
	res.ConnectSeconds = connectDur.Seconds()
	if res.Connected > 0 {
		res.ConnectPerSec = float64(res.Connected) / connectDur.Seconds()
		res.ServerCPUPerConnect = round2(float64(afterConnect.CPU-res.Before.CPU) / float64(time.Millisecond) / float64(res.Connected))
		res.LoadgenCPUPerConn = round2(float64(workerCPU) / float64(res.Connected))
	}
	res.ConnectLatency = res.connectHist.Summary()
	res.Hist = res.connectHist.Snapshot()

	// Let the server finish its handshakes and the runtime settle, then
	// read it, and keep reading while the connections are held.
	holdStart := time.Now()
	b = e.ui.timed("holding", cfg.settle+cfg.hold, func() string {
		return fmt.Sprintf("dropped %d", sum(func(p *workerProc) int { return p.last.Dropped }))
	})
	sleepCtx(ctx, cfg.settle)
	res.Held = e.probe.sample(ctx)
	for i := range nodes {
		nodes[i].HeldRSSKB = nodeRSS(nodes[i].PID)
	}
	res.MaxRSSKB = res.Held.RSSKB
	t := time.NewTicker(time.Second)
	holdEnd := time.Now().Add(cfg.hold)
	for time.Now().Before(holdEnd) && ctx.Err() == nil {
		select {
		case <-ctx.Done():
		case <-t.C:
			s := e.probe.sample(ctx)
			res.MaxRSSKB = max(res.MaxRSSKB, s.RSSKB)
		case ev := <-events:
			if ev.exited {
				t.Stop()
				b.Done()
				return nil, fmt.Errorf("worker %d exited while holding", ev.idx)
			}
			procs[ev.idx].last = mergeMsg(procs[ev.idx].last, ev.msg)
		}
	}
	t.Stop()
	b.Done()
	res.HoldSeconds = time.Since(holdStart).Seconds()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	tell("stop")
	b = e.ui.count("closing", k, nil)
	err = wait("closed", b, func(p *workerProc) int { return btoi(p.phase == "closed") })
	b.Done()
	if err != nil {
		return nil, err
	}
	for _, p := range procs {
		res.DroppedHeld += p.last.Dropped
	}
	switch {
	case len(nodes) > 0:
		for i, p := range procs {
			nodes[workerNode[i]].Connected += p.last.Connected
		}
		res.RSSPerConnKB, res.RSSTotalPerConnKB = nodeTotals(nodes)
		res.Nodes = nodes
	case res.Connected > 0 && res.ServerPID != 0:
		res.RSSPerConnKB = round2(float64(res.Held.RSSKB-res.Before.RSSKB) / float64(res.Connected))
		res.RSSTotalPerConnKB = round2(float64(res.Held.RSSKB) / float64(res.Connected))
	}
	res.GoroutinesPerConn, res.GoroutinesSource = -1, e.probe.note
	if res.Held.Goroutines >= 0 && res.Before.Goroutines >= 0 && res.Connected > 0 {
		res.GoroutinesPerConn = round2(float64(res.Held.Goroutines-res.Before.Goroutines) / float64(res.Connected))
	}
	return res, nil
}

// connectionGroups puts the n users of the connections scenario into
// groups of size, in order (the last one may be smaller, but never a group
// of one), all groups at once, and returns how many it made.
func connectionGroups(ctx context.Context, e *env, n, size int) (int, error) {
	var groups [][]string
	for first := 0; first+1 < n; first += size {
		var users []string
		for i := first; i < min(first+size, n); i++ {
			users = append(users, userName(e.prefix, "c", i))
		}
		if len(users) >= 2 {
			groups = append(groups, users)
		}
	}
	errs := make([]error, len(groups))
	var wg sync.WaitGroup
	for k, users := range groups {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tctx, cancel := context.WithTimeout(ctx, 15*time.Second)
			token, err := client.DevToken(tctx, e.base, users[0])
			cancel()
			if err == nil {
				_, err = setupGroup(ctx, e, users[0], token, users[1:])
			}
			if err != nil {
				errs[k] = fmt.Errorf("group %d of %d (owner %s): %w", k+1, len(groups), users[0], err)
			}
		}()
	}
	wg.Wait()
	return len(groups), errors.Join(errs...)
}

// nodePID finds the process that serves the node at base, by its
// listening port; 0 when none is visible.
func nodePID(ctx context.Context, base string) int {
	port, err := loopbackTarget(ctx, base)
	if err != nil {
		return 0
	}
	pid, err := listenerPID(port)
	if err != nil {
		return 0
	}
	return pid
}

// nodeRSS reads a node's RSS in KB; 0 when pid is 0 or gone.
func nodeRSS(pid int) int64 {
	if pid == 0 {
		return 0
	}
	rss, _, _ := procStatus(pid)
	return rss
}

func phaseOr(p string) string {
	if p == "" {
		return "starting"
	}
	return "after " + p
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

func round2(f float64) float64 { return float64(int64(f*100+0.5)) / 100 }

// mergeMsg keeps the latest figure of each kind a worker reported.
func mergeMsg(old, m workerMsg) workerMsg {
	if m.Tokens > 0 {
		old.Tokens = m.Tokens
	}
	if m.Connected > 0 {
		old.Connected = m.Connected
	}
	if m.Failed > 0 {
		old.Failed = m.Failed
	}
	if m.Dropped > 0 {
		old.Dropped = m.Dropped
	}
	if m.Err != "" {
		old.Err = m.Err
	}
	if m.Hist != nil {
		old.Hist = m.Hist
	}
	if m.CPUMs > 0 {
		old.CPUMs = m.CPUMs
	}
	return old
}

// waitWorkers waits for every worker to exit, killing those still running
// after d.
func waitWorkers(procs []*workerProc, d time.Duration) {
	var wg sync.WaitGroup
	for _, p := range procs {
		if p == nil {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			done := make(chan struct{})
			go func() { _ = p.cmd.Wait(); close(done) }()
			select {
			case <-done:
			case <-time.After(d):
				_ = p.cmd.Process.Kill()
				<-done
			}
		}()
	}
	wg.Wait()
}

func sleepCtx(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// runWorker is a worker process: it fetches tokens for its users, waits for
// "go" on stdin, connects them all, holds until "stop" (or stdin closes, or
// its deadline passes), closes them, and reports each step on stdout.
func runWorker(ctx context.Context, args []string, stdin io.Reader, stdout io.Writer) error {
	fs := flag.NewFlagSet("worker", flag.ContinueOnError)
	target := fs.String("target", "", "parley base URL")
	first := fs.Int("first", 0, "index of the first user")
	count := fs.Int("count", 0, "connections to hold")
	prefix := fs.String("prefix", "", "user name prefix")
	sources := fs.Int("sources", 1, "source addresses")
	sourceBase := fs.String("source-base", "127.0.0.2", "first source address")
	conc := fs.Int("dial-concurrency", 64, "connections dialled at once")
	proto := fs.Bool("proto", false, "protobuf frames")
	deadline := fs.Duration("deadline", 5*time.Minute, "exit after this long whatever happens")
	if err := fs.Parse(args); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, *deadline)
	defer cancel()
	var mu sync.Mutex
	enc := json.NewEncoder(stdout)
	emit := func(m workerMsg) {
		mu.Lock()
		_ = enc.Encode(m)
		mu.Unlock()
	}
	fail := func(err error) error {
		emit(workerMsg{Event: "error", Err: err.Error()})
		return errReported
	}
	if _, err := loopbackTarget(ctx, *target); err != nil {
		return fail(err)
	}
	pool, err := newSourcePool(*sourceBase, *sources)
	if err != nil {
		return fail(err)
	}
	e := &env{pool: pool, concurrency: *conc}
	cmds := make(chan string, 4)
	go func() {
		sc := bufio.NewScanner(stdin)
		for sc.Scan() {
			cmds <- strings.TrimSpace(sc.Text())
		}
		close(cmds)
	}()
	waitFor := func(want string) bool {
		for {
			select {
			case <-ctx.Done():
				return false
			case c, ok := <-cmds:
				if !ok {
					return false
				}
				if c == want {
					return true
				}
			}
		}
	}
	// report emits progress until stop is closed.
	report := func(f func() workerMsg) (stop func()) {
		done := make(chan struct{})
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			t := time.NewTicker(250 * time.Millisecond)
			defer t.Stop()
			for {
				select {
				case <-done:
					return
				case <-t.C:
					emit(f())
				}
			}
		}()
		return func() { close(done); wg.Wait() }
	}

	users := make([]string, *count)
	for j := range users {
		users[j] = userName(*prefix, "c", *first+j)
	}
	var fetched atomic.Int64
	stop := report(func() workerMsg { return workerMsg{Event: "progress", Tokens: int(fetched.Load())} })
	tokens, err := fetchTokens(ctx, *target, users, 16, func() { fetched.Add(1) })
	stop()
	if err != nil {
		return fail(err)
	}
	emit(workerMsg{Event: "tokens", Tokens: len(tokens)})
	if !waitFor("go") {
		return nil
	}
	h := &Histogram{}
	cpu0 := selfCPU()
	b := &bar{} // counts dials; a worker draws nothing
	stop = report(func() workerMsg {
		n := int(b.n.Load())
		return workerMsg{Event: "progress", Connected: int(h.Count()), Failed: n - int(h.Count())}
	})
	cs, failed, firstErr := dialAll(ctx, e, *target, tokens, *first, client.Options{Device: "loadgen", Proto: *proto, Buffer: 8}, h, b)
	stop()
	m := workerMsg{Event: "connected", Connected: len(cs) - failed, Failed: failed, CPUMs: (selfCPU() - cpu0).Milliseconds()}
	if firstErr != nil {
		m.Err = firstErr.Error()
	}
	snap := h.Snapshot()
	m.Hist = &snap
	emit(m)

	closedNow := func() int {
		n := 0
		for _, c := range cs {
			if c == nil {
				continue
			}
			select {
			case <-c.Done():
				n++
			default:
			}
		}
		return n
	}
	stop = report(func() workerMsg { return workerMsg{Event: "progress", Dropped: closedNow()} })
	waitFor("stop")
	stop()
	dropped := closedNow()
	closeAll(cs, 64)
	emit(workerMsg{Event: "closed", Dropped: dropped})
	return nil
}
