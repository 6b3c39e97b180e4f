package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/parley-im/parley/client"
	pb "github.com/parley-im/parley/proto/parley/v1"
)

// groupMaxMembers bounds the group scenario: every member is a connection
// of this process, which may open 20,000 files, and the server caps a group
// at 10,000 members unless parley.group_member_cap says otherwise.
const groupMaxMembers = 18_000

// groupBatch is the most users one group_create or invite may name.
const groupBatch = 500

type groupConfig struct {
	members  int
	senders  int
	duration time.Duration
	drain    time.Duration
	rate     float64
	inflight int
	body     int
}

func (c *groupConfig) register(fs *flag.FlagSet) {
	fs.IntVar(&c.members, "members", 2000, "members of the one group, all online (at most 18,000: one process holds them all)")
	fs.IntVar(&c.senders, "senders", 10, "members that send; the others only receive")
	fs.DurationVar(&c.duration, "duration", 10*time.Second, "how long to send")
	fs.DurationVar(&c.drain, "drain", 10*time.Second, "longest wait after sending for the last deliveries, before the final sync")
	fs.Float64Var(&c.rate, "rate", 0, "target messages per second over all senders; 0 means as fast as the server ACKs")
	fs.IntVar(&c.inflight, "inflight", 2, "sends in flight per sender")
	fs.IntVar(&c.body, "body", 64, "message body size in bytes (at least 24: the body carries the send time)")
}

func (c groupConfig) check() error {
	switch {
	case c.members < 2:
		return errors.New("-members must be at least 2")
	case c.members > groupMaxMembers:
		return fmt.Errorf("-members %d: at most %d, the connections one process holds here", c.members, groupMaxMembers)
	case c.senders <= 0 || c.senders > c.members:
		return fmt.Errorf("-senders %d: want 1 to -members", c.senders)
	case c.inflight <= 0 || c.duration <= 0:
		return errors.New("-inflight and -duration must be positive")
	}
	return nil
}

// GroupResult is the group scenario's report. A delivery is one message
// pushed to one member's device: every message a sender gets ACKed is owed
// to every member but the sender, whose sending connection is not pushed
// its own message (and each member here has that one device).
type GroupResult struct {
	Scenario   string  `json:"scenario"`
	Target     string  `json:"target"`
	Conv       string  `json:"conv"`
	Members    int     `json:"members"`
	Senders    int     `json:"senders"`
	Inflight   int     `json:"inflight_per_sender"`
	BodyBytes  int     `json:"body_bytes"`
	TargetRate float64 `json:"target_rate"` // 0: flat out
	Proto      bool    `json:"proto"`

	SetupSeconds   float64 `json:"setup_seconds"` // group_create and the invites
	ConnectSeconds float64 `json:"connect_seconds"`

	WindowSeconds    float64 `json:"window_seconds"`
	Sent             int64   `json:"sent"`
	Acked            int64   `json:"acked"`
	SentPerSec       float64 `json:"sent_per_sec"`
	AckedPerSec      float64 `json:"acked_per_sec"`
	Expected         int64   `json:"deliveries_owed"`
	Delivered        int64   `json:"delivered"`
	DeliveriesPerSec float64 `json:"deliveries_per_sec"`
	BehindSchedule   int64   `json:"behind_schedule,omitempty"`

	AckLatency     Summary `json:"send_to_ack"`
	DeliverLatency Summary `json:"send_to_deliver"`

	// Lost counts deliveries owed that the member got neither live nor by
	// the final sync: it must be 0.
	Lost int64 `json:"lost"`
	// SyncRecovered counts deliveries owed that were not pushed live in
	// time and came with the final sync.
	SyncRecovered int64 `json:"sync_recovered"`
	// Duplicates counts live pushes of a seq the member already had.
	Duplicates int64 `json:"duplicates"`
	// Echoes counts pushes of a message to the connection that sent it.
	Echoes             int64          `json:"echoes_to_sender"`
	Errors             map[string]int `json:"errors,omitempty"`
	DroppedConnections int            `json:"dropped_connections"`
	// DropCodes counts the dropped connections by the close code the
	// server gave (4008: too slow a reader), "senders" among them.
	DropCodes      map[string]int `json:"drop_codes,omitempty"`
	DroppedSenders int            `json:"dropped_senders,omitempty"`

	Server serverUsage `json:"server"`
	// The CPU each process spent per delivery, in microseconds, over the
	// sending window: the load generator's includes sending, reading every
	// push and acknowledging it.
	ServerCPUPerDeliveryUs  float64 `json:"server_cpu_us_per_delivery"`
	SidecarCPUPerDeliveryUs float64 `json:"sidecar_cpu_us_per_delivery"`
	LoadgenCPUPerDeliveryUs float64 `json:"loadgen_cpu_us_per_delivery"`

	AckHist     HistSnapshot `json:"send_to_ack_histogram"`
	DeliverHist HistSnapshot `json:"send_to_deliver_histogram"`
	ackHist     *Histogram
	deliverHist *Histogram
}

