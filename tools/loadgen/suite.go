package main

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"flag"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/parley-im/parley/tools/testkit"
)

type suiteConfig struct {
	modes       string
	scenarios   string
	outDir      string
	parley      string
	progress    string
	logLevel    string
	timeout     time.Duration
	redisAddr   string
	keepRedis   bool
	conns       connectionsConfig
	direct      directConfig
	runs        int
	rates       string
	reconnect   reconnectConfig
	group       groupConfig
	groupModes  string
	concurrency int
	centrifugo  string
	reference   string
}

// suiteModes are the backends the suite compares; parley runs fresh for each.
var suiteModes = []struct {
	name string
	args []string
	// target is the goal for this mode: messages per second with
	// a p99 send→deliver bound.
	targetRate float64
	targetP99  float64
}{
	{"memory", []string{"-backend", "memory"}, 40_000, 25},
	{"dapr-local", []string{"-backend", "dapr", "-sidecar", "launch", "-profile", "local"}, 20_000, 50},
	{"dapr-redis", []string{"-backend", "dapr", "-sidecar", "launch", "-profile", "redis"}, 15_000, 50},
}

func (c *suiteConfig) register(fs *flag.FlagSet) {
	fs.StringVar(&c.modes, "modes", "memory,dapr-local,dapr-redis", "modes to measure, in order")
	fs.StringVar(&c.scenarios, "scenarios", "connections,direct,rate,reconnect,group", "scenarios per mode: connections (on a parley of its own), direct, rate (direct at the mode's target rate), reconnect, group (on a parley of its own, in -group-modes only)")
	fs.StringVar(&c.outDir, "out-dir", "", "folder for results, charts and parley logs; empty means a new folder under $TMPDIR")
	fs.StringVar(&c.parley, "parley", "", "a parley binary to use; empty means build ./app/cmd/parley into the output folder")
	fs.StringVar(&c.progress, "progress", "auto", "progress bar on stderr: auto (when a terminal), on or off")
	fs.StringVar(&c.logLevel, "server-log-level", "info", "parley's -log-level; info (its default) logs every send and connection to a file")
	fs.DurationVar(&c.timeout, "timeout", 10*time.Minute, "hard bound of the whole suite")
	fs.StringVar(&c.redisAddr, "redis", "127.0.0.1:6379", "the redis the redis profile uses; checked before that mode runs")
	fs.BoolVar(&c.keepRedis, "keep-redis", false, "keep the run's keys in redis instead of deleting them afterwards")
	fs.IntVar(&c.conns.n, "conns", 19_000, "connections scenario: connections to hold (the server may open 20,000 files)")
	fs.DurationVar(&c.conns.hold, "hold", 5*time.Second, "connections scenario: how long to hold them")
	fs.IntVar(&c.conns.groupSize, "conns-group-size", 2000, "connections scenario: put the users into groups of this many before they connect; 0 for none")
	fs.IntVar(&c.direct.pairs, "pairs", 50, "direct scenario: pairs of users")
	fs.DurationVar(&c.direct.duration, "duration", 10*time.Second, "direct scenario: how long each run sends")
	fs.IntVar(&c.direct.inflight, "inflight", 4, "direct scenario: sends in flight per sender")
	fs.IntVar(&c.runs, "runs", 3, "direct scenario: runs per mode; the table shows the run with the median throughput, since one run on a shared machine can be off by a fifth")
	fs.StringVar(&c.rates, "rates", "", "rate scenario: msg/s per mode as mode=rate,...; empty means each mode's target (memory=40000, dapr-local=20000, dapr-redis=15000)")
	fs.IntVar(&c.reconnect.clients, "clients", 1000, "reconnect scenario: clients")
	fs.IntVar(&c.reconnect.missed, "missed", 20, "reconnect scenario: messages each client misses")
	fs.IntVar(&c.group.members, "members", 2000, "group scenario: members of the group, all online")
	fs.IntVar(&c.group.senders, "senders", 10, "group scenario: members that send")
	fs.DurationVar(&c.group.duration, "group-duration", 5*time.Second, "group scenario: how long to send")
	fs.IntVar(&c.group.inflight, "group-inflight", 2, "group scenario: sends in flight per sender")
	fs.StringVar(&c.groupModes, "group-modes", "memory,dapr-redis", "modes that run the group scenario (it adds about 15 s to each)")
	fs.IntVar(&c.concurrency, "dial-concurrency", 128, "connections dialled at once")
	fs.StringVar(&c.centrifugo, "centrifugo", "", "the Centrifugo v"+centrifugoVersion+" binary of the reference columns; empty means "+centrifugoBinary+" in the checkout (`make centrifugo` builds it)")
	fs.StringVar(&c.reference, "reference", "memory,redis", "Centrifugo engines to measure beside parley in the direct scenario, run for run alternating with a parley mode: memory beside memory, redis beside dapr-redis; empty for none")
	c.conns.settle = 2 * time.Second
	c.direct.drain = 10 * time.Second
	c.direct.body = 64
	c.reconnect.senders, c.reconnect.inflight, c.reconnect.settle = 16, 8, time.Second
	c.group.drain, c.group.body = 10*time.Second, 64
}

