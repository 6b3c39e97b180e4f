package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/parley-im/parley/client"
	pb "github.com/parley-im/parley/proto/parley/v1"
)

type directConfig struct {
	pairs    int
	duration time.Duration
	drain    time.Duration
	rate     float64
	inflight int
	body     int
	oneWay   bool
}

func (c *directConfig) register(fs *flag.FlagSet) {
	fs.IntVar(&c.pairs, "pairs", 50, "pairs of users; each pair is one direct conversation")
	fs.DurationVar(&c.duration, "duration", 10*time.Second, "how long to send")
	fs.DurationVar(&c.drain, "drain", 10*time.Second, "longest wait after sending for the last deliveries, before the final sync")
	fs.Float64Var(&c.rate, "rate", 0, "target sends per second over all senders; 0 means as fast as the server ACKs")
	fs.IntVar(&c.inflight, "inflight", 8, "sends in flight per sender")
	fs.IntVar(&c.body, "body", 64, "message body size in bytes (at least 20: the body carries the send time)")
	fs.BoolVar(&c.oneWay, "one-way", false, "only the first user of each pair sends; by default both do")
}

// serverUsage is what the server used during a scenario.
type serverUsage struct {
	CPUSeconds        float64 `json:"cpu_seconds"`
	CPUCores          float64 `json:"cpu_cores"`
	SidecarCPUSeconds float64 `json:"sidecar_cpu_seconds,omitempty"`
	SidecarCPUCores   float64 `json:"sidecar_cpu_cores,omitempty"`
	RSSKB             int64   `json:"rss_kb"`
	SidecarRSSKB      int64   `json:"sidecar_rss_kb,omitempty"`
	LoadgenCPUCores   float64 `json:"loadgen_cpu_cores"`
}

// cpuLine is the report line that says how the cores were shared.
func (u serverUsage) cpuLine(label string) string {
	return fmt.Sprintf("  %s: server %.2f, sidecar %.2f, load generator %.2f\n", label, u.CPUCores, u.SidecarCPUCores, u.LoadgenCPUCores)
}

func usageBetween(a, b serverSample, lgA, lgB time.Duration, wall time.Duration) serverUsage {
	w := wall.Seconds()
	return serverUsage{
		CPUSeconds: round2((b.CPU - a.CPU).Seconds()), CPUCores: round2((b.CPU - a.CPU).Seconds() / w),
		SidecarCPUSeconds: round2((b.SidecarCPU - a.SidecarCPU).Seconds()), SidecarCPUCores: round2((b.SidecarCPU - a.SidecarCPU).Seconds() / w),
		RSSKB: b.RSSKB, SidecarRSSKB: b.SidecarRSSKB, LoadgenCPUCores: round2((lgB - lgA).Seconds() / w),
	}
}

func selfCPU() time.Duration {
	d, _ := procCPU(os.Getpid())
	return d
}

// DirectResult is the direct scenario's report.
type DirectResult struct {
	Scenario   string  `json:"scenario"`
	Target     string  `json:"target"`
	Pairs      int     `json:"pairs"`
	Senders    int     `json:"senders"`
	Inflight   int     `json:"inflight_per_sender"`
	BodyBytes  int     `json:"body_bytes"`
	TargetRate float64 `json:"target_rate"` // 0: flat out
	Proto      bool    `json:"proto"`

	WindowSeconds   float64 `json:"window_seconds"`
	Sent            int64   `json:"sent"`
	Acked           int64   `json:"acked"`
	Delivered       int64   `json:"delivered"`
	SentPerSec      float64 `json:"sent_per_sec"`
	AckedPerSec     float64 `json:"acked_per_sec"`
	DeliveredPerSec float64 `json:"delivered_per_sec"`
	BehindSchedule  int64   `json:"behind_schedule,omitempty"`

	AckLatency     Summary `json:"send_to_ack"`
	DeliverLatency Summary `json:"send_to_deliver"`

	// Lost counts ACKed messages that the receiver got neither live nor by
	// the final sync: it must be 0.
	Lost int64 `json:"lost"`
	// SyncRecovered counts ACKed messages that were not pushed live in time
	// and came with the final sync.
	SyncRecovered int64 `json:"sync_recovered"`
	// Duplicates counts live deliveries of a seq already delivered.
	Duplicates int64 `json:"duplicates"`
	// Echoes counts pushes of a message to its own sender's connection.
	Echoes             int64          `json:"echoes_to_sender"`
	Errors             map[string]int `json:"errors,omitempty"`
	DroppedConnections int            `json:"dropped_connections"`

	Server serverUsage `json:"server"`

	AckHist     HistSnapshot `json:"send_to_ack_histogram"`
	DeliverHist HistSnapshot `json:"send_to_deliver_histogram"`
	ackHist     *Histogram
	deliverHist *Histogram
}

