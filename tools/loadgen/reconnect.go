package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/parley-im/parley/client"
)

type reconnectConfig struct {
	clients  int
	missed   int
	senders  int
	inflight int
	settle   time.Duration
}

func (c *reconnectConfig) register(fs *flag.FlagSet) {
	fs.IntVar(&c.clients, "clients", 1000, "clients that drop and reconnect")
	fs.IntVar(&c.missed, "missed", 20, "messages each client misses while away")
	fs.IntVar(&c.senders, "senders", 16, "users that send the missed messages")
	fs.IntVar(&c.inflight, "inflight", 8, "sends in flight per sender")
	fs.DurationVar(&c.settle, "settle", time.Second, "wait after the drop, so that the server has seen every connection end")
}

// ReconnectResult is the reconnect scenario's report.
type ReconnectResult struct {
	Scenario string `json:"scenario"`
	Target   string `json:"target"`
	Clients  int    `json:"clients"`
	Missed   int    `json:"missed_per_client"`
	Senders  int    `json:"senders"`

	FillSeconds float64 `json:"fill_seconds"`
	FillPerSec  float64 `json:"fill_sends_per_sec"`

	// AllConnectedSeconds and AllSyncedSeconds count from the moment every
	// client starts to reconnect.
	AllConnectedSeconds float64        `json:"all_connected_seconds"`
	AllSyncedSeconds    float64        `json:"all_synced_seconds"`
	SyncedMsgsPerSec    float64        `json:"synced_messages_per_sec"`
	Reconnect           Summary        `json:"reconnect_latency"`
	Synced              Summary        `json:"reconnect_to_synced_latency"`
	Failed              int            `json:"failed_clients"`
	Errors              map[string]int `json:"errors,omitempty"`
	// Lost counts ACKed messages a client did not hold after its sync: it
	// must be 0.
	Lost   int64       `json:"lost"`
	Server serverUsage `json:"server"`

	SyncedHist HistSnapshot `json:"reconnect_to_synced_histogram"`
	syncedHist *Histogram
}

func (r *ReconnectResult) text() string {
	var b strings.Builder
	fmt.Fprintf(&b, "reconnect: %d clients, %d missed messages each (filled by %d senders at %.0f/s)\n", r.Clients, r.Missed, r.Senders, r.FillPerSec)
	fmt.Fprintf(&b, "  all reconnected in %.2fs, all synced in %.2fs (%.0f messages/s synced)\n", r.AllConnectedSeconds, r.AllSyncedSeconds, r.SyncedMsgsPerSec)
	fmt.Fprintf(&b, "  per client reconnect→synced p50 %.1f  p90 %.1f  p99 %.1f  max %.1f ms\n", r.Synced.P50Ms, r.Synced.P90Ms, r.Synced.P99Ms, r.Synced.MaxMs)
	fmt.Fprintf(&b, "  lost %d, failed clients %d\n", r.Lost, r.Failed)
	if len(r.Errors) > 0 {
		fmt.Fprintf(&b, "  errors: %v\n", r.Errors)
	}
	b.WriteString(r.Server.cpuLine("CPU cores while reconnecting"))
	return b.String()
}

// reconnectClient is one receiver: what it holds survives its connections.
type reconnectClient struct {
	user   string
	token  string
	sender int
	c      *client.Client
	inbox  *client.Inbox

	mu     sync.Mutex
	conv   string
	acked  []uint64
	synced bool
}

func (r *reconnectClient) consume(c *client.Client) {
	go func() {
		for m := range c.Messages {
			r.inbox.Add(m)
		}
	}()
}

// lacking reports how many ACKed seqs the inbox lacks.
func (r *reconnectClient) lacking() int {
	r.mu.Lock()
	acked := append([]uint64(nil), r.acked...)
	conv := r.conv
	r.mu.Unlock()
	have := map[uint64]bool{}
	for _, m := range r.inbox.Messages(conv) {
		have[m.Seq] = true
	}
	n := 0
	for _, s := range acked {
		if !have[s] {
			n++
		}
	}
	return n
}