// groupTargets are the goals for the group scenario, in deliveries
// per second (messages × recipients) of a 2,000-member group all online on
// one node, each with a p99 send→deliver of at most groupTargetP99 ms:
// daprd + redis is to reach half of memory mode's goal.
var groupTargets = map[string]float64{"memory": 60_000, "dapr-redis": 30_000}

const (
	groupTargetP99     = 100
	groupTargetMembers = 2000
)

// groupTargetRate is the messages per second that make goal deliveries per
// second to a group of members (each message reaches the others), 3% over
// so that a run that keeps up meets the goal.
func groupTargetRate(goal float64, members int) float64 {
	return math.Ceil(goal/float64(members-1)*1.03*10) / 10
}

// wantsGroup reports whether mode runs the group scenario.
func (c *suiteConfig) wantsGroup(mode string) bool {
	for _, m := range strings.Split(c.groupModes, ",") {
		if strings.TrimSpace(m) == mode {
			return true
		}
	}
	return false
}

// ModeResult is one mode's figures.
type ModeResult struct {
	Mode         string             `json:"mode"`
	Skipped      string             `json:"skipped,omitempty"`
	Failed       string             `json:"failed,omitempty"`
	StartSeconds float64            `json:"start_seconds"`
	Idle         serverSample       `json:"server_idle"`
	Connections  *ConnectionsResult `json:"connections,omitempty"`
	Direct       *DirectResult      `json:"direct,omitempty"`
	// DirectRuns is every flat-out run's ACKed msg/s, in order; Direct is
	// the median one. DirectLost is what all of them lost together.
	DirectRuns []float64        `json:"direct_runs_acked_per_sec,omitempty"`
	DirectLost int64            `json:"direct_lost_all_runs"`
	Rate       *DirectResult    `json:"rate,omitempty"`
	Reconnect  *ReconnectResult `json:"reconnect,omitempty"`
	Group      *GroupResult     `json:"group,omitempty"`
	// GroupAtTarget is the group scenario again at the mode's target
	// deliveries per second (plus a margin), not flat out: its p99 is the
	// latency at that throughput rather than the queue of a saturated
	// server.
	GroupAtTarget *GroupResult `json:"group_at_target,omitempty"`
	ServerLog     string       `json:"server_log"`
	// Beside is, for a reference server, the parley mode whose direct
	// runs it alternated with.
	Beside     string `json:"beside,omitempty"`
	targetRate float64
	targetP99  float64
}

// SuiteResult is what the suite writes.
type SuiteResult struct {
	Started  time.Time     `json:"started"`
	Seconds  float64       `json:"seconds"`
	Machine  string        `json:"machine"`
	Modes    []*ModeResult `json:"modes"`
	Table    string        `json:"table"`
	Settings string        `json:"server_settings"`
	// Reference holds Centrifugo's figures, one entry per engine, measured
	// in the same run; ReferenceVersion is what its binary says it is.
	Reference        []*ModeResult `json:"reference,omitempty"`
	ReferenceVersion string        `json:"reference_version,omitempty"`
}