func (r *GroupResult) text() string {
	var b strings.Builder
	mode := "flat out"
	if r.TargetRate > 0 {
		mode = fmt.Sprintf("target %.0f msg/s", r.TargetRate)
	}
	fmt.Fprintf(&b, "group: %d members all online, %d senders × %d in flight, %d-byte bodies, %s, %.1fs (set up in %.2fs, connected in %.2fs)\n",
		r.Members, r.Senders, r.Inflight, r.BodyBytes, mode, r.WindowSeconds, r.SetupSeconds, r.ConnectSeconds)
	fmt.Fprintf(&b, "  sent %d (%.0f/s), ACKed %d (%.0f/s); delivered %d of %d owed, %.0f deliveries/s\n",
		r.Sent, r.SentPerSec, r.Acked, r.AckedPerSec, r.Delivered, r.Expected, r.DeliveriesPerSec)
	fmt.Fprintf(&b, "  send→ACK     p50 %.2f  p90 %.2f  p99 %.2f  p99.9 %.2f  max %.2f ms\n", r.AckLatency.P50Ms, r.AckLatency.P90Ms, r.AckLatency.P99Ms, r.AckLatency.P999Ms, r.AckLatency.MaxMs)
	fmt.Fprintf(&b, "  send→deliver p50 %.2f  p90 %.2f  p99 %.2f  p99.9 %.2f  max %.2f ms\n", r.DeliverLatency.P50Ms, r.DeliverLatency.P90Ms, r.DeliverLatency.P99Ms, r.DeliverLatency.P999Ms, r.DeliverLatency.MaxMs)
	fmt.Fprintf(&b, "  lost %d, recovered by the final sync %d, duplicates %d, echoes %d, dropped connections %d\n", r.Lost, r.SyncRecovered, r.Duplicates, r.Echoes, r.DroppedConnections)
	if r.DroppedConnections > 0 {
		fmt.Fprintf(&b, "  dropped by close code: %v (%d of them senders)\n", r.DropCodes, r.DroppedSenders)
	}
	if len(r.Errors) > 0 {
		fmt.Fprintf(&b, "  errors: %v\n", r.Errors)
	}
	if r.BehindSchedule > 0 {
		fmt.Fprintf(&b, "  %d sends could not start on schedule (all senders busy)\n", r.BehindSchedule)
	}
	b.WriteString(r.Server.cpuLine("CPU cores"))
	fmt.Fprintf(&b, "  CPU per delivery: server %.2f µs, sidecar %.2f µs, load generator %.2f µs\n", r.ServerCPUPerDeliveryUs, r.SidecarCPUPerDeliveryUs, r.LoadgenCPUPerDeliveryUs)
	return b.String()
}

// groupMember is one member with its connection. got is a bitset of the
// seqs pushed to it live: a group of thousands times a few thousand
// messages stays a few hundred KB.
type groupMember struct {
	user     string
	token    string
	c        *client.Client
	consumed chan struct{}

	mu  sync.Mutex
	got []uint64
}

