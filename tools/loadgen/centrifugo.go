package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/parley-im/parley/tools/testkit"
)

// centrifugoVersion is the Centrifugo release parley is measured beside.
// `make centrifugo` installs it into centrifugoBinary.
const centrifugoVersion = "6.9.1"

// centrifugoBinary is where `make centrifugo` caches the binary, relative
// to the repository root; the folder is git-ignored.
const centrifugoBinary = ".build/centrifugo-v" + centrifugoVersion + "/centrifugo"

// centrifugoNamespace is the channel namespace every pair's channel is in.
const centrifugoNamespace = "chat"

// centrifugoConfig is what a generated Centrifugo configuration says.
type centrifugoConfig struct {
	// Engine is "memory" or "redis".
	Engine string
	// RedisAddr is the redis (host:port) of the redis engine.
	RedisAddr string
	// RedisPrefix prefixes every redis key and channel Centrifugo uses, so
	// that a run's keys can be found and deleted.
	RedisPrefix string
	// Port is the HTTP port, on 127.0.0.1.
	Port int
	// Secret signs the connection tokens (HS256).
	Secret string
	// HistorySize and HistoryTTL bound each channel's history. Zero means
	// 1,000 publications and 10 minutes.
	HistorySize int
	HistoryTTL  time.Duration
}

func (c centrifugoConfig) withDefaults() centrifugoConfig {
	if c.HistorySize == 0 {
		c.HistorySize = 1000
	}
	if c.HistoryTTL == 0 {
		c.HistoryTTL = 10 * time.Minute
	}
	return c
}

// json renders the configuration in Centrifugo v6's layout. The token
// secret is left out: it goes in the environment (env), so that the
// results folder, where the file is kept, holds no secret.
func (c centrifugoConfig) json() ([]byte, error) {
	c = c.withDefaults()
	engine := map[string]any{"type": c.Engine}
	switch c.Engine {
	case "memory":
	case "redis":
		engine["redis"] = map[string]any{
			"address": []string{"redis://" + c.RedisAddr},
			"prefix":  c.RedisPrefix,
		}
	default:
		return nil, fmt.Errorf("centrifugo engine %q: want memory or redis", c.Engine)
	}
	cfg := map[string]any{
		"http_server": map[string]any{"address": "127.0.0.1", "port": c.Port},
		"log":         map[string]any{"level": "warn"},
		"engine":      engine,
		"channel": map[string]any{
			"namespaces": []map[string]any{{
				"name":                         centrifugoNamespace,
				"history_size":                 c.HistorySize,
				"history_ttl":                  c.HistoryTTL.String(),
				"force_positioning":            true,
				"force_recovery":               true,
				"allow_subscribe_for_client":   true,
				"allow_publish_for_subscriber": true,
			}},
		},
		"health":      map[string]any{"enabled": true},
		"usage_stats": map[string]any{"disabled": true},
		"shutdown":    map[string]any{"timeout": "5s"},
	}
	return json.MarshalIndent(cfg, "", "  ")
}

// env is the environment Centrifugo runs with: the caller's and the token
// secret.
func (c centrifugoConfig) env() []string {
	return append(os.Environ(), "CENTRIFUGO_CLIENT_TOKEN_HMAC_SECRET_KEY="+c.Secret)
}

// centrifugoToken signs a connection token for user, valid for an hour.
func centrifugoToken(secret, user string) (string, error) {
	t := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.RegisteredClaims{
		Subject:   user,
		ExpiresAt: jwt.NewNumericDate(time.Now().Add(time.Hour)),
	})
	s, err := t.SignedString([]byte(secret))
	if err != nil {
		return "", fmt.Errorf("sign centrifugo token: %w", err)
	}
	return s, nil
}

// centrifugoProc is a Centrifugo the load generator started.
type centrifugoProc struct {
	// Base is http://127.0.0.1:port.
	Base    string
	Cmd     *exec.Cmd
	LogPath string
	cfg     centrifugoConfig
	exited  chan struct{}
}

// centrifugoMissing says why bin cannot run here, or "".
func centrifugoMissing(bin string) string {
	if _, err := os.Stat(bin); err != nil {
		return fmt.Sprintf("%s not built: run `make centrifugo`", bin)
	}
	return ""
}

