package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/http"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/parley-im/parley/client"
	"github.com/parley-im/parley/infrastructure/dapr/daprd/daprdtest"
	pb "github.com/parley-im/parley/proto/parley/v1"
	"github.com/parley-im/parley/tools/testkit"
)

// The group cluster tests: groups whose members' devices are spread over
// the nodes of a cluster, under a node's crash and at size.

const clusterSecret = "group-cluster-secret-group-cluster-secret"

// cluster is a set of parley processes, each with its own daprd, sharing
// one backend under one app-id.
type cluster struct {
	appID string
	procs []*proc
	up    []atomic.Bool
}

// startCluster starts n nodes on profile with the live settings kv (a
// settings file, which every node reads instead of the configuration
// store) and waits until every node routes to all of them.
func startCluster(t *testing.T, profile string, n int, kv map[string]string, extra ...string) *cluster {
	t.Helper()
	m := mode{name: "dapr-" + profile, args: []string{"-backend", "dapr", "-sidecar", "launch", "-profile", profile}}
	requireMode(t, m)
	c := &cluster{appID: daprdtest.UniqueName("parley-groups"), up: make([]atomic.Bool, n)}
	settings := settingsFile(t, kv)
	for i := range n {
		args := append([]string{"-app-id", c.appID, "-node-id", fmt.Sprintf("%s-n%d", c.appID, i+1),
			"-jwt-secret", clusterSecret, "-settings", settings}, extra...)
		c.procs = append(c.procs, startProc(t, m, args...))
		c.up[i].Store(true)
	}
	var route struct {
		Nodes []struct{ Node string } `json:"nodes"`
	}
	for _, p := range c.procs {
		testkit.Eventually(t, 30*time.Second, func() bool {
			route.Nodes = nil
			err := client.DoJSON(ctxT(t, 5*time.Second), http.MethodGet, p.base+"/v1/route", "", nil, &route)
			return err == nil && len(route.Nodes) >= n
		}, "%s routes to %d nodes after 30s, want %d", p.base, len(route.Nodes), n)
	}
	return c
}

// base is the address of node i, or of the next node up while i is down:
// where a client that was on i reconnects.
func (c *cluster) base(i int) string {
	for k := range len(c.procs) {
		j := (i + k) % len(c.procs)
		if c.up[j].Load() {
			return c.procs[j].base
		}
	}
	return c.procs[i].base
}

// kill ends node i with SIGKILL; clients move off it at once.
func (c *cluster) kill(i int) {
	c.up[i].Store(false)
	c.procs[i].kill()
}

// mintToken signs a token for user with the cluster's secret, as an
// identity provider would: no round trip per user.
func mintToken(t testing.TB, user string) string {
	t.Helper()
	now := time.Now()
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
		"sub": user, "iat": now.Unix(), "exp": now.Add(time.Hour).Unix(),
	}).SignedString([]byte(clusterSecret))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// groupReply is the answer to a group creation or change.
type groupReply struct {
	Conv string      `json:"conv"`
	Msg  *pb.Message `json:"msg"`
}

// postRetry posts body to url as the holder of tok until it gets an
// answer, retrying what the server calls retryable on base() (which may
// move to another node meanwhile).
func postRetry(ctx context.Context, base func() string, path, tok string, body []byte, out any) error {
	for {
		err := client.DoJSON(ctx, http.MethodPost, base()+path, tok, body, out)
		if err == nil {
			return nil
		}
		var ae *client.Error
		if errors.As(err, &ae) && !ae.Retryable {
			return err
		}
		if ctx.Err() != nil {
			return fmt.Errorf("%s: %w (last error %v)", path, ctx.Err(), err)
		}
		pause(ctx, 100*time.Millisecond) // the caller's retry backoff
	}
}