// mark records seq as delivered and reports whether it already was.
func (m *groupMember) mark(seq uint64) (dup bool) {
	w, bit := seq/64, uint64(1)<<(seq%64)
	m.mu.Lock()
	defer m.mu.Unlock()
	if int(w) >= len(m.got) {
		m.got = slices.Grow(m.got, int(w)+1-len(m.got))[:w+1]
	}
	dup = m.got[w]&bit != 0
	m.got[w] |= bit
	return dup
}

// missing returns the seqs of acked, sent by others, that m has not had.
func (m *groupMember) missing(acked []groupSend, self int) []uint64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []uint64
	for _, s := range acked {
		if s.sender == self {
			continue
		}
		w := s.seq / 64
		if int(w) >= len(m.got) || m.got[w]&(uint64(1)<<(s.seq%64)) == 0 {
			out = append(out, s.seq)
		}
	}
	return out
}

// groupSend is one ACKed message: its seq and the index of the member that
// sent it.
type groupSend struct {
	seq    uint64
	sender int
}

// setupGroup creates the group as member 0 on a connection of its own and
// invites the rest in batches, before any member is online, so that the
// member.joined events are not pushed to thousands of devices. It returns
// the group's conversation id.
func setupGroup(ctx context.Context, e *env, owner string, token string, others []string) (string, error) {
	dctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	c, err := client.Dial(dctx, e.base, token, client.Options{Device: "loadgen-setup", Proto: e.proto, Buffer: 64, NetDialContext: e.pool.dialFunc(0)})
	cancel()
	if err != nil {
		return "", fmt.Errorf("dial as %s: %w", owner, err)
	}
	defer c.Close()
	go func() {
		for range c.Messages {
		}
	}()
	first := others[:min(groupBatch, len(others))]
	rctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	g, err := c.CreateGroup(rctx, client.NewGroup{Name: "loadgen " + e.prefix, Users: first, Cmid: owner + "-group"})
	if err != nil {
		return "", fmt.Errorf("group_create: %w", err)
	}
	for i := len(first); i < len(others); i += groupBatch {
		batch := others[i:min(i+groupBatch, len(others))]
		if _, err := c.ChangeGroup(rctx, g.Conv, client.GroupChange{Op: client.OpInvite, Users: batch, Cmid: owner + "-invite-" + strconv.Itoa(i)}); err != nil {
			return "", fmt.Errorf("invite members %d-%d: %w", i+1, i+len(batch), err)
		}
	}
	return g.Conv, nil
}

