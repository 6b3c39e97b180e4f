package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/parley-im/parley/client"
	pb "github.com/parley-im/parley/proto/parley/v1"
)

// unitsConfig is the units scenario: two units of parley (make units), and
// pairs of users all connected to one of them (the target). Half the pairs
// talk in conversations homed in the target, half in conversations homed in
// the other unit (the peer), at the same time and rate, so that the
// latencies compare the two on the same load.
type unitsConfig struct {
	peer     string
	pairs    int
	duration time.Duration
	drain    time.Duration
	rate     float64
	inflight int
	body     int
}

func (c *unitsConfig) register(fs *flag.FlagSet) {
	fs.StringVar(&c.peer, "peer", "http://127.0.0.1:8082", "the other unit's base URL, where half the conversations are homed; loopback only")
	fs.IntVar(&c.pairs, "pairs", 10, "pairs of users per kind of conversation (homed in the target, homed in the peer)")
	fs.DurationVar(&c.duration, "duration", 10*time.Second, "how long to send")
	fs.DurationVar(&c.drain, "drain", 10*time.Second, "longest wait after sending for the last deliveries, before the final sync")
	fs.Float64Var(&c.rate, "rate", 200, "target sends per second over all senders, half to each kind; 0 means as fast as the units ACK")
	fs.IntVar(&c.inflight, "inflight", 1, "sends in flight per sender")
	fs.IntVar(&c.body, "body", 64, "message body size in bytes (at least 24: the body carries the send time)")
}

// UnitsResult is the units scenario's report.
type UnitsResult struct {
	Scenario   string  `json:"scenario"`
	Target     string  `json:"target"`
	Peer       string  `json:"peer"`
	TargetRate float64 `json:"target_rate"`
	Inflight   int     `json:"inflight_per_sender"`
	BodyBytes  int     `json:"body_bytes"`
	Window     float64 `json:"window_seconds"`
	// Local is the conversations homed in the target, Remote those homed
	// in the peer: their sends cross to the peer and their messages come
	// back to the target.
	Local  UnitsClass `json:"homed_in_target"`
	Remote UnitsClass `json:"homed_in_peer"`
	// DeliverP50Ratio is Remote's send→deliver p50 over Local's.
	DeliverP50Ratio float64        `json:"deliver_p50_ratio"`
	Errors          map[string]int `json:"errors,omitempty"`
}

// UnitsClass is one kind of conversation in the units scenario.
type UnitsClass struct {
	Pairs          int     `json:"pairs"`
	Acked          int64   `json:"acked"`
	AckedPerSec    float64 `json:"acked_per_sec"`
	Delivered      int64   `json:"delivered"`
	AckLatency     Summary `json:"send_to_ack"`
	DeliverLatency Summary `json:"send_to_deliver"`
	// Lost counts ACKed messages the receiver got neither live nor by the
	// final sync: it must be 0.
	Lost          int64 `json:"lost"`
	SyncRecovered int64 `json:"sync_recovered"`

	ackHist, deliverHist Histogram
}

func (r *UnitsResult) text() string {
	var b strings.Builder
	fmt.Fprintf(&b, "units: every device on %s; %d pairs homed there, %d homed in %s; %.0f sends/s target, %.1fs\n",
		r.Target, r.Local.Pairs, r.Remote.Pairs, r.Peer, r.TargetRate, r.Window)
	for _, c := range []struct {
		name string
		c    *UnitsClass
	}{{"homed here ", &r.Local}, {"homed there", &r.Remote}} {
		fmt.Fprintf(&b, "  %s ACKed %d (%.0f/s); send→ACK p50 %.2f p99 %.2f ms; send→deliver p50 %.2f p99 %.2f ms; lost %d, recovered by sync %d\n",
			c.name, c.c.Acked, c.c.AckedPerSec, c.c.AckLatency.P50Ms, c.c.AckLatency.P99Ms, c.c.DeliverLatency.P50Ms, c.c.DeliverLatency.P99Ms, c.c.Lost, c.c.SyncRecovered)
	}
	fmt.Fprintf(&b, "  cross-unit send→deliver p50 is %.2f× the local one\n", r.DeliverP50Ratio)
	if len(r.Errors) > 0 {
		fmt.Fprintf(&b, "  errors: %v\n", r.Errors)
	}
	return b.String()
}