func (r *DirectResult) text() string {
	var b strings.Builder
	mode := "flat out"
	if r.TargetRate > 0 {
		mode = fmt.Sprintf("target %.0f/s", r.TargetRate)
	}
	fmt.Fprintf(&b, "direct: %d pairs, %d senders × %d in flight, %d-byte bodies, %s, %.1fs\n", r.Pairs, r.Senders, r.Inflight, r.BodyBytes, mode, r.WindowSeconds)
	fmt.Fprintf(&b, "  sent %d (%.0f/s), ACKed %d (%.0f/s), delivered %d (%.0f/s)\n", r.Sent, r.SentPerSec, r.Acked, r.AckedPerSec, r.Delivered, r.DeliveredPerSec)
	fmt.Fprintf(&b, "  send→ACK     p50 %.2f  p90 %.2f  p99 %.2f  p99.9 %.2f  max %.2f ms\n", r.AckLatency.P50Ms, r.AckLatency.P90Ms, r.AckLatency.P99Ms, r.AckLatency.P999Ms, r.AckLatency.MaxMs)
	fmt.Fprintf(&b, "  send→deliver p50 %.2f  p90 %.2f  p99 %.2f  p99.9 %.2f  max %.2f ms\n", r.DeliverLatency.P50Ms, r.DeliverLatency.P90Ms, r.DeliverLatency.P99Ms, r.DeliverLatency.P999Ms, r.DeliverLatency.MaxMs)
	fmt.Fprintf(&b, "  lost %d, recovered by the final sync %d, duplicates %d, dropped connections %d\n", r.Lost, r.SyncRecovered, r.Duplicates, r.DroppedConnections)
	if len(r.Errors) > 0 {
		fmt.Fprintf(&b, "  errors: %v\n", r.Errors)
	}
	if r.BehindSchedule > 0 {
		fmt.Fprintf(&b, "  %d sends could not start on schedule (all senders busy)\n", r.BehindSchedule)
	}
	b.WriteString(r.Server.cpuLine("CPU cores"))
	return b.String()
}

// directPeer is one user of a pair with its connection.
type directPeer struct {
	user  string
	token string
	c     *client.Client
	other *directPeer

	convMu sync.Mutex
	conv   string

	ackMu sync.Mutex
	acked []uint64 // seqs of this user's ACKed sends

	recvMu sync.Mutex
	recv   map[uint64]bool // seqs from the other user, delivered live

	next     atomic.Uint64
	consumed chan struct{}
}

// missing returns the seqs the other user got ACKed and this one has not
// received.
func (p *directPeer) missing() []uint64 {
	o := p.other
	o.ackMu.Lock()
	acked := slices.Clone(o.acked)
	o.ackMu.Unlock()
	p.recvMu.Lock()
	defer p.recvMu.Unlock()
	var out []uint64
	for _, s := range acked {
		if !p.recv[s] {
			out = append(out, s)
		}
	}
	return out
}

func (p *directPeer) convID() string {
	p.convMu.Lock()
	defer p.convMu.Unlock()
	return p.conv
}

// bodyTime reads the send time a body starts with.
func bodyTime(body string) (time.Time, bool) {
	s, _, _ := strings.Cut(body, " ")
	ns, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return time.Time{}, false
	}
	return time.Unix(0, ns), true
}

func makeBody(t time.Time, size int) string {
	b := strconv.AppendInt(make([]byte, 0, size), t.UnixNano(), 10)
	b = append(b, ' ')
	for len(b) < size {
		b = append(b, 'x')
	}
	return string(b)
}

