// Package daprd starts and stops a real Dapr sidecar (the daprd binary built
// by `make sidecar` into sidecar/bin/daprd) on free loopback ports. The
// tests of infrastructure/dapr and the local run command use it; in a
// cluster the platform starts daprd instead.
package daprd

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// ModulePath is the module whose go.mod marks the repository root.
const ModulePath = "github.com/parley-im/parley"

// Options describe one daprd. Only ResourcesPath and AppID are required.
type Options struct {
	// Binary is the daprd executable. Zero value means
	// <repo root>/sidecar/bin/daprd, built by `make sidecar`.
	Binary string
	// ResourcesPath is the components folder, e.g. <repo root>/components/redis. Required.
	ResourcesPath string
	// ConfigPath is a Dapr Configuration file (tracing, features). Zero
	// value means <repo root>/sidecar/config.yaml.
	ConfigPath string
	// ResiliencyPath is a Dapr Resiliency file. Zero value means
	// <repo root>/sidecar/resiliency.yaml; "-" means none.
	//
	// Resiliency is a resource, read from a resources path, but
	// sidecar/ also holds Go sources that daprd would warn about, so the
	// file is copied alone into a private folder passed as a second
	// --resources-path.
	ResiliencyPath string
	// AppID is the Dapr app id: the state key prefix, the consumer group on
	// brokers that have them, and the name callers invoke. Required.
	AppID string
	// AppPort is the port on which the app serves invocations over HTTP
	// (see dapr.Client.InvocationHandler). Zero value means none: daprd
	// then only serves the app's outbound calls and streaming subscriptions.
	AppPort int
	// InstanceName names this daprd among the replicas of AppID. It is
	// exported to daprd as POD_NAME, so that components can use {podName}
	// for per-node identities that must survive a restart (the MQTT client
	// id of components/mysql-mqtt). Zero value means "<AppID>-<gRPC port>".
	InstanceName string
	// Dir is daprd's working directory, against which relative paths in
	// component files resolve (the database file of components/sqlite).
	// Zero value means the caller's working directory.
	Dir string
	// LogPath is the file daprd's output is appended to. Zero value means a
	// new file under os.TempDir().
	LogPath string
	// LogLevel is daprd's --log-level. Zero value means "info".
	LogLevel string
	// ReadyTimeout bounds the wait for /v1.0/healthz/outbound at Start and
	// Restart. Zero value means 30 * time.Second.
	ReadyTimeout time.Duration
	// APIToken, when set, is required by daprd on every call of its APIs
	// (DAPR_API_TOKEN): the app must send it. Zero value means daprd takes
	// calls from anyone who reaches its ports (loopback only here).
	APIToken string
	// AppAPIToken, when set, is sent by daprd on every call into the app
	// (APP_API_TOKEN), so the app can refuse calls that do not come from
	// its sidecar. Zero value means none.
	AppAPIToken string
	// Env adds KEY=VALUE variables to daprd's environment, after the
	// caller's: sidecar/config.yaml reads the collector addresses of
	// tracing from it (PARLEY_DAPR_OTLP_ENDPOINT and the like). Zero value
	// means none.
	Env []string
}

// Sidecar is one running (or stopped) daprd. Its methods are safe for
// concurrent use.
type Sidecar struct {
	opts    Options
	args    []string
	env     []string
	ports   ports
	privDir string // holds the resiliency copy; removed by Stop

	mu   sync.Mutex
	proc *process
}

type ports struct {
	grpc, http, metrics, internal int
}

// process is one run of the binary; Restart makes a new one.
type process struct {
	cmd    *exec.Cmd
	log    *os.File
	exited chan struct{} // closed when the process has been reaped
	err    error         // Wait's result, readable once exited is closed
}