// drainSender reads what a sender's connection receives (its own
// messages, pushed back to it) so that its reader never blocks.
func drainSender(c *client.Client) {
	go func() {
		for range c.Messages {
		}
	}()
}

// sendMessages sends count messages to each receiver from its sender,
// inflight at a time per sender, and records each ACKed seq. n numbers the
// sends for their client message ids; the calls of one run share it, so
// that no id is used twice (a reused one is refused as cmid_reused).
func sendMessages(ctx context.Context, senders []*client.Client, senderUsers []string, rcv []*reconnectClient, count, inflight int, n *atomic.Uint64, errs *errCounts, b *bar) {
	jobs := make([]chan *reconnectClient, len(senders))
	for i := range jobs {
		jobs[i] = make(chan *reconnectClient, 1024)
	}
	var wg sync.WaitGroup
	for s, c := range senders {
		for range inflight {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for r := range jobs[s] {
					cmid := senderUsers[s] + "-" + strconv.FormatUint(n.Add(1), 10)
					sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
					m, err := c.Send(sctx, r.user, "", cmid, makeBody(time.Now(), 64))
					cancel()
					if b != nil {
						b.Add(1)
					}
					if err != nil {
						errs.add(err)
						continue
					}
					r.mu.Lock()
					r.acked = append(r.acked, m.Seq)
					r.conv = m.Conv
					r.mu.Unlock()
				}
			}()
		}
	}
	for k := 0; k < count; k++ {
		for _, r := range rcv {
			select {
			case jobs[r.sender] <- r:
			case <-ctx.Done():
			}
		}
	}
	for _, j := range jobs {
		close(j)
	}
	wg.Wait()
}