// createGroup makes owner's group of members (owner excluded): created with
// the first 499 (500 users per call at most), then invited 500 at a time.
// It returns the group and its events, by seq.
func createGroup(ctx context.Context, t *testing.T, base func() string, owner string, members []string) (string, map[uint64]string) {
	t.Helper()
	tok := mintToken(t, owner)
	first := members[:min(499, len(members))]
	body, _ := json.Marshal(map[string]any{"name": "crowd", "users": first, "policy": "invite_only", "cmid": "create-" + owner})
	var res groupReply
	if err := postRetry(ctx, base, "/v1/groups", tok, body, &res); err != nil {
		t.Fatalf("create the group: %v", err)
	}
	events := map[uint64]string{res.Msg.Seq: res.Msg.Id}
	for i := len(first); i < len(members); i += 500 {
		batch := members[i:min(i+500, len(members))]
		body, _ := json.Marshal(map[string]any{"op": "invite", "users": batch, "cmid": fmt.Sprintf("invite-%d", i)})
		var inv groupReply
		if err := postRetry(ctx, base, "/v1/groups/"+res.Conv, tok, body, &inv); err != nil {
			t.Fatalf("invite members %d-%d: %v", i, i+len(batch), err)
		}
		events[inv.Msg.Seq] = inv.Msg.Id
	}
	return res.Conv, events
}

// ledger is what the server ACKed, by seq, for one conversation.
type ledger struct {
	mu    sync.Mutex
	seqs  map[uint64]string
	cmids map[uint64]string // for messages sent through sendAll
	sent  atomic.Int64
	tries atomic.Int64
}

func (l *ledger) ack(seq uint64, id, cmid string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.cmids == nil {
		l.cmids = map[uint64]string{}
	}
	l.cmids[seq] = cmid
	if prev, ok := l.seqs[seq]; ok && prev != id {
		return fmt.Errorf("seq %d ACKed for two messages: %s and %s", seq, prev, id)
	}
	l.seqs[seq] = id
	return nil
}

// missing lists the ACKed messages, by seq and cmid, that got lacks.
func (l *ledger) missing(got []*pb.Message) []string {
	have := map[uint64]bool{}
	for _, m := range got {
		have[m.Seq] = true
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for seq := range l.seqs {
		if !have[seq] {
			out = append(out, fmt.Sprintf("#%d(%s)", seq, l.cmids[seq]))
		}
	}
	slices.Sort(out)
	return out
}

func (l *ledger) len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.seqs)
}

func (l *ledger) snapshot() map[uint64]string {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make(map[uint64]string, len(l.seqs))
	for k, v := range l.seqs {
		out[k] = v
	}
	return out
}

// sendAll sends n messages to conv as user over HTTP on base(), each
// retried with its cmid until ACKed, and records the ACKs.
func sendAll(ctx context.Context, t *testing.T, l *ledger, base func() string, user, conv string, n int, pace time.Duration) {
	tok := mintToken(t, user)
	for i := range n {
		cmid := fmt.Sprintf("%s-%d", user, i)
		body, _ := json.Marshal(map[string]any{"conv": conv, "cmid": cmid, "body": "hello from " + cmid})
		l.sent.Add(1)
		var m pb.Message
		for attempt := 0; ; attempt++ {
			err := client.DoJSON(ctx, http.MethodPost, base()+"/v1/messages", tok, body, &m)
			if err == nil {
				break
			}
			var ae *client.Error
			if errors.As(err, &ae) && !ae.Retryable {
				t.Errorf("send %s refused for good: %v", cmid, err)
				return
			}
			if ctx.Err() != nil {
				t.Errorf("send %s: %v", cmid, err)
				return
			}
			if l.tries.Add(1)%50 == 1 {
				t.Logf("send %s, try %d: %v", cmid, attempt+1, err)
			}
			pause(ctx, 100*time.Millisecond) // the sender's retry backoff
		}
		if err := l.ack(m.Seq, m.Id, cmid); err != nil {
			t.Error(err)
		}
		pause(ctx, pace) // a pace, so that a fault lands mid-traffic
	}
}

// groupTally is the checker's report over a group's devices.
type groupTally struct {
	devices, live, synced, dups, conns, outOfOrder, extra, lost int64
}