// referenceEngines maps a parley mode to the Centrifugo engine measured
// beside it: each keeps its state in the same place (the process, or Redis).
var referenceEngines = map[string]string{"memory": "memory", "dapr-redis": "redis"}

// suiteSettings raises the per-user send rate far above the load and turns
// off the abuse guard, which would take 19,000 connections from a few
// loopback addresses for an attack and suspend them; every other setting
// keeps its default.
const suiteSettings = "# written by loadgen suite\nparley.send_rate_per_sec: 1000000\nparley.abuse.disabled: true\n"

func runSuite(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("suite", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cfg suiteConfig
	cfg.register(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.timeout)
	defer cancel()
	rates, err := parseRates(cfg.rates)
	if err != nil {
		return err
	}
	root, err := testkit.RepoRoot()
	if err != nil {
		return fmt.Errorf("run the suite from inside the parley checkout: it builds ./app/cmd/parley and its sidecar reads components/: %w", err)
	}
	dir, err := outputDir(cfg.outDir)
	if err != nil {
		return err
	}
	dir, _ = filepath.Abs(dir)
	u := ui{}
	if f, ok := stderr.(*os.File); ok {
		u = newUI(cfg.progress, f)
	}
	bin := cfg.parley
	if bin == "" {
		bin = filepath.Join(dir, "parley")
		fmt.Fprintf(stderr, "building parley into %s\n", bin)
		if err := testkit.Build(ctx, root, "./app/cmd/parley", bin); err != nil {
			return fmt.Errorf("build parley: %w", err)
		}
	}
	settingsPath := filepath.Join(dir, "settings.yaml")
	if err := os.WriteFile(settingsPath, []byte(suiteSettings), 0o644); err != nil {
		return err
	}
	want := map[string]bool{}
	for _, s := range strings.Split(cfg.scenarios, ",") {
		want[strings.TrimSpace(s)] = true
	}
	res := &SuiteResult{Started: time.Now(), Machine: machine(), Settings: suiteSettings}
	runID := runPrefix()
	refWanted := map[string]bool{}
	for _, s := range strings.Split(cfg.reference, ",") {
		if s = strings.TrimSpace(s); s == "" {
			continue
		}
		if s != "memory" && s != "redis" {
			return fmt.Errorf("-reference: unknown engine %q: want memory, redis or both", s)
		}
		refWanted[s] = true
	}
	if cfg.centrifugo == "" {
		cfg.centrifugo = filepath.Join(root, centrifugoBinary)
	}
	// Centrifugo runs in the output folder: a relative path would not
	// resolve there.
	if cfg.centrifugo, err = filepath.Abs(cfg.centrifugo); err != nil {
		return fmt.Errorf("-centrifugo: %w", err)
	}
	refMissing := ""
	if len(refWanted) > 0 && want["direct"] {
		if refMissing = centrifugoMissing(cfg.centrifugo); refMissing == "" {
			v, err := centrifugoVersionOf(ctx, cfg.centrifugo)
			if err != nil {
				refMissing = err.Error()
			}
			res.ReferenceVersion = v
		}
	}
	for mi, name := range strings.Split(cfg.modes, ",") {
		name = strings.TrimSpace(name)
		idx := -1
		for i, m := range suiteModes {
			if m.name == name {
				idx = i
			}
		}
		if idx < 0 {
			return fmt.Errorf("-modes: unknown mode %q", name)
		}
		m := suiteModes[idx]
		mr := &ModeResult{Mode: m.name, targetRate: m.targetRate, targetP99: m.targetP99}
		if r, ok := rates[m.name]; ok {
			mr.targetRate = r
		}
		res.Modes = append(res.Modes, mr)
		var ref *ModeResult
		if eng, ok := referenceEngines[m.name]; ok && refWanted[eng] && want["direct"] {
			ref = &ModeResult{Mode: "centrifugo-" + eng, Beside: m.name, Skipped: refMissing}
			res.Reference = append(res.Reference, ref)
		}
		if reason := modeMissing(root, m.name, cfg.redisAddr); reason != "" {
			mr.Skipped = reason
			if ref != nil && ref.Skipped == "" {
				ref.Skipped = "runs beside parley " + m.name + ", which was skipped"
			}
			fmt.Fprintf(stderr, "%s: skipped: %s\n", m.name, reason)
			continue
		}
		if ref != nil && ref.Skipped != "" {
			fmt.Fprintf(stderr, "%s: skipped: %s\n", ref.Mode, ref.Skipped)
			ref = nil
		}
		fmt.Fprintf(stderr, "== %s\n", m.name)
		appID := runID + "-" + m.name
		err := runMode(ctx, root, bin, dir, settingsPath, appID, m.args, mi, mr, ref, cfg, want, u, stderr)
		if err != nil {
			mr.Failed = err.Error()
			fmt.Fprintf(stderr, "%s: %v\n", m.name, err)
		}
		if ref != nil && ref.Direct == nil && ref.Failed == "" {
			ref.Failed = "no run: parley " + m.name + " failed before its direct runs"
		}
		if m.name == "dapr-redis" && !cfg.keepRedis {
			deleted := 0
			for _, id := range []string{appID + "-c", appID + "-g", appID} {
				n, err := redisCleanup(cfg.redisAddr, id)
				deleted += n
				if err != nil {
					fmt.Fprintf(stderr, "%s: redis cleanup: %v\n", m.name, err)
				}
			}
			if ref != nil {
				n, err := redisDeleteMatching(cfg.redisAddr, centrifugoRedisPrefix(appID)+"*")
				deleted += n
				if err != nil {
					fmt.Fprintf(stderr, "%s: redis cleanup: %v\n", ref.Mode, err)
				}
			}
			fmt.Fprintf(stderr, "%s: deleted the run's %d redis keys\n", m.name, deleted)
		}
		if ctx.Err() != nil {
			break
		}
	}
	res.Seconds = round2(time.Since(res.Started).Seconds())
	res.Table = suiteTable(res)
	if err := writeJSON(filepath.Join(dir, "suite.json"), res); err != nil {
		return err
	}
	var deliver, ack, recon []latencySeries
	for _, mr := range slices.Concat(res.Modes, res.Reference) {
		if mr.Direct != nil {
			deliver = append(deliver, latencySeries{mr.Mode + " send→deliver, flat out", histFrom(mr.Direct.DeliverHist)})
			ack = append(ack, latencySeries{mr.Mode + " send→ACK, flat out", histFrom(mr.Direct.AckHist)})
		}
		if mr.Rate != nil {
			deliver = append(deliver, latencySeries{fmt.Sprintf("%s send→deliver at %.0f/s", mr.Mode, mr.Rate.TargetRate), histFrom(mr.Rate.DeliverHist)})
		}
		if mr.Group != nil {
			deliver = append(deliver, latencySeries{fmt.Sprintf("%s send→deliver, group of %d", mr.Mode, mr.Group.Members), histFrom(mr.Group.DeliverHist)})
		}
		if mr.Reconnect != nil {
			recon = append(recon, latencySeries{mr.Mode + " reconnect→synced", histFrom(mr.Reconnect.SyncedHist)})
		}
	}
	charts := map[string][]latencySeries{"deliver.svg": deliver, "ack.svg": ack, "reconnect.svg": recon}
	titles := map[string]string{"deliver.svg": "send→deliver latency", "ack.svg": "send→ACK latency", "reconnect.svg": "reconnect→fully synced, per client"}
	for file, s := range charts {
		if err := os.WriteFile(filepath.Join(dir, file), latencySVG(titles[file], s), 0o644); err != nil {
			return err
		}
	}
	fmt.Fprint(stdout, res.Table)
	fmt.Fprintf(stdout, "\nresults: %s (suite.json, deliver.svg, ack.svg, reconnect.svg, parley-*.log, centrifugo-*.log)\n", dir)
	return ctx.Err()
}

func parseRates(s string) (map[string]float64, error) {
	out := map[string]float64{}
	if s == "" {
		return out, nil
	}
	for _, kv := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(kv, "=")
		var r float64
		if _, err := fmt.Sscan(v, &r); !ok || err != nil || r <= 0 {
			return nil, fmt.Errorf("-rates %q: want mode=msgs_per_sec,...", s)
		}
		out[strings.TrimSpace(k)] = r
	}
	return out, nil
}