// runGroup runs the group scenario: create one group of every member,
// connect them all, let the senders send to it for the duration, wait for
// the deliveries, sync what is missing, count losses.
func runGroup(ctx context.Context, e *env, cfg groupConfig) (*GroupResult, error) {
	if err := cfg.check(); err != nil {
		return nil, err
	}
	cfg.body = max(cfg.body, 24)
	n := cfg.members
	members := make([]*groupMember, n)
	users := make([]string, n)
	for i := range members {
		members[i] = &groupMember{user: userName(e.prefix, "m", i), consumed: make(chan struct{})}
		users[i] = members[i].user
	}
	b := e.ui.count("tokens", n, nil)
	tokens, err := fetchTokens(ctx, e.base, users, 16, func() { b.Add(1) })
	b.Done()
	if err != nil {
		return nil, err
	}
	res := &GroupResult{
		Scenario: "group", Target: e.base, Members: n, Senders: cfg.senders, Inflight: cfg.inflight, BodyBytes: cfg.body,
		TargetRate: cfg.rate, Proto: e.proto, ackHist: &Histogram{}, deliverHist: &Histogram{},
	}
	t0 := time.Now()
	conv, err := setupGroup(ctx, e, users[0], tokens[0], users[1:])
	if err != nil {
		return nil, err
	}
	res.Conv, res.SetupSeconds = conv, round2(time.Since(t0).Seconds())

	b = e.ui.count("connecting", n, nil)
	t0 = time.Now()
	// A small buffer per member: thousands of 4,096-slot channels would
	// cost tens of MB, and each member's reader drains its own at once.
	cs, failed, firstErr := dialAll(ctx, e, e.base, tokens, 0, client.Options{Device: "loadgen", Proto: e.proto, Buffer: 256}, nil, b)
	b.Done()
	defer closeAll(cs, 64)
	if failed > 0 {
		return nil, fmt.Errorf("%d of %d connections failed: %w", failed, len(cs), firstErr)
	}
	res.ConnectSeconds = round2(time.Since(t0).Seconds())

	var sent, acked, delivered, echoes, dups, behind atomic.Int64
	var lastAck, lastDeliver atomic.Int64
	var errs errCounts
	var ackedMu sync.Mutex
	var ackedSends []groupSend
	for i, m := range members {
		m.token, m.c = tokens[i], cs[i]
		go func() {
			defer close(m.consumed)
			for msg := range m.c.Messages {
				if msg.Conv != conv || client.IsSystem(msg) {
					continue
				}
				now := time.Now()
				if msg.From == m.user {
					echoes.Add(1)
					continue
				}
				if m.mark(msg.Seq) {
					dups.Add(1)
					continue
				}
				if t, ok := bodyTime(msg.Body); ok {
					res.deliverHist.Record(now.Sub(t))
				}
				delivered.Add(1)
				lastDeliver.Store(now.UnixNano())
			}
		}()
	}
	var next atomic.Uint64
	before := e.probe.sample(ctx)
	lgBefore := selfCPU()
	start := time.Now()
	stop := make(chan struct{})
	wait := runSenders(cfg.senders, cfg.inflight, cfg.rate, start, stop, &behind, func(i int) bool {
		p := members[i]
		cmid := p.user + "-" + strconv.FormatUint(next.Add(1), 10)
		t0 := time.Now()
		sent.Add(1)
		sctx, cancel := context.WithTimeout(ctx, 15*time.Second)
		m, err := p.c.Send(sctx, "", conv, cmid, makeBody(t0, cfg.body))
		cancel()
		if err != nil {
			errs.add(err)
			return !errors.Is(err, client.ErrClosed)
		}
		now := time.Now()
		res.ackHist.Record(now.Sub(t0))
		acked.Add(1)
		lastAck.Store(now.UnixNano())
		ackedMu.Lock()
		ackedSends = append(ackedSends, groupSend{seq: m.Seq, sender: i})
		ackedMu.Unlock()
		return true
	})
	b = e.ui.timed("sending", cfg.duration, func() string {
		el := time.Since(start).Seconds()
		return fmt.Sprintf("ACKed %.0f/s deliveries %.0f/s", float64(acked.Load())/el, float64(delivered.Load())/el)
	})
	sleepCtx(ctx, cfg.duration)
	close(stop)
	window := time.Since(start)
	b.Done()
	wait()
	after := e.probe.sample(ctx)
	lgAfter := selfCPU()
	deliveredAtAfter := delivered.Load()
	sampled := time.Since(start)
	res.WindowSeconds = round2(window.Seconds())
	res.Expected = acked.Load() * int64(n-1)

	// Wait for the last deliveries: the cheap count first, then the exact
	// list, since a send that timed out may still have been stored and
	// pushed, and counted, without being owed.
	totalMissing := func() int {
		ackedMu.Lock()
		all := slices.Clone(ackedSends)
		ackedMu.Unlock()
		k := 0
		for i, m := range members {
			k += len(m.missing(all, i))
		}
		return k
	}
	drainEnd := time.Now().Add(cfg.drain)
	b = e.ui.timed("draining", cfg.drain, func() string { return fmt.Sprintf("delivered %d of %d", delivered.Load(), res.Expected) })
	for time.Now().Before(drainEnd) && ctx.Err() == nil {
		if delivered.Load() >= res.Expected && totalMissing() == 0 {
			break
		}
		sleepCtx(ctx, 50*time.Millisecond)
	}
	b.Done()
	for i, m := range members {
		select {
		case <-m.c.Done():
			res.DroppedConnections++
			if i < cfg.senders {
				res.DroppedSenders++
			}
			if res.DropCodes == nil {
				res.DropCodes = map[string]int{}
			}
			res.DropCodes[strconv.Itoa(client.CloseCode(m.c.Err()))]++
		default:
		}
	}
	found, lost, err := groupFinalSync(ctx, e, conv, members, ackedSends)
	if err != nil {
		return nil, err
	}
	res.SyncRecovered, res.Lost = found, lost

	res.Sent, res.Acked, res.Delivered = sent.Load(), acked.Load(), delivered.Load()
	res.Echoes, res.Duplicates, res.BehindSchedule = echoes.Load(), dups.Load(), behind.Load()
	res.Errors = errs.snapshot()
	res.SentPerSec = round2(float64(res.Sent) / window.Seconds())
	if t := lastAck.Load(); t > 0 {
		res.AckedPerSec = round2(float64(res.Acked) / time.Unix(0, t).Sub(start).Seconds())
	}
	if t := lastDeliver.Load(); t > 0 {
		res.DeliveriesPerSec = round2(float64(res.Delivered) / time.Unix(0, t).Sub(start).Seconds())
	}
	res.AckLatency, res.DeliverLatency = res.ackHist.Summary(), res.deliverHist.Summary()
	res.AckHist, res.DeliverHist = res.ackHist.Snapshot(), res.deliverHist.Snapshot()
	res.Server = usageBetween(before, after, lgBefore, lgAfter, sampled)
	if deliveredAtAfter > 0 {
		per := func(d time.Duration) float64 { return round2(float64(d.Microseconds()) / float64(deliveredAtAfter)) }
		res.ServerCPUPerDeliveryUs = per(after.CPU - before.CPU)
		res.SidecarCPUPerDeliveryUs = per(after.SidecarCPU - before.SidecarCPU)
		res.LoadgenCPUPerDeliveryUs = per(lgAfter - lgBefore)
	}
	return res, nil
}