// checkGroupDevices compares each device's history of conv (live pushes
// plus syncs, duplicates dropped by id) with want: every entry exactly
// there, in seq order from the first, with no gap.
func checkGroupDevices(t *testing.T, devs []*rdev, conv string, want map[uint64]string) groupTally {
	t.Helper()
	var tl groupTally
	for _, d := range devs {
		got := d.inbox.Messages(conv)
		have := map[string]bool{}
		for i, m := range got {
			have[m.Id] = true
			if m.Seq != uint64(i+1) {
				t.Errorf("%s: position %d holds seq %d: a gap", d.name, i, m.Seq)
				break
			}
			if id, ok := want[m.Seq]; ok && id != m.Id {
				t.Errorf("%s: seq %d is %s, the ACK said %s", d.name, m.Seq, m.Id, id)
			}
		}
		for seq, id := range want {
			if !have[id] {
				tl.lost++
				if tl.lost <= 20 {
					t.Errorf("%s lost ACKed message %s#%d (%s)", d.name, conv, seq, id)
				}
			}
		}
		tl.devices++
		tl.extra += int64(len(got) - len(want))
		tl.live += d.live.Load()
		tl.synced += d.synced.Load()
		tl.dups += int64(d.inbox.Duplicates())
		tl.conns += d.conns.Load()
		tl.outOfOrder += d.outOfOrder.Load()
	}
	return tl
}

// TestGroupClusterFaults: a 50-member group whose members' devices are
// spread over three nodes (some members with two devices on two nodes).
// Several members send while one node is killed with SIGKILL: its devices
// reconnect to another node and sync. Every ACKed message reaches every
// device of every member exactly once, in seq order, with no gap.
func TestGroupClusterFaults(t *testing.T) {
	for _, profile := range []string{daprdtest.Redis, daprdtest.PostgresRabbitMQ} {
		t.Run(profile, func(t *testing.T) {
			start := time.Now()
			const members, perSender, victim = 50, 40, 2
			senders := []int{0, 7, 13, 22, 34, 47}
			cl := startCluster(t, profile, 3, map[string]string{
				"parley.send_rate_per_sec": "100000", "parley.ack_timeout_ms": "2000",
			}, "-lease-ttl", "3s")
			ctx, cancel := context.WithTimeout(t.Context(), 4*time.Minute)
			defer cancel()
			users := make([]string, members)
			for i := range users {
				users[i] = fmt.Sprintf("m%02d", i)
			}
			conv, events := createGroup(ctx, t, func() string { return cl.base(0) }, users[0], users[1:])
			l := &ledger{seqs: maps.Clone(events)}

			// Member i's first device is on node i%3; every third member
			// has a second device on the next node.
			var devs []*rdev
			devCtx, stopDevs := context.WithCancel(ctx)
			defer stopDevs()
			for i, u := range users {
				homes := []int{i % 3}
				if i%3 == 0 {
					homes = append(homes, (i+1)%3)
				}
				for k, home := range homes {
					d := &rdev{name: fmt.Sprintf("%s/d%d@n%d", u, k, home+1), tok: mintToken(t, u),
						base: func() string { return cl.base(home) }, convs: []string{conv},
						inbox: client.NewInbox(), stopped: make(chan struct{})}
					devs = append(devs, d)
					go d.run(devCtx)
				}
			}
			testkit.Eventually(t, 60*time.Second, func() bool {
				for _, d := range devs {
					if d.conns.Load() == 0 {
						return false
					}
				}
				return true
			}, "not every device connected within 60s")

			var wg sync.WaitGroup
			for _, s := range senders {
				wg.Go(func() {
					sendAll(ctx, t, l, func() string { return cl.base(s % 3) }, users[s], conv, perSender, 10*time.Millisecond)
				})
			}
			// Kill a node once traffic flows.
			testkit.Eventually(t, 60*time.Second, func() bool { return l.len() >= len(events)+60 },
				"traffic did not start: %d ACKs", l.len())
			acksAtKill := l.len()
			cl.kill(victim)
			wg.Wait()
			if t.Failed() {
				return
			}
			want := l.snapshot()
			// Every device catches up by itself (live pushes, or a sync on
			// reconnecting); one that has not within 60 s is reported below.
			catchUp, cancelCatchUp := context.WithTimeout(ctx, 60*time.Second)
			defer cancelCatchUp()
			caughtUp := testkit.Until(catchUp, func() bool {
				for _, d := range devs {
					if len(d.inbox.Messages(conv)) < len(want) {
						return false
					}
				}
				return true
			}) == nil
			stopDevs()
			var behind []string
			for _, d := range devs {
				<-d.stopped
				if len(d.inbox.Messages(conv)) < len(want) {
					behind = append(behind, d.name)
				}
			}
			if !caughtUp {
				t.Logf("not caught up live within 60s, before the final sync: %v", behind)
				for _, d := range devs[:min(3, len(devs))] {
					t.Logf("%s misses %v", d.name, l.missing(d.inbox.Messages(conv)))
				}
			}
			// A last sync on a fresh connection, as a client that comes back
			// later would.
			for _, d := range devs {
				c, err := client.Dial(ctx, d.base(), d.tok, client.Options{Device: "checker"})
				if err != nil {
					t.Fatalf("final sync of %s: %v", d.name, err)
				}
				d.syncAll(ctx, c)
				_ = c.Close()
			}
			tl := checkGroupDevices(t, devs, conv, want)
			t.Logf("group checker %s (%d members, %d devices, node %d of 3 killed after %d ACKs): sent=%d acked=%d retries=%d "+
				"delivered_live=%d synced=%d duplicates_dropped=%d out_of_order_pushes=%d connections=%d unacked_extra=%d lost=%d (%v)",
				profile, members, tl.devices, victim+1, acksAtKill, l.sent.Load(), len(want)-len(events), l.tries.Load(),
				tl.live, tl.synced, tl.dups, tl.outOfOrder, tl.conns, tl.extra, tl.lost, time.Since(start).Round(time.Second))
			if got := len(want) - len(events); got != len(senders)*perSender {
				t.Errorf("%d of %d sends were ACKed", got, len(senders)*perSender)
			}
		})
	}
}