// runMode measures one mode. The connections scenario gets a parley of its
// own, started fresh: its RSS baseline is then a new process's, and the
// presence clean-up after 19,000 connections close (a burst of sidecar
// calls that lasts seconds) cannot slow the message scenarios down. Those
// share a second parley.
//
// ref, when not nil, is the Centrifugo measured beside this mode: it runs
// next to the second parley, idle while parley is measured and the other
// way round, and each of parley's direct runs is followed by one of its
// own, so that both sides see the same moments of a shared machine.
func runMode(ctx context.Context, root, bin, dir, settings, appID string, modeArgs []string, mi int, mr, ref *ModeResult,
	cfg suiteConfig, want map[string]bool, u ui, stderr io.Writer) error {
	// A separate range of source addresses per mode keeps one mode's
	// TIME_WAIT sockets out of the next one's way.
	c := common{sourceBase: fmt.Sprintf("127.0.%d.2", mi+1), progress: cfg.progress, concurrency: cfg.concurrency}
	// serve starts a parley, runs f against it and stops it.
	serve := func(id, logName string, f func(newE func(conns int) (*env, error)) error) error {
		start := time.Now()
		logPath := filepath.Join(dir, logName)
		p, err := startParley(ctx, root, bin, settings, id, cfg.logLevel, modeArgs, logPath)
		if err != nil {
			return err
		}
		defer p.stop(stderr)
		if mr.ServerLog == "" {
			mr.ServerLog, mr.StartSeconds = logPath, round2(time.Since(start).Seconds())
		}
		c := c
		c.target, c.serverPID, c.debugAddr = p.Base, p.Cmd.Process.Pid, p.debugURL
		newE := func(conns int) (*env, error) {
			e, err := newEnv(ctx, c, conns, stderr)
			if e != nil {
				e.ui = u
			}
			return e, err
		}
		if mr.Idle.RSSKB == 0 {
			e, err := newE(0)
			if err != nil {
				return err
			}
			mr.Idle = e.probe.sample(ctx)
		}
		return f(newE)
	}
	if want["connections"] {
		err := serve(appID+"-c", "parley-"+mr.Mode+"-connections.log", func(newE func(int) (*env, error)) error {
			fmt.Fprintf(stderr, "-- %s connections: %d for %s\n", mr.Mode, cfg.conns.n, cfg.conns.hold)
			e, err := newE(cfg.conns.n)
			if err != nil {
				return err
			}
			if mr.Connections, err = runConnections(ctx, e, cfg.conns); err != nil {
				return fmt.Errorf("connections: %w", err)
			}
			fmt.Fprint(stderr, mr.Connections.text())
			return nil
		})
		if err != nil {
			return err
		}
	}
	// The group gets a parley of its own too: a fresh heap, not one that
	// holds every message of the direct runs, and its clean-up after 2,000
	// connections close does not slow the others down.
	if want["group"] && cfg.wantsGroup(mr.Mode) {
		err := serve(appID+"-g", "parley-"+mr.Mode+"-group.log", func(newE func(int) (*env, error)) error {
			fmt.Fprintf(stderr, "-- %s group: %d members, %d senders for %s\n", mr.Mode, cfg.group.members, cfg.group.senders, cfg.group.duration)
			e, err := newE(cfg.group.members)
			if err != nil {
				return err
			}
			if mr.Group, err = runGroup(ctx, e, cfg.group); err != nil {
				return fmt.Errorf("group: %w", err)
			}
			fmt.Fprint(stderr, mr.Group.text())
			if goal, ok := groupTargets[mr.Mode]; ok && cfg.group.members > 1 {
				at := cfg.group
				at.rate = groupTargetRate(goal, at.members)
				// Long enough that the first second, with the set-up's
				// garbage still being collected, is not the tail.
				at.duration = max(at.duration, 10*time.Second)
				fmt.Fprintf(stderr, "-- %s group at the target: %.1f msg/s to %d members\n", mr.Mode, at.rate, at.members)
				// New users and connections: a group of its own.
				if e, err = newE(at.members); err != nil {
					return err
				}
				if mr.GroupAtTarget, err = runGroup(ctx, e, at); err != nil {
					return fmt.Errorf("group at the target rate: %w", err)
				}
				fmt.Fprint(stderr, mr.GroupAtTarget.text())
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	if !want["direct"] && !want["rate"] && !want["reconnect"] {
		return nil
	}
	return serve(appID, "parley-"+mr.Mode+".log", func(newE func(int) (*env, error)) error {
		if want["direct"] {
			refRun, refDone := func(int) {}, func() {}
			if ref != nil {
				refRun, refDone = startReference(ctx, cfg, dir, appID, mi, ref, u, stderr)
				defer refDone()
			}
			var runs []*DirectResult
			for i := range max(cfg.runs, 1) {
				fmt.Fprintf(stderr, "-- %s direct, flat out, run %d of %d: %d pairs for %s\n", mr.Mode, i+1, max(cfg.runs, 1), cfg.direct.pairs, cfg.direct.duration)
				e, err := newE(2 * cfg.direct.pairs)
				if err != nil {
					return err
				}
				r, err := runDirect(ctx, e, cfg.direct)
				if err != nil {
					return fmt.Errorf("direct: %w", err)
				}
				fmt.Fprint(stderr, r.text())
				runs = append(runs, r)
				mr.DirectRuns = append(mr.DirectRuns, r.AckedPerSec)
				mr.DirectLost += r.Lost
				refRun(i)
			}
			refDone()
			mr.Direct = medianRun(runs)
		}
		if want["rate"] {
			fmt.Fprintf(stderr, "-- %s direct at %.0f msg/s: %d pairs for %s\n", mr.Mode, mr.targetRate, cfg.direct.pairs, cfg.direct.duration)
			e, err := newE(2 * cfg.direct.pairs)
			if err != nil {
				return err
			}
			d := cfg.direct
			d.rate = mr.targetRate
			// Enough sends in flight that the rate, not the window, limits
			// the load: an open loop, as far as the window allows.
			d.inflight = max(d.inflight, 16)
			if mr.Rate, err = runDirect(ctx, e, d); err != nil {
				return fmt.Errorf("rate: %w", err)
			}
			fmt.Fprint(stderr, mr.Rate.text())
		}
		if want["reconnect"] {
			fmt.Fprintf(stderr, "-- %s reconnect: %d clients, %d missed each\n", mr.Mode, cfg.reconnect.clients, cfg.reconnect.missed)
			e, err := newE(cfg.reconnect.clients)
			if err != nil {
				return err
			}
			if mr.Reconnect, err = runReconnect(ctx, e, cfg.reconnect); err != nil {
				return fmt.Errorf("reconnect: %w", err)
			}
			fmt.Fprint(stderr, mr.Reconnect.text())
		}
		return nil
	})
}

// parleyProc is a parley the suite started.
type parleyProc struct {
	*testkit.Process
	debugURL string // Go's profiler, for goroutine counts
	children []int
}

func startParley(ctx context.Context, root, bin, settings, appID, logLevel string, modeArgs []string, logPath string) (*parleyProc, error) {
	// The profiler's listener tells the probe the goroutine count.
	debugAddr, err := freeLoopbackAddr()
	if err != nil {
		return nil, err
	}
	args := append([]string{
		"-addr", "127.0.0.1:0", "-dev-tokens", "-settings", settings,
		"-app-id", appID, "-node-id", appID, "-log-format", "json", "-log-level", logLevel,
		"-debug-addr", debugAddr,
	}, modeArgs...)
	p, err := testkit.Launch(ctx, testkit.LaunchOptions{Binary: bin, Args: args, Dir: root, LogPath: logPath})
	if err != nil {
		return nil, err
	}
	return &parleyProc{Process: p, debugURL: "http://" + debugAddr, children: testkit.ChildPIDs(p.Cmd.Process.Pid)}, nil
}

// stop asks parley to shut down (it stops its sidecar), kills it if it
// does not within 30 s, and kills a sidecar it left behind.
func (p *parleyProc) stop(w io.Writer) {
	if !p.Stop(30 * time.Second) {
		fmt.Fprintln(w, "parley did not stop within 30s; killed it")
	}
	for _, c := range p.children {
		if data, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", c)); err == nil && bytes.Contains(data, []byte("daprd")) {
			if proc, err := os.FindProcess(c); err == nil {
				_ = proc.Kill()
			}
		}
	}
}

// modeMissing says why a mode cannot run here, or "".
func modeMissing(root, mode, redisAddr string) string {
	if mode == "memory" {
		return ""
	}
	if _, err := os.Stat(filepath.Join(root, "sidecar", "bin", "daprd")); err != nil {
		return "sidecar/bin/daprd not built: run `make sidecar`"
	}
	if mode == "dapr-redis" {
		if err := redisPing(redisAddr); err != nil {
			return fmt.Sprintf("redis at %s does not answer: %v", redisAddr, err)
		}
	}
	return ""
}

func machine() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s/%s, %d CPUs, %s", runtime.GOOS, runtime.GOARCH, runtime.NumCPU(), runtime.Version())
	if data, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		sc := bufio.NewScanner(bytes.NewReader(data))
		for sc.Scan() {
			if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
				fmt.Fprintf(&b, ", %s", strings.TrimSpace(v))
				break
			}
		}
	}
	return b.String()
}