// Start launches daprd and waits until it reports ready. The caller owns the
// Sidecar and must Stop it.
func Start(ctx context.Context, opts Options) (*Sidecar, error) {
	if opts.AppID == "" {
		return nil, errors.New("daprd: Options.AppID is required")
	}
	if opts.ResourcesPath == "" {
		return nil, errors.New("daprd: Options.ResourcesPath is required")
	}
	if err := resolvePaths(&opts); err != nil {
		return nil, err
	}
	if opts.LogLevel == "" {
		opts.LogLevel = "info"
	}
	if opts.ReadyTimeout <= 0 {
		opts.ReadyTimeout = 30 * time.Second
	}

	p, err := freePorts()
	if err != nil {
		return nil, err
	}
	if opts.InstanceName == "" {
		opts.InstanceName = opts.AppID + "-" + strconv.Itoa(p.grpc)
	}
	if opts.LogPath == "" {
		f, err := os.CreateTemp("", "parley-daprd-"+opts.AppID+"-*.log")
		if err != nil {
			return nil, fmt.Errorf("daprd: create log file: %w", err)
		}
		opts.LogPath = f.Name()
		f.Close()
	}

	s := &Sidecar{opts: opts, ports: p}
	resources := []string{opts.ResourcesPath}
	if opts.ResiliencyPath != "" {
		if s.privDir, err = copyToPrivateDir(opts.ResiliencyPath); err != nil {
			return nil, err
		}
		resources = append(resources, s.privDir)
	}
	s.args = buildArgs(opts, p, resources)
	// DAPR_HOST_IP makes daprd announce loopback to the name resolver, so
	// invocations between sidecars never leave 127.0.0.1.
	s.env = append(os.Environ(), "POD_NAME="+opts.InstanceName, "DAPR_HOST_IP=127.0.0.1")
	if opts.APIToken != "" {
		s.env = append(s.env, "DAPR_API_TOKEN="+opts.APIToken)
	}
	if opts.AppAPIToken != "" {
		s.env = append(s.env, "APP_API_TOKEN="+opts.AppAPIToken)
	}
	s.env = append(s.env, opts.Env...)

	// A port taken between the pick and daprd's bind makes daprd exit; a
	// new pick of ports is tried then, a few times.
	for attempt := 1; ; attempt++ {
		err := s.launch(ctx)
		if err == nil {
			return s, nil
		}
		if attempt == 3 || !s.portTaken() {
			s.removePrivDir()
			return nil, err
		}
		if s.ports, err = freePorts(); err != nil {
			s.removePrivDir()
			return nil, err
		}
		s.args = buildArgs(opts, s.ports, resources)
	}
}

// portTaken reports whether daprd's last start failed because a port was
// taken, from the end of its log.
func (s *Sidecar) portTaken() bool {
	f, err := os.Open(s.opts.LogPath)
	if err != nil {
		return false
	}
	defer f.Close()
	if st, err := f.Stat(); err == nil && st.Size() > 8192 {
		_, _ = f.Seek(st.Size()-8192, io.SeekStart)
	}
	tail, _ := io.ReadAll(f)
	// Only the last start's lines: launch writes a "=== " line first.
	if i := bytes.LastIndex(tail, []byte("\n=== ")); i >= 0 {
		tail = tail[i:]
	}
	return bytes.Contains(tail, []byte("address already in use"))
}

func buildArgs(opts Options, p ports, resources []string) []string {
	args := []string{
		"--app-id", opts.AppID,
		"--dapr-listen-addresses", "127.0.0.1",
		"--dapr-grpc-port", strconv.Itoa(p.grpc),
		"--dapr-http-port", strconv.Itoa(p.http),
		"--dapr-internal-grpc-port", strconv.Itoa(p.internal),
		"--metrics-port", strconv.Itoa(p.metrics),
		"--metrics-listen-address", "127.0.0.1",
		"--log-level", opts.LogLevel,
	}
	for _, r := range resources {
		args = append(args, "--resources-path", r)
	}
	if opts.ConfigPath != "" {
		args = append(args, "--config", opts.ConfigPath)
	}
	if opts.AppPort > 0 {
		args = append(args,
			"--app-port", strconv.Itoa(opts.AppPort),
			"--app-protocol", "http",
			"--app-channel-address", "127.0.0.1")
	}
	return args
}