// runDirect runs the direct scenario: connect the pairs, send for the
// duration, wait for the deliveries, sync what is missing, count losses.
func runDirect(ctx context.Context, e *env, cfg directConfig) (*DirectResult, error) {
	if cfg.pairs <= 0 || cfg.inflight <= 0 || cfg.duration <= 0 {
		return nil, errors.New("-pairs, -inflight and -duration must be positive")
	}
	cfg.body = max(cfg.body, 24)
	peers := make([]*directPeer, 2*cfg.pairs)
	users := make([]string, len(peers))
	for i := range cfg.pairs {
		a := &directPeer{user: userName(e.prefix, "a", i), recv: map[uint64]bool{}, consumed: make(chan struct{})}
		b := &directPeer{user: userName(e.prefix, "b", i), recv: map[uint64]bool{}, consumed: make(chan struct{})}
		a.other, b.other = b, a
		peers[2*i], peers[2*i+1] = a, b
		users[2*i], users[2*i+1] = a.user, b.user
	}
	b := e.ui.count("tokens", len(users), nil)
	tokens, err := fetchTokens(ctx, e.base, users, 16, func() { b.Add(1) })
	b.Done()
	if err != nil {
		return nil, err
	}
	b = e.ui.count("connecting", len(users), nil)
	cs, failed, firstErr := dialAll(ctx, e, e.base, tokens, 0, client.Options{Device: "loadgen", Proto: e.proto, Buffer: 4096}, nil, b)
	b.Done()
	defer closeAll(cs, 64)
	if failed > 0 {
		return nil, fmt.Errorf("%d of %d connections failed: %w", failed, len(cs), firstErr)
	}

	res := &DirectResult{
		Scenario: "direct", Target: e.base, Pairs: cfg.pairs, Inflight: cfg.inflight, BodyBytes: cfg.body,
		TargetRate: cfg.rate, Proto: e.proto, ackHist: &Histogram{}, deliverHist: &Histogram{},
	}
	var sent, acked, delivered, echoes, dups, behind atomic.Int64
	var lastAck, lastDeliver atomic.Int64
	var errs errCounts
	for i, p := range peers {
		p.token, p.c = tokens[i], cs[i]
		go func() {
			defer close(p.consumed)
			for m := range p.c.Messages {
				now := time.Now()
				if m.From == p.user {
					echoes.Add(1)
					continue
				}
				p.recvMu.Lock()
				dup := p.recv[m.Seq]
				p.recv[m.Seq] = true
				p.recvMu.Unlock()
				if dup {
					dups.Add(1)
					continue
				}
				if t, ok := bodyTime(m.Body); ok {
					res.deliverHist.Record(now.Sub(t))
				}
				delivered.Add(1)
				lastDeliver.Store(now.UnixNano())
			}
		}()
	}
	var senders []*directPeer
	for i, p := range peers {
		if !cfg.oneWay || i%2 == 0 {
			senders = append(senders, p)
		}
	}
	res.Senders = len(senders)

	before := e.probe.sample(ctx)
	lgBefore := selfCPU()
	start := time.Now()
	stop := make(chan struct{})
	wait := runSenders(len(senders), cfg.inflight, cfg.rate, start, stop, &behind, func(i int) bool {
		p := senders[i]
		cmid := p.user + "-" + strconv.FormatUint(p.next.Add(1), 10)
		t0 := time.Now()
		sent.Add(1)
		sctx, cancel := context.WithTimeout(ctx, 15*time.Second)
		m, err := p.c.Send(sctx, p.other.user, "", cmid, makeBody(t0, cfg.body))
		cancel()
		if err != nil {
			errs.add(err)
			return !errors.Is(err, client.ErrClosed)
		}
		now := time.Now()
		res.ackHist.Record(now.Sub(t0))
		acked.Add(1)
		lastAck.Store(now.UnixNano())
		p.ackMu.Lock()
		p.acked = append(p.acked, m.Seq)
		p.ackMu.Unlock()
		for _, q := range []*directPeer{p, p.other} {
			q.convMu.Lock()
			q.conv = m.Conv
			q.convMu.Unlock()
		}
		return true
	})
	b = e.ui.timed("sending", cfg.duration, func() string {
		el := time.Since(start).Seconds()
		return fmt.Sprintf("ACKed %.0f/s delivered %.0f/s", float64(acked.Load())/el, float64(delivered.Load())/el)
	})
	sleepCtx(ctx, cfg.duration)
	close(stop)
	window := time.Since(start)
	b.Done()
	wait()
	after := e.probe.sample(ctx)
	lgAfter := selfCPU()
	res.WindowSeconds = round2(window.Seconds())

	// Wait for the last deliveries, then sync what is still missing.
	totalMissing := func() int {
		n := 0
		for _, p := range peers {
			n += len(p.missing())
		}
		return n
	}
	drainEnd := time.Now().Add(cfg.drain)
	b = e.ui.timed("draining", cfg.drain, func() string { return fmt.Sprintf("missing %d", totalMissing()) })
	for totalMissing() > 0 && time.Now().Before(drainEnd) && ctx.Err() == nil {
		sleepCtx(ctx, 50*time.Millisecond)
	}
	b.Done()
	for _, p := range peers {
		select {
		case <-p.c.Done():
			res.DroppedConnections++
		default:
		}
	}
	for _, p := range peers {
		miss := p.missing()
		if len(miss) == 0 {
			continue
		}
		found, err := finalSync(ctx, e, p, miss)
		if err != nil {
			return nil, fmt.Errorf("final sync of %s: %w", p.user, err)
		}
		res.SyncRecovered += int64(found)
		res.Lost += int64(len(miss) - found)
	}

	res.Sent, res.Acked, res.Delivered = sent.Load(), acked.Load(), delivered.Load()
	res.Echoes, res.Duplicates, res.BehindSchedule = echoes.Load(), dups.Load(), behind.Load()
	res.Errors = errs.snapshot()
	res.SentPerSec = round2(float64(res.Sent) / window.Seconds())
	if t := lastAck.Load(); t > 0 {
		res.AckedPerSec = round2(float64(res.Acked) / time.Unix(0, t).Sub(start).Seconds())
	}
	if t := lastDeliver.Load(); t > 0 {
		res.DeliveredPerSec = round2(float64(res.Delivered) / time.Unix(0, t).Sub(start).Seconds())
	}
	res.AckLatency, res.DeliverLatency = res.ackHist.Summary(), res.deliverHist.Summary()
	res.AckHist, res.DeliverHist = res.ackHist.Snapshot(), res.deliverHist.Snapshot()
	res.Server = usageBetween(before, after, lgBefore, lgAfter, time.Since(start))
	return res, nil
}