// unitsPair is a sender and a receiver, both on the target.
type unitsPair struct {
	class          *UnitsClass
	from, to       string
	sender, recvr  *client.Client
	conv           string
	next           atomic.Uint64
	mu             sync.Mutex
	acked, got     map[uint64]bool
	receiverDone   chan struct{}
	receiverTokens string
}

// runUnitsScenario runs the units scenario against two running units.
func runUnitsScenario(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("units", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var c common
	c.register(fs)
	var cfg unitsConfig
	cfg.register(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if c.timeout <= 0 {
		c.timeout = cfg.duration + cfg.drain + 3*time.Minute
	}
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	if _, err := loopbackTarget(ctx, cfg.peer); err != nil {
		return fmt.Errorf("-peer: %w", err)
	}
	e, err := newEnv(ctx, c, 4*cfg.pairs, stderr)
	if err != nil {
		return err
	}
	res, err := runUnits(ctx, e, cfg)
	if err != nil {
		return err
	}
	dir, err := outputDir(c.outDir)
	if err != nil {
		return err
	}
	jsonPath, svgPath := filepath.Join(dir, "units.json"), filepath.Join(dir, "units.svg")
	if err := writeJSON(jsonPath, res); err != nil {
		return err
	}
	series := []latencySeries{{"send→deliver, homed in the target", &res.Local.deliverHist}, {"send→deliver, homed in the peer", &res.Remote.deliverHist}}
	if err := os.WriteFile(svgPath, latencySVG("units latency distribution", series), 0o644); err != nil {
		return err
	}
	fmt.Fprint(stdout, res.text())
	fmt.Fprintf(stdout, "\nresult: %s\nchart:  %s\n", jsonPath, svgPath)
	return nil
}

func runUnits(ctx context.Context, e *env, cfg unitsConfig) (*UnitsResult, error) {
	if cfg.pairs <= 0 || cfg.inflight <= 0 || cfg.duration <= 0 {
		return nil, errors.New("-pairs, -inflight and -duration must be positive")
	}
	cfg.body = max(cfg.body, 24)
	res := &UnitsResult{Scenario: "units", Target: e.base, Peer: cfg.peer, TargetRate: cfg.rate, Inflight: cfg.inflight, BodyBytes: cfg.body}
	res.Local.Pairs, res.Remote.Pairs = cfg.pairs, cfg.pairs
	var pairs []*unitsPair
	var users []string
	for i := range cfg.pairs {
		for _, k := range []struct {
			class *UnitsClass
			tag   string
		}{{&res.Local, "l"}, {&res.Remote, "r"}} {
			p := &unitsPair{class: k.class, from: userName(e.prefix, k.tag+"a", i), to: userName(e.prefix, k.tag+"b", i),
				acked: map[uint64]bool{}, got: map[uint64]bool{}, receiverDone: make(chan struct{})}
			pairs = append(pairs, p)
			users = append(users, p.from, p.to)
		}
	}
	// Units share the token secret: a token from the target signs in on
	// the peer too.
	tokens, err := fetchTokens(ctx, e.base, users, 16, func() {})
	if err != nil {
		return nil, err
	}
	for i, p := range pairs {
		ta, tb := tokens[2*i], tokens[2*i+1]
		p.receiverTokens = tb
		// The first message binds the conversation where it is sent.
		home := e.base
		if p.class == &res.Remote {
			home = cfg.peer
		}
		if p.conv, err = bindConv(ctx, home, ta, p.to); err != nil {
			return nil, fmt.Errorf("bind %s's conversation on %s: %w", p.from, home, err)
		}
		if p.sender, err = client.Dial(ctx, e.base, ta, client.Options{Device: "loadgen", Proto: e.proto, Buffer: 4096}); err != nil {
			return nil, err
		}
		defer p.sender.Close()
		if p.recvr, err = client.Dial(ctx, e.base, tb, client.Options{Device: "loadgen", Proto: e.proto, Buffer: 4096}); err != nil {
			return nil, err
		}
		defer p.recvr.Close()
		go func() {
			defer close(p.receiverDone)
			for m := range p.recvr.Messages {
				now := time.Now()
				if m.Conv != p.conv || m.From != p.from {
					continue
				}
				p.mu.Lock()
				dup := p.got[m.Seq]
				p.got[m.Seq] = true
				p.mu.Unlock()
				if dup {
					continue
				}
				if t, ok := bodyTime(m.Body); ok {
					p.class.deliverHist.Record(now.Sub(t))
				}
			}
		}()
	}

	var errs errCounts
	var behind atomic.Int64
	start := time.Now()
	stop := make(chan struct{})
	// Senders alternate between the kinds, so each gets half the rate.
	wait := runSenders(len(pairs), cfg.inflight, cfg.rate, start, stop, &behind, func(i int) bool {
		p := pairs[i]
		t0 := time.Now()
		sctx, cancel := context.WithTimeout(ctx, 15*time.Second)
		m, err := p.sender.Send(sctx, p.to, "", p.from+"-"+strconv.FormatUint(p.next.Add(1), 10), makeBody(t0, cfg.body))
		cancel()
		if err != nil {
			errs.add(err)
			return !errors.Is(err, client.ErrClosed)
		}
		p.class.ackHist.Record(time.Since(t0))
		p.mu.Lock()
		p.acked[m.Seq] = true
		p.mu.Unlock()
		return true
	})
	sleepCtx(ctx, cfg.duration)
	close(stop)
	window := time.Since(start)
	wait()
	res.Window = round2(window.Seconds())

	missing := func(p *unitsPair) []uint64 {
		p.mu.Lock()
		defer p.mu.Unlock()
		var out []uint64
		for s := range p.acked {
			if !p.got[s] {
				out = append(out, s)
			}
		}
		return out
	}
	drainEnd := time.Now().Add(cfg.drain)
	for ctx.Err() == nil && time.Now().Before(drainEnd) {
		n := 0
		for _, p := range pairs {
			n += len(missing(p))
		}
		if n == 0 {
			break
		}
		sleepCtx(ctx, 50*time.Millisecond)
	}
	for _, p := range pairs {
		miss := missing(p)
		p.mu.Lock()
		p.class.Acked += int64(len(p.acked))
		p.class.Delivered += int64(len(p.got))
		p.mu.Unlock()
		if len(miss) == 0 {
			continue
		}
		found, err := syncMissing(ctx, e, p.recvr, p.receiverTokens, p.conv, miss, func(*pb.Message) bool { return true })
		if err != nil {
			return nil, fmt.Errorf("final sync of %s: %w", p.to, err)
		}
		p.class.SyncRecovered += int64(found)
		p.class.Lost += int64(len(miss) - found)
	}
	for _, c := range []*UnitsClass{&res.Local, &res.Remote} {
		c.AckedPerSec = round2(float64(c.Acked) / window.Seconds())
		c.AckLatency, c.DeliverLatency = c.ackHist.Summary(), c.deliverHist.Summary()
	}
	if res.Local.DeliverLatency.P50Ms > 0 {
		res.DeliverP50Ratio = round2(res.Remote.DeliverLatency.P50Ms / res.Local.DeliverLatency.P50Ms)
	}
	res.Errors = errs.snapshot()
	return res, nil
}

// bindConv sends the first message of the direct conversation of the
// token's user and to over base's HTTP API, which binds the conversation
// to that unit, and returns its id.
func bindConv(ctx context.Context, base, token, to string) (string, error) {
	body, _ := json.Marshal(map[string]string{"to": to, "cmid": "bind", "body": "bind"})
	var out struct {
		Conv string `json:"conv"`
	}
	if err := client.DoJSON(ctx, http.MethodPost, base+"/v1/messages", token, body, &out); err != nil {
		return "", err
	}
	return out.Conv, nil
}