// startCentrifugo writes cfg (with a free port and a fresh secret) into
// dir, starts bin with it and returns once it answers /health. Its output
// goes to dir/centrifugo-<engine>.log.
func startCentrifugo(ctx context.Context, bin, dir string, cfg centrifugoConfig) (*centrifugoProc, error) {
	addr, err := freeLoopbackAddr()
	if err != nil {
		return nil, err
	}
	_, port, _ := strings.Cut(addr, ":")
	if cfg.Port, err = strconv.Atoi(port); err != nil {
		return nil, fmt.Errorf("free port %q: %w", addr, err)
	}
	if cfg.Secret == "" {
		var b [32]byte
		_, _ = rand.Read(b[:])
		cfg.Secret = hex.EncodeToString(b[:])
	}
	data, err := cfg.json()
	if err != nil {
		return nil, err
	}
	cfgPath := filepath.Join(dir, "centrifugo-"+cfg.Engine+".json")
	if err := os.WriteFile(cfgPath, data, 0o600); err != nil {
		return nil, fmt.Errorf("write centrifugo config: %w", err)
	}
	logPath := filepath.Join(dir, "centrifugo-"+cfg.Engine+".log")
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return nil, fmt.Errorf("centrifugo log: %w", err)
	}
	// The process runs in dir, where a relative path would not resolve.
	if bin, err = filepath.Abs(bin); err != nil {
		return nil, fmt.Errorf("centrifugo binary: %w", err)
	}
	cmd := exec.Command(bin, "--config", cfgPath)
	cmd.Dir, cmd.Env = dir, cfg.env()
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = workerAttr() // no Centrifugo outlives its run
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start centrifugo: %w", err)
	}
	p := &centrifugoProc{Base: "http://" + addr, Cmd: cmd, LogPath: logPath, cfg: cfg, exited: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		logf.Close()
		close(p.exited)
	}()
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	err = testkit.Until(wctx, func() bool {
		select {
		case <-p.exited:
			cancel()
			return false
		default:
		}
		req, _ := http.NewRequestWithContext(wctx, http.MethodGet, p.Base+"/health", nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	if err == nil {
		return p, nil
	}
	select {
	case <-p.exited:
		return nil, fmt.Errorf("centrifugo exited before serving (%s); its log ends:\n%s", cmd.ProcessState, testkit.Tail(logPath, 20))
	default:
	}
	p.kill()
	if errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
		return nil, fmt.Errorf("centrifugo not serving after 30s; its log ends:\n%s", testkit.Tail(logPath, 20))
	}
	return nil, fmt.Errorf("start centrifugo: %w", err)
}

// stop asks Centrifugo to shut down and kills it after grace. It reports
// whether Centrifugo stopped by itself. A nil p is a no-op.
func (p *centrifugoProc) stop(grace time.Duration) bool {
	if p == nil {
		return true
	}
	_ = p.Cmd.Process.Signal(syscall.SIGTERM)
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-p.exited:
		return true
	case <-t.C:
		p.kill()
		return false
	}
}

func (p *centrifugoProc) kill() {
	_ = p.Cmd.Process.Signal(syscall.SIGKILL)
	<-p.exited
}

// wsURL is the WebSocket endpoint of the bidirectional JSON protocol.
func (p *centrifugoProc) wsURL() string {
	return "ws" + strings.TrimPrefix(p.Base, "http") + "/connection/websocket"
}

// centrifugoVersionOf asks bin for its version line.
func centrifugoVersionOf(ctx context.Context, bin string) (string, error) {
	vctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(vctx, bin, "version").Output()
	if err != nil {
		return "", fmt.Errorf("%s version: %w", bin, err)
	}
	return strings.TrimSpace(string(out)), nil
}

// runCentrifugoScenario starts a Centrifugo with the given engine, runs the
// direct scenario against it once, and stops it: the reference column of
// the suite, alone.
func runCentrifugoScenario(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("centrifugo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var dc directConfig
	dc.register(fs)
	bin := fs.String("centrifugo", "", "the Centrifugo binary; empty means "+centrifugoBinary+" in the checkout (`make centrifugo` builds it)")
	engine := fs.String("engine", "memory", "Centrifugo engine: memory, or redis on -redis")
	redisAddr := fs.String("redis", "127.0.0.1:6379", "the redis of the redis engine; loopback only")
	outDir := fs.String("out-dir", "", "folder for the config, Centrifugo's log, the JSON result and the SVG chart; empty means a new folder under $TMPDIR")
	progress := fs.String("progress", "auto", "progress bar on stderr: auto (when a terminal), on or off")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if *bin == "" {
		root, err := testkit.RepoRoot()
		if err != nil {
			return fmt.Errorf("give -centrifugo, or run inside the parley checkout: %w", err)
		}
		*bin = filepath.Join(root, centrifugoBinary)
	}
	if reason := centrifugoMissing(*bin); reason != "" {
		return errors.New(reason)
	}
	ctx, cancel := context.WithTimeout(ctx, dc.duration+dc.drain+3*time.Minute)
	defer cancel()
	cfg := centrifugoConfig{Engine: *engine}
	if *engine == "redis" {
		if err := redisPing(*redisAddr); err != nil {
			return fmt.Errorf("redis at %s: %w", *redisAddr, err)
		}
		cfg.RedisAddr, cfg.RedisPrefix = *redisAddr, runPrefix()+"-centrifugo"
		defer func() {
			if _, err := redisDeleteMatching(cfg.RedisAddr, cfg.RedisPrefix+"*"); err != nil {
				fmt.Fprintf(stderr, "loadgen: delete the run's redis keys: %v\n", err)
			}
		}()
	}
	dir, err := outputDir(*outDir)
	if err != nil {
		return err
	}
	p, err := startCentrifugo(ctx, *bin, dir, cfg)
	if err != nil {
		return err
	}
	defer p.stop(10 * time.Second)
	e, err := newEnv(ctx, common{target: p.Base, serverPID: p.Cmd.Process.Pid, sourceBase: "127.0.0.2", progress: *progress, concurrency: 128}, 2*dc.pairs, stderr)
	if err != nil {
		return err
	}
	r, err := runDirectCentrifugo(ctx, e, dc, p)
	if err != nil {
		return err
	}
	jsonPath := filepath.Join(dir, "centrifugo-"+*engine+".result.json")
	svgPath := filepath.Join(dir, "centrifugo-"+*engine+".svg")
	if err := writeJSON(jsonPath, r); err != nil {
		return err
	}
	series := []latencySeries{{"send→ACK", r.ackHist}, {"send→deliver", r.deliverHist}}
	if err := os.WriteFile(svgPath, latencySVG("Centrifugo "+*engine+" latency distribution", series), 0o644); err != nil {
		return err
	}
	fmt.Fprint(stdout, r.text())
	fmt.Fprintf(stdout, "  echoes to the publisher %d\n\nresult: %s\nchart:  %s\nlog:    %s\n", r.Echoes, jsonPath, svgPath, p.LogPath)
	return nil
}