// groupFinalSync has every member that lacks a message it is owed read the
// group from just before the first one (on its connection, or on a new
// one if that ended), 16 members at a time, and counts what the sync found
// and what is still missing.
func groupFinalSync(ctx context.Context, e *env, conv string, members []*groupMember, acked []groupSend) (found, lost int64, err error) {
	type job struct {
		i    int
		miss []uint64
	}
	var jobs []job
	for i, m := range members {
		if miss := m.missing(acked, i); len(miss) > 0 {
			jobs = append(jobs, job{i, miss})
		}
	}
	if len(jobs) == 0 {
		return 0, 0, nil
	}
	b := e.ui.count("final sync", len(jobs), nil)
	defer b.Done()
	var mu sync.Mutex
	var firstErr error
	var nextJob atomic.Int64
	var wg sync.WaitGroup
	for range min(16, len(jobs)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				k := int(nextJob.Add(1) - 1)
				if k >= len(jobs) {
					return
				}
				j := jobs[k]
				f, err := syncMember(ctx, e, conv, members[j.i], j.miss)
				b.Add(1)
				mu.Lock()
				if err != nil && firstErr == nil {
					firstErr = fmt.Errorf("final sync of %s: %w", members[j.i].user, err)
				}
				found += int64(f)
				lost += int64(len(j.miss) - f)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return found, lost, firstErr
}

// syncMember reads conv after the first missing seq's predecessor and
// reports how many of the missing seqs it found.
func syncMember(ctx context.Context, e *env, conv string, m *groupMember, miss []uint64) (int, error) {
	return syncMissing(ctx, e, m.c, m.token, conv, miss, func(msg *pb.Message) bool { return !client.IsSystem(msg) })
}