// runReconnect runs the reconnect scenario.
func runReconnect(ctx context.Context, e *env, cfg reconnectConfig) (*ReconnectResult, error) {
	if cfg.clients <= 0 || cfg.missed <= 0 || cfg.senders <= 0 || cfg.inflight <= 0 {
		return nil, errors.New("-clients, -missed, -senders and -inflight must be positive")
	}
	cfg.senders = min(cfg.senders, cfg.clients)
	rcv := make([]*reconnectClient, cfg.clients)
	users := make([]string, 0, cfg.clients+cfg.senders)
	senderUsers := make([]string, cfg.senders)
	for i := range senderUsers {
		senderUsers[i] = userName(e.prefix, "s", i)
		users = append(users, senderUsers[i])
	}
	for i := range rcv {
		rcv[i] = &reconnectClient{user: userName(e.prefix, "r", i), sender: i % cfg.senders, inbox: client.NewInbox()}
		users = append(users, rcv[i].user)
	}
	b := e.ui.count("tokens", len(users), nil)
	tokens, err := fetchTokens(ctx, e.base, users, 16, func() { b.Add(1) })
	b.Done()
	if err != nil {
		return nil, err
	}
	b = e.ui.count("connecting", len(users), nil)
	senders, failed, firstErr := dialAll(ctx, e, e.base, tokens[:cfg.senders], 0, client.Options{Device: "loadgen", Proto: e.proto}, nil, b)
	if failed == 0 {
		var cs []*client.Client
		cs, failed, firstErr = dialAll(ctx, e, e.base, tokens[cfg.senders:], cfg.senders, client.Options{Device: "loadgen", Proto: e.proto, Buffer: cfg.missed + 16}, nil, b)
		for i, c := range cs {
			rcv[i].c, rcv[i].token = c, tokens[cfg.senders+i]
			if c != nil {
				rcv[i].consume(c)
			}
		}
	}
	b.Done()
	defer closeAll(senders, 16)
	defer func() {
		var cs []*client.Client
		for _, r := range rcv {
			cs = append(cs, r.c)
		}
		closeAll(cs, 64)
	}()
	if failed > 0 {
		return nil, fmt.Errorf("%d connections failed: %w", failed, firstErr)
	}
	for _, c := range senders {
		drainSender(c)
	}
	var errs errCounts

	// One live message each, so that every client knows its conversation
	// and where it stands before it drops.
	b = e.ui.count("first message", cfg.clients, nil)
	var sent atomic.Uint64
	sendMessages(ctx, senders, senderUsers, rcv, 1, cfg.inflight, &sent, &errs, b)
	b.Done()
	deadline := time.Now().Add(30 * time.Second)
	for _, r := range rcv {
		for r.lacking() > 0 && time.Now().Before(deadline) && ctx.Err() == nil {
			sleepCtx(ctx, 20*time.Millisecond)
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}

	// Drop every client at once, as a network failure would.
	var wg sync.WaitGroup
	for _, r := range rcv {
		wg.Add(1)
		go func() { defer wg.Done(); r.c.Drop() }()
	}
	wg.Wait()
	sleepCtx(ctx, cfg.settle)

	res := &ReconnectResult{Scenario: "reconnect", Target: e.base, Clients: cfg.clients, Missed: cfg.missed, Senders: cfg.senders, syncedHist: &Histogram{}}
	fillStart := time.Now()
	b = e.ui.count("missed messages", cfg.clients*cfg.missed, nil)
	sendMessages(ctx, senders, senderUsers, rcv, cfg.missed, cfg.inflight, &sent, &errs, b)
	b.Done()
	res.FillSeconds = round2(time.Since(fillStart).Seconds())
	res.FillPerSec = round2(float64(cfg.clients*cfg.missed) / time.Since(fillStart).Seconds())
	if err := ctx.Err(); err != nil {
		return nil, err
	}

	// Everyone reconnects at once and syncs from the last seq it holds.
	before := e.probe.sample(ctx)
	lgBefore := selfCPU()
	reconnectHist := &Histogram{}
	var connectedAt, syncedAt atomic.Int64
	var failedN atomic.Int64
	sem := make(chan struct{}, e.concurrency)
	start := time.Now()
	b = e.ui.count("reconnecting", cfg.clients, nil)
	for i, r := range rcv {
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer b.Add(1)
			sem <- struct{}{}
			dctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			c, err := client.Dial(dctx, e.base, r.token, client.Options{Device: "loadgen", Proto: e.proto, Buffer: cfg.missed + 16, NetDialContext: e.pool.dialFunc(cfg.senders + i)})
			cancel()
			<-sem
			if err != nil {
				errs.add(err)
				failedN.Add(1)
				return
			}
			r.c = c
			r.consume(c)
			d := time.Since(start)
			reconnectHist.Record(d)
			atomicMax(&connectedAt, int64(d))
			r.mu.Lock()
			conv := r.conv
			r.mu.Unlock()
			sctx, cancel := context.WithTimeout(ctx, 60*time.Second)
			msgs, err := c.Sync(sctx, conv, r.inbox.Contiguous(conv))
			cancel()
			if err != nil {
				errs.add(err)
				failedN.Add(1)
				return
			}
			for _, m := range msgs {
				r.inbox.Add(m)
			}
			r.mu.Lock()
			r.synced = true
			r.mu.Unlock()
			d = time.Since(start)
			res.syncedHist.Record(d)
			atomicMax(&syncedAt, int64(d))
		}()
	}
	wg.Wait()
	b.Done()
	after := e.probe.sample(ctx)
	res.Server = usageBetween(before, after, lgBefore, selfCPU(), time.Since(start))
	res.AllConnectedSeconds = round2(time.Duration(connectedAt.Load()).Seconds())
	res.AllSyncedSeconds = round2(time.Duration(syncedAt.Load()).Seconds())
	if s := res.AllSyncedSeconds; s > 0 {
		res.SyncedMsgsPerSec = round2(float64(cfg.clients*cfg.missed) / s)
	}
	res.Failed = int(failedN.Load())
	for _, r := range rcv {
		if r.synced { // a client that failed to reconnect is counted in Failed
			res.Lost += int64(r.lacking())
		}
	}
	res.Errors = errs.snapshot()
	res.Reconnect, res.Synced = reconnectHist.Summary(), res.syncedHist.Summary()
	res.SyncedHist = res.syncedHist.Snapshot()
	return res, nil
}

func atomicMax(a *atomic.Int64, v int64) {
	for {
		old := a.Load()
		if v <= old || a.CompareAndSwap(old, v) {
			return
		}
	}
}