// redisPing checks that redis answers.
func redisPing(addr string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := checkLoopbackHost(ctx, hostOf(addr)); err != nil {
		return err
	}
	v, err := testkit.RedisDo(ctx, addr, "PING")
	if err != nil {
		return err
	}
	if v != "PONG" {
		return fmt.Errorf("PING answered %v", v)
	}
	return nil
}

func hostOf(addr string) string {
	h, _, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	return h
}

// redisCleanup deletes what the run left in redis: the state keys of its
// app-id ("<app-id>||...") and its node topic's stream.
func redisCleanup(addr, appID string) (int, error) {
	deleted, err := redisDeleteMatching(addr, appID+"||*")
	if err != nil {
		return deleted, err
	}
	// The node topic's stream, named after the node id.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	v, err := testkit.RedisDo(ctx, addr, "UNLINK", "node."+appID)
	if n, ok := v.(int64); ok {
		deleted += int(n)
	}
	return deleted, err
}

// redisDeleteMatching deletes the keys that match a SCAN pattern.
func redisDeleteMatching(addr, pattern string) (int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := checkLoopbackHost(ctx, hostOf(addr)); err != nil {
		return 0, err
	}
	c, err := testkit.DialRedis(ctx, addr)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	deleted := 0
	cursor := "0"
	for {
		v, err := c.Do("SCAN", cursor, "MATCH", pattern, "COUNT", "2000")
		if err != nil {
			return deleted, err
		}
		arr, ok := v.([]any)
		if !ok || len(arr) != 2 {
			return deleted, fmt.Errorf("unexpected SCAN reply %v", v)
		}
		cursor, _ = arr[0].(string)
		keys, _ := arr[1].([]any)
		if len(keys) > 0 {
			args := []string{"UNLINK"}
			for _, k := range keys {
				if s, ok := k.(string); ok {
					args = append(args, s)
				}
			}
			if v, err := c.Do(args...); err != nil {
				return deleted, err
			} else if n, ok := v.(int64); ok {
				deleted += int(n)
			}
		}
		if cursor == "0" {
			return deleted, nil
		}
	}
}

// freeLoopbackAddr returns a loopback address with a port that was free a
// moment ago.
func freeLoopbackAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("find a free port: %w", err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	return addr, nil
}

// medianRun returns the run with the median ACKed rate (the lower middle
// one of an even count).
func medianRun(runs []*DirectResult) *DirectResult {
	sorted := slices.Clone(runs)
	slices.SortFunc(sorted, func(a, b *DirectResult) int { return cmp.Compare(a.AckedPerSec, b.AckedPerSec) })
	return sorted[(len(sorted)-1)/2]
}
