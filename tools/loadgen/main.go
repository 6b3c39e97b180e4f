// Command loadgen puts load on a parley server through its public protocol
// (the client package, parley's Go SDK) and reports throughput, latency, memory and
// losses as a JSON file, an SVG chart of the latency distribution, and a
// summary on stdout.
//
// It targets this machine only: a target that is not a loopback address is
// refused. Every run is bounded in count and time and stops by itself.
// Connections are spread over several source addresses of 127.0.0.0/8, so
// that one server port can take more connections than one source address
// has ports, and the connections scenario re-executes this program as
// worker processes, so that it can hold more connections than one
// process's open-file limit.
//
// Usage:
//
//	loadgen connections -target http://127.0.0.1:8080 -n 19000 -hold 10s
//	loadgen direct      -target http://127.0.0.1:8080 -pairs 50 -duration 10s [-rate 20000]
//	loadgen reconnect   -target http://127.0.0.1:8080 -clients 1000 -missed 20
//	loadgen group       -target http://127.0.0.1:8080 -members 2000 -senders 10 -duration 10s [-rate 30]
//	loadgen units       -target http://127.0.0.1:8081 -peer http://127.0.0.1:8082 -pairs 10 -duration 10s [-rate 200]
//	loadgen suite       [-duration 10s] [-modes memory,dapr-local,dapr-redis] [-reference memory,redis]
//	loadgen centrifugo  -engine memory -pairs 50 -duration 10s
//
// The server must run with -dev-tokens (tokens come from POST
// /v1/dev/token) and, for the message scenarios, with a send rate limit
// above the load and its abuse guard off (it would suspend the load
// generator's addresses): a -settings file with
// `parley.send_rate_per_sec: 1000000` and `parley.abuse.disabled: true`.
// The suite starts parley itself, so it needs neither.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/pprof"
	"syscall"
	"time"

	jsoniter "github.com/json-iterator/go"
)

var json = jsoniter.ConfigCompatibleWithStandardLibrary

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr); err != nil {
		if !errors.Is(err, flag.ErrHelp) && !errors.Is(err, errReported) {
			fmt.Fprintln(os.Stderr, "loadgen:", err)
		}
		os.Exit(1)
	}
}

// errReported is an error a worker already reported on stdout to the
// process that started it.
var errReported = errors.New("reported")

const usage = `loadgen puts load on a parley server on this machine.

  loadgen connections  hold N idle authenticated WebSocket connections; report server RSS per connection
  loadgen direct       P pairs exchange messages; report throughput, send→ACK and send→deliver latency, losses
  loadgen reconnect    N clients drop, miss M messages each, reconnect at once; report time to fully synced
  loadgen group        one group of N members all online, S of them send; report deliveries/s (messages ×
                       recipients), send→deliver latency, losses, CPU per delivery
  loadgen units        two units (make units), every device on the target: conversations homed there
                       against conversations homed in the other unit; report send→deliver of both, cross-unit /s
  loadgen suite        build parley, run the scenarios against -backend memory, dapr local and
                       dapr redis (the group in memory and dapr redis), with Centrifugo's memory and
                       redis engines beside them in the direct scenario, and print markdown tables
  loadgen centrifugo   start Centrifugo (make centrifugo builds it) and run the direct scenario against it

Run "loadgen <scenario> -h" for its flags.
`

func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return flag.ErrHelp
	}
	switch args[0] {
	case "connections", "direct", "reconnect", "group":
		return runScenario(ctx, args[0], args[1:], stdout, stderr)
	case "units":
		return runUnitsScenario(ctx, args[1:], stdout, stderr)
	case "suite":
		return runSuite(ctx, args[1:], stdout, stderr)
	case "centrifugo":
		return runCentrifugoScenario(ctx, args[1:], stdout, stderr)
	case "worker":
		return runWorker(ctx, args[1:], stdin, stdout)
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, usage)
		return nil
	}
	fmt.Fprint(stderr, usage)
	return fmt.Errorf("unknown scenario %q", args[0])
}

// common are the flags every scenario takes.
type common struct {
	target      string
	outDir      string
	sources     int
	sourceBase  string
	proto       bool
	progress    string
	serverPID   int
	debugAddr   string
	timeout     time.Duration
	prefix      string
	concurrency int
	cpuProfile  string
}

func (c *common) register(fs *flag.FlagSet) {
	fs.StringVar(&c.target, "target", "http://127.0.0.1:8080", "parley base URL; loopback only")
	fs.StringVar(&c.outDir, "out-dir", "", "folder for the JSON result and the SVG chart; empty means a new folder under $TMPDIR")
	fs.IntVar(&c.sources, "sources", 0, "source addresses to spread connections over; 0 means one per 5,000 connections, at least 2")
	fs.StringVar(&c.sourceBase, "source-base", "127.0.0.2", "first source address, in 127.0.0.0/8")
	fs.BoolVar(&c.proto, "proto", false, "use binary protobuf frames instead of JSON")
	fs.StringVar(&c.progress, "progress", "auto", "progress bar on stderr: auto (when a terminal), on or off")
	fs.IntVar(&c.serverPID, "server-pid", 0, "server process to read RSS from; 0 means the owner of the target's listening port")
	fs.StringVar(&c.debugAddr, "debug-url", "", "base URL of an endpoint that tells goroutines (/debug/pprof, /metrics or /debug/vars); empty means -target")
	fs.DurationVar(&c.timeout, "timeout", 0, "hard bound of the whole run; 0 means the scenario's own time plus 3 minutes")
	fs.StringVar(&c.prefix, "prefix", "", "user name prefix; empty means a random one, so runs never share users")
	fs.IntVar(&c.concurrency, "dial-concurrency", 128, "connections dialled at once")
	fs.StringVar(&c.cpuProfile, "cpuprofile", "", "write the load generator's own CPU profile to this file (go tool pprof)")
}