// resolvePaths fills the defaults that live in the repository, finding the
// root only when one of them is needed.
func resolvePaths(opts *Options) error {
	var root string
	rootOf := func() (string, error) {
		if root != "" {
			return root, nil
		}
		r, err := RepoRoot()
		root = r
		return r, err
	}
	if opts.Binary == "" {
		r, err := rootOf()
		if err != nil {
			return fmt.Errorf("daprd: find the binary: %w", err)
		}
		opts.Binary = filepath.Join(r, "sidecar", "bin", "daprd")
	}
	if _, err := os.Stat(opts.Binary); err != nil {
		return fmt.Errorf("daprd: no binary at %s: run `make sidecar` to build it: %w", opts.Binary, err)
	}
	if opts.ConfigPath == "" {
		r, err := rootOf()
		if err != nil {
			return fmt.Errorf("daprd: find sidecar/config.yaml: %w", err)
		}
		opts.ConfigPath = filepath.Join(r, "sidecar", "config.yaml")
	}
	switch opts.ResiliencyPath {
	case "-":
		opts.ResiliencyPath = ""
	case "":
		r, err := rootOf()
		if err != nil {
			return fmt.Errorf("daprd: find sidecar/resiliency.yaml: %w", err)
		}
		opts.ResiliencyPath = filepath.Join(r, "sidecar", "resiliency.yaml")
	}
	for _, p := range []string{opts.ResourcesPath, opts.ConfigPath, opts.ResiliencyPath} {
		if p == "" {
			continue
		}
		if _, err := os.Stat(p); err != nil {
			return fmt.Errorf("daprd: %w", err)
		}
	}
	return nil
}

func copyToPrivateDir(file string) (string, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return "", fmt.Errorf("daprd: read %s: %w", file, err)
	}
	dir, err := os.MkdirTemp("", "parley-daprd-resources-*")
	if err != nil {
		return "", fmt.Errorf("daprd: create resources folder: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, filepath.Base(file)), data, 0o600); err != nil {
		os.RemoveAll(dir)
		return "", fmt.Errorf("daprd: copy %s: %w", file, err)
	}
	return dir, nil
}

// freePorts picks four free ports below the kernel's ephemeral range
// (32768 and up on Linux), holding all of them until the last is chosen so
// that they differ. daprd binds some of them seconds after it starts (the
// internal gRPC port, on every interface, once its components are up); a
// port from the ephemeral range may meanwhile become the source port of
// any outgoing connection on the machine, and a busy test run makes
// thousands.
func freePorts() (ports, error) {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	var got [4]int
	for i := range got {
		for try := 0; ; try++ {
			if try == 200 {
				return ports{}, errors.New("daprd: no free port between 20000 and 32767")
			}
			port := 20000 + rand.IntN(32768-20000)
			// On every interface: that is how daprd binds its internal port.
			l, err := net.Listen("tcp", ":"+strconv.Itoa(port))
			if err != nil {
				continue
			}
			ls = append(ls, l)
			got[i] = port
			break
		}
	}
	return ports{grpc: got[0], http: got[1], metrics: got[2], internal: got[3]}, nil
}

// launch starts the process and waits for readiness.
func (s *Sidecar) launch(ctx context.Context) error {
	logFile, err := os.OpenFile(s.opts.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("daprd: open log %s: %w", s.opts.LogPath, err)
	}
	fmt.Fprintf(logFile, "\n=== %s daprd %s\n", time.Now().Format(time.RFC3339), strings.Join(s.args, " "))

	// Not exec.CommandContext: the sidecar outlives ctx, which only bounds
	// the start.
	cmd := exec.Command(s.opts.Binary, s.args...)
	cmd.Env = s.env
	cmd.Dir = s.opts.Dir
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return fmt.Errorf("daprd: start %s: %w", s.opts.Binary, err)
	}
	p := &process{cmd: cmd, log: logFile, exited: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		p.log.Close()
		close(p.exited)
	}()

	s.mu.Lock()
	s.proc = p
	s.mu.Unlock()

	if err := s.waitReady(ctx, p); err != nil {
		p.kill()
		return err
	}
	return nil
}

func (s *Sidecar) waitReady(ctx context.Context, p *process) error {
	ctx, cancel := context.WithTimeout(ctx, s.opts.ReadyTimeout)
	defer cancel()
	url := "http://" + s.HTTPAddr() + "/v1.0/healthz/outbound"
	client := &http.Client{Timeout: time.Second}
	tick := time.NewTimer(50 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-p.exited:
			logTail := tail(s.opts.LogPath, 20)
			return fmt.Errorf("daprd: exited before ready (%v); log %s:\n%s%s", p.err, s.opts.LogPath, logTail, hint(logTail, s.opts.ResourcesPath))
		case <-ctx.Done():
			return fmt.Errorf("daprd: not ready at %s after %s: %w; log %s:\n%s", url, s.opts.ReadyTimeout, ctx.Err(), s.opts.LogPath, tail(s.opts.LogPath, 20))
		case <-tick.C:
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return fmt.Errorf("daprd: %w", err)
		}
		if resp, err := client.Do(req); err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode/100 == 2 {
				return nil
			}
		}
		tick.Reset(50 * time.Millisecond)
	}
}