// finalSync reads the conversation from just before the first missing seq,
// on the user's connection or, if that one ended, on a new one, and reports
// how many of the missing seqs it found.
func finalSync(ctx context.Context, e *env, p *directPeer, miss []uint64) (int, error) {
	conv := p.convID()
	if conv == "" {
		return 0, errors.New("no conversation id: no send was ACKed")
	}
	return syncMissing(ctx, e, p.c, p.token, conv, miss, func(m *pb.Message) bool { return m.From == p.other.user })
}

// syncMissing reads conv from just before the first of the missing seqs,
// on c or, if c ended, on a new connection made with token, and reports
// how many of them it found among the messages counts accepts.
func syncMissing(ctx context.Context, e *env, c *client.Client, token, conv string, miss []uint64, counts func(*pb.Message) bool) (int, error) {
	select {
	case <-c.Done():
		var err error
		dctx, cancel := context.WithTimeout(ctx, 15*time.Second)
		c, err = client.Dial(dctx, e.base, token, client.Options{Device: "loadgen-sync", Proto: e.proto, Buffer: 16, NetDialContext: e.pool.dialFunc(0)})
		cancel()
		if err != nil {
			return 0, err
		}
		defer c.Close()
		go func() {
			for range c.Messages {
			}
		}()
	default:
	}
	slices.Sort(miss)
	sctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	msgs, err := c.Sync(sctx, conv, miss[0]-1)
	if err != nil {
		return 0, err
	}
	have := make(map[uint64]bool, len(msgs))
	for _, m := range msgs {
		if counts(m) {
			have[m.Seq] = true
		}
	}
	found := 0
	for _, s := range miss {
		if have[s] {
			found++
		}
	}
	return found, nil
}

// runSenders starts inflight workers per sender, each calling send(sender)
// in a loop until stop closes or send returns false, and returns a function
// that waits for them all. With rate > 0, one pacer hands out the sends
// that are due every millisecond, over all senders; a send that finds
// every worker busy is counted in behind, not queued, so that the load
// stays open-loop. With rate 0 every worker sends again as soon as its
// last send returned (a closed loop with a window of inflight per sender).
// parley and the reference server are driven by this same function.
func runSenders(senders, inflight int, rate float64, start time.Time, stop <-chan struct{}, behind *atomic.Int64, send func(sender int) bool) (wait func()) {
	var tickets chan struct{}
	var pacer sync.WaitGroup
	if rate > 0 {
		tickets = make(chan struct{}, senders*inflight)
		pacer.Add(1)
		go func() {
			defer pacer.Done()
			t := time.NewTicker(time.Millisecond)
			defer t.Stop()
			var issued int64
			for {
				select {
				case <-stop:
					return
				case now := <-t.C:
					due := int64(now.Sub(start).Seconds()*rate) - issued
					for ; due > 0; due-- {
						issued++
						select {
						case tickets <- struct{}{}:
						default:
							behind.Add(1)
						}
					}
				}
			}
		}()
	}
	var wg sync.WaitGroup
	for i := range senders {
		for range inflight {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					if tickets != nil {
						select {
						case <-stop:
							return
						case <-tickets:
						}
					} else {
						select {
						case <-stop:
							return
						default:
						}
					}
					if !send(i) {
						return
					}
				}
			}()
		}
	}
	return func() {
		wg.Wait()
		pacer.Wait()
	}
}