// env is what a scenario runs with, built from the common flags.
type env struct {
	base        string
	port        int
	pool        *sourcePool
	ui          ui
	probe       *serverProbe
	proto       bool
	prefix      string
	concurrency int
	sources     int
	sourceBase  string
	log         io.Writer
}

func newEnv(ctx context.Context, c common, conns int, stderr io.Writer) (*env, error) {
	port, err := loopbackTarget(ctx, c.target)
	if err != nil {
		return nil, err
	}
	n := c.sources
	if n <= 0 {
		n = max(2, (conns+4999)/5000)
	}
	pool, err := newSourcePool(c.sourceBase, n)
	if err != nil {
		return nil, err
	}
	e := &env{
		base: c.target, port: port, pool: pool, proto: c.proto, prefix: c.prefix,
		concurrency: max(1, c.concurrency), sources: n, sourceBase: c.sourceBase, log: stderr,
	}
	if f, ok := stderr.(*os.File); ok {
		e.ui = newUI(c.progress, f)
	}
	if e.prefix == "" {
		e.prefix = runPrefix()
	}
	pid := c.serverPID
	if pid == 0 {
		if pid, err = listenerPID(port); err != nil {
			fmt.Fprintf(stderr, "loadgen: server RSS will not be measured: %v (give -server-pid)\n", err)
		}
	}
	debug := c.debugAddr
	if debug == "" {
		debug = c.target
	} else if _, err := loopbackTarget(ctx, debug); err != nil {
		return nil, err
	}
	e.probe = &serverProbe{pid: pid, debugBase: debug}
	return e, nil
}

// runScenario runs one scenario against a running server.
func runScenario(ctx context.Context, name string, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	var c common
	c.register(fs)
	var cc connectionsConfig
	var dc directConfig
	var rc reconnectConfig
	var gc groupConfig
	switch name {
	case "connections":
		cc.register(fs)
	case "direct":
		dc.register(fs)
	case "reconnect":
		rc.register(fs)
	case "group":
		gc.register(fs)
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	var bound time.Duration
	var conns int
	switch name {
	case "connections":
		bound, conns = cc.hold+cc.settle, cc.n
	case "direct":
		bound, conns = dc.duration+dc.drain, 2*dc.pairs
	case "reconnect":
		bound, conns = 0, rc.clients+rc.senders
	case "group":
		bound, conns = gc.duration+gc.drain, gc.members
	}
	if c.timeout <= 0 {
		c.timeout = bound + 3*time.Minute
	}
	if c.cpuProfile != "" {
		f, err := os.Create(c.cpuProfile)
		if err != nil {
			return fmt.Errorf("-cpuprofile: %w", err)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return fmt.Errorf("-cpuprofile: %w", err)
		}
		defer pprof.StopCPUProfile()
	}
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	e, err := newEnv(ctx, c, conns, stderr)
	if err != nil {
		return err
	}
	var res any
	var series []latencySeries
	var summary string
	switch name {
	case "connections":
		r, err := runConnections(ctx, e, cc)
		if err != nil {
			return err
		}
		res, series, summary = r, []latencySeries{{"connect (dial + upgrade + hello)", r.connectHist}}, r.text()
	case "direct":
		r, err := runDirect(ctx, e, dc)
		if err != nil {
			return err
		}
		res, series, summary = r, []latencySeries{{"send→ACK", r.ackHist}, {"send→deliver", r.deliverHist}}, r.text()
	case "reconnect":
		r, err := runReconnect(ctx, e, rc)
		if err != nil {
			return err
		}
		res, series, summary = r, []latencySeries{{"reconnect→synced", r.syncedHist}}, r.text()
	case "group":
		r, err := runGroup(ctx, e, gc)
		if err != nil {
			return err
		}
		res, series, summary = r, []latencySeries{{"send→ACK", r.ackHist}, {"send→deliver", r.deliverHist}}, r.text()
	}
	dir, err := outputDir(c.outDir)
	if err != nil {
		return err
	}
	jsonPath := filepath.Join(dir, name+".json")
	svgPath := filepath.Join(dir, name+".svg")
	if err := writeJSON(jsonPath, res); err != nil {
		return err
	}
	if err := os.WriteFile(svgPath, latencySVG(name+" latency distribution", series), 0o644); err != nil {
		return err
	}
	fmt.Fprint(stdout, summary)
	fmt.Fprintf(stdout, "\nresult: %s\nchart:  %s\n", jsonPath, svgPath)
	return nil
}

// outputDir returns dir, creating it, or a new folder under $TMPDIR.
func outputDir(dir string) (string, error) {
	if dir == "" {
		return os.MkdirTemp("", "parley-loadgen-"+time.Now().Format("20060102-150405")+"-")
	}
	return dir, os.MkdirAll(dir, 0o755)
}

func writeJSON(path string, v any) error {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(data, '\n'), 0o644)
}