// hint says what to do about a daprd failure whose fix is known, from the
// end of its log; empty when there is none.
func hint(logTail, resources string) string {
	if strings.Contains(logTail, "configuration table") && strings.Contains(logTail, "does not exist") {
		return "\nwhat to do: create the configuration table and its trigger with the SQL at the top of " +
			filepath.Join(resources, "configstore.yaml") + ", then start again"
	}
	return ""
}

// tail returns the last n lines of the file at path, for error messages.
func tail(path string, n int) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	var lines []string
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 64*1024), 1<<20)
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func (p *process) kill() {
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.exited
}

// GRPCAddr is daprd's gRPC API address, for dapr.Config.GRPCAddress.
func (s *Sidecar) GRPCAddr() string { return "127.0.0.1:" + strconv.Itoa(s.ports.grpc) }

// HTTPAddr is daprd's HTTP API address, for dapr.Config.HTTPAddress.
func (s *Sidecar) HTTPAddr() string { return "127.0.0.1:" + strconv.Itoa(s.ports.http) }

// AppID is the app id daprd runs as.
func (s *Sidecar) AppID() string { return s.opts.AppID }

// AppPort is the port daprd calls the app on; 0 for none.
func (s *Sidecar) AppPort() int { return s.opts.AppPort }

// InstanceName is the name daprd runs under among its app's replicas
// (POD_NAME).
func (s *Sidecar) InstanceName() string { return s.opts.InstanceName }

// LogPath is the file daprd's output goes to.
func (s *Sidecar) LogPath() string { return s.opts.LogPath }

// Stop asks daprd to shut down (SIGTERM) and waits for it, killing it if
// ctx ends first. It removes the private resources folder; a stopped
// Sidecar cannot be restarted. Stopping twice is harmless.
func (s *Sidecar) Stop(ctx context.Context) error {
	err := s.terminate(ctx)
	s.removePrivDir()
	return err
}

func (s *Sidecar) terminate(ctx context.Context) error {
	s.mu.Lock()
	p := s.proc
	s.mu.Unlock()
	if p == nil {
		return nil
	}
	select {
	case <-p.exited:
		return nil
	default:
	}
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("daprd: signal: %w", err)
	}
	select {
	case <-p.exited:
		return nil
	case <-ctx.Done():
		p.kill()
		return fmt.Errorf("daprd: killed after it did not stop in time: %w", ctx.Err())
	}
}

// Kill ends daprd at once with SIGKILL, as a crash would, and waits until
// it is gone. Restart brings it back on the same ports.
func (s *Sidecar) Kill() {
	s.mu.Lock()
	p := s.proc
	s.mu.Unlock()
	if p != nil {
		p.kill()
	}
}

// Restart stops daprd if it runs, then starts it again with the same ports
// and arguments, and waits until it is ready.
func (s *Sidecar) Restart(ctx context.Context) error {
	if err := s.terminate(ctx); err != nil {
		return err
	}
	return s.launch(ctx)
}

func (s *Sidecar) removePrivDir() {
	if s.privDir != "" {
		os.RemoveAll(s.privDir)
	}
}

// RepoRoot finds the repository root: the nearest directory, from the
// working directory up, whose go.mod declares module ModulePath.
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("find repository root: %w", err)
	}
	for {
		if data, err := os.ReadFile(filepath.Join(dir, "go.mod")); err == nil && declaresModule(data, ModulePath) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("find repository root: no go.mod of module %s above the working directory", ModulePath)
		}
		dir = parent
	}
}

func declaresModule(gomod []byte, module string) bool {
	sc := bufio.NewScanner(bytes.NewReader(gomod))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) >= 2 && f[0] == "module" {
			return strings.Trim(f[1], `"`) == module
		}
	}
	return false
}