// scaleDevice is one connection of the large-group test: it only counts.
type scaleDevice struct {
	user, name string
	home       int
	c          *client.Client
	mu         sync.Mutex
	got        map[string]int // message id -> pushes
	done       chan struct{}
}

func (d *scaleDevice) has(id string) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.got[id] > 0
}

// TestGroupAtScale: a group of thousands of members across a three-node
// redis cluster, one WebSocket per member (and a second one on another
// node for every twentieth member): a handful of messages from a few
// senders reach every device. The default run has 2,000 members;
// PARLEY_BIG=1 makes it 10,000.
func TestGroupAtScale(t *testing.T) {
	members := 2000
	if os.Getenv("PARLEY_BIG") == "1" {
		members = 10000
	}
	const senders, perSender = 3, 2
	start := time.Now()
	cl := startCluster(t, daprdtest.Redis, 3, map[string]string{
		"parley.send_rate_per_sec": "100000", "parley.group_member_cap": "20000",
		"parley.abuse.max_connects_per_ip": "1000000",
	})
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	users := make([]string, members)
	for i := range users {
		users[i] = fmt.Sprintf("s%05d", i)
	}
	conv, _ := createGroup(ctx, t, func() string { return cl.base(0) }, users[0], users[1:])
	created := time.Since(start)

	// Connect every device with bounded concurrency, from several loopback
	// source addresses so that no one address runs short of ports.
	var devs []*scaleDevice
	for i, u := range users {
		devs = append(devs, &scaleDevice{user: u, name: u + "/d0", home: i % 3})
		if i%20 == 0 {
			devs = append(devs, &scaleDevice{user: u, name: u + "/d1", home: (i + 1) % 3})
		}
	}
	connStart := time.Now()
	sem := make(chan struct{}, 32)
	var cwg sync.WaitGroup
	var dialErrs atomic.Int64
	var firstErr atomic.Value
	for k, d := range devs {
		sem <- struct{}{}
		cwg.Go(func() {
			defer func() { <-sem }()
			src := &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(2+k%16))}
			dialer := &net.Dialer{LocalAddr: src}
			opts := client.Options{Device: d.name, Buffer: 16, NetDialContext: dialer.DialContext}
			tok := mintToken(t, d.user)
			var err error
			for attempt := range 5 {
				if d.c, err = client.Dial(ctx, cl.base(d.home), tok, opts); err == nil {
					break
				}
				pause(ctx, time.Duration(attempt+1)*200*time.Millisecond) // a client's reconnect backoff
			}
			if err != nil {
				dialErrs.Add(1)
				firstErr.CompareAndSwap(nil, fmt.Errorf("%s: %w", d.name, err))
				return
			}
			d.got = map[string]int{}
			d.done = make(chan struct{})
			go func() {
				defer close(d.done)
				for m := range d.c.Messages {
					if m.Conv != conv {
						continue
					}
					d.mu.Lock()
					d.got[m.Id]++
					d.mu.Unlock()
				}
			}()
		})
	}
	cwg.Wait()
	t.Cleanup(func() {
		for _, d := range devs {
			if d.c != nil {
				_ = d.c.Close()
				<-d.done
			}
		}
	})
	if n := dialErrs.Load(); n > 0 {
		t.Fatalf("%d of %d devices could not connect; first: %v", n, len(devs), firstErr.Load())
	}
	connected := time.Since(connStart)

	// A few senders, each on another node.
	l := &ledger{seqs: map[uint64]string{}}
	sendStart := time.Now()
	var swg sync.WaitGroup
	for s := range senders {
		swg.Go(func() {
			sendAll(ctx, t, l, func() string { return cl.base(s % 3) }, users[s*(members/senders)], conv, perSender, 0)
		})
	}
	swg.Wait()
	if t.Failed() {
		return
	}
	want := l.snapshot()
	deliverCtx, cancelDeliver := context.WithTimeout(ctx, 90*time.Second)
	defer cancelDeliver()
	_ = testkit.Until(deliverCtx, func() bool {
		for _, d := range devs {
			for _, id := range want {
				if !d.has(id) {
					return false
				}
			}
		}
		return true
	})
	delivered := time.Since(sendStart)
	// What did not arrive live is looked for by sync on the same
	// connection; what sync does not return either is lost.
	var live, synced, dups, lost int64
	missedBy := map[string]int{}
	senderOf := map[string]string{}
	for seq, id := range want {
		senderOf[id] = l.cmids[seq]
	}
	var firstSeq uint64 = ^uint64(0)
	for seq := range want {
		firstSeq = min(firstSeq, seq)
	}
	for _, d := range devs {
		var missing []string
		d.mu.Lock()
		for _, id := range want {
			switch n := d.got[id]; {
			case n == 0:
				missing = append(missing, id)
			default:
				live++
				dups += int64(n - 1)
			}
		}
		d.mu.Unlock()
		if len(missing) == 0 {
			continue
		}
		for _, id := range missing {
			missedBy[fmt.Sprintf("n%d missed %s", d.home+1, senderOf[id])]++
		}
		msgs, err := d.c.Sync(ctx, conv, firstSeq-1)
		if err != nil {
			t.Errorf("sync %s: %v", d.name, err)
		}
		have := map[string]bool{}
		for _, m := range msgs {
			have[m.Id] = true
		}
		for _, id := range missing {
			if have[id] {
				synced++
			} else {
				lost++
			}
		}
		if lost > 0 && lost <= 10 {
			t.Errorf("%s lost %d messages: %v", d.name, len(missing), missing)
		}
	}
	t.Logf("group at scale: members=%d devices=%d messages=%d expected_deliveries=%d delivered_live=%d synced=%d duplicates=%d lost=%d; "+
		"group made in %v, devices connected in %v, delivered in %v, total %v",
		members, len(devs), len(want), len(want)*len(devs), live, synced, dups, lost,
		created.Round(time.Millisecond), connected.Round(time.Millisecond), delivered.Round(time.Millisecond), time.Since(start).Round(time.Second))
	if lost > 0 {
		t.Errorf("%d deliveries lost", lost)
	}
	if len(missedBy) > 0 {
		t.Logf("live deliveries missed, by the devices' node and the message: %v", missedBy)
	}
	if synced > 0 {
		t.Errorf("%d deliveries reached connected devices only by sync: live delivery missed them", synced)
		for i, p := range cl.procs {
			t.Logf("node %d, the end of its log:\n%s", i+1, testkit.Tail(p.log, 25))
		}
	}
	if len(want) != senders*perSender {
		t.Errorf("%d of %d sends were ACKed", len(want), senders*perSender)
	}
}
