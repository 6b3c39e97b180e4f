package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/parley-im/parley/client"
	"github.com/parley-im/parley/infrastructure/dapr/daprd"
	"github.com/parley-im/parley/infrastructure/dapr/daprd/daprdtest"
	pb "github.com/parley-im/parley/proto/parley/v1"
	"github.com/parley-im/parley/tools/testkit"
)

// The fault tests: many clients send while something breaks. A checker
// records every message that got a server ACK and, at the end, compares
// each member device's history (live deliveries plus syncs, duplicates
// dropped by id): every ACKed message must be there exactly once, in seq
// order, with no gap.

const faultSecret = "fault-test-secret-fault-test-secret!"

// ackRecord is one server ACK.
type ackRecord struct {
	conv string
	seq  uint64
	id   string
}

// checker is the ledger of ACKs and the report.
type checker struct {
	mu      sync.Mutex
	acks    map[string]ackRecord // by sender/cmid
	sent    atomic.Int64
	retries atomic.Int64
}

// rdev is a device that reconnects and syncs by itself, as a real client.
type rdev struct {
	name   string
	tok    string
	base   func() string
	convs  []string
	inbox  *client.Inbox
	stall  atomic.Bool // while set, the device does not read: a slow client
	live   atomic.Int64
	synced atomic.Int64
	conns  atomic.Int64
	// outOfOrder counts pushes on one connection of a seq below one that
	// connection was already pushed in the same conversation.
	outOfOrder atomic.Int64
	cur        atomic.Pointer[client.Client]
	stopped    chan struct{}
}

func (d *rdev) run(ctx context.Context) {
	defer close(d.stopped)
	for ctx.Err() == nil {
		opts := client.Options{Device: d.name}
		if d.stall.Load() {
			opts.Buffer = 1
		}
		c, err := client.Dial(ctx, d.base(), d.tok, opts)
		if err != nil {
			pause(ctx, 100*time.Millisecond) // a client's reconnect backoff
			continue
		}
		d.conns.Add(1)
		d.cur.Store(c)
		drained := make(chan struct{})
		go func() {
			defer close(drained)
			last := map[string]uint64{}
			for m := range c.Messages {
				if m.Seq < last[m.Conv] {
					d.outOfOrder.Add(1)
				}
				last[m.Conv] = max(last[m.Conv], m.Seq)
				if d.stall.Load() {
					_ = testkit.Until(ctx, func() bool { return !d.stall.Load() || isDone(c.Done()) })
				}
				if d.inbox.Add(m) {
					d.live.Add(1)
				}
			}
		}()
		d.syncAll(ctx, c)
		select {
		case <-drained:
		case <-ctx.Done():
			_ = c.Close()
			<-drained
		}
	}
}

func (d *rdev) syncAll(ctx context.Context, c *client.Client) {
	for _, conv := range d.convs {
		msgs, err := c.Sync(ctx, conv, d.inbox.Contiguous(conv))
		if err != nil {
			return // the connection broke; the next one syncs again
		}
		for _, m := range msgs {
			if d.inbox.Add(m) {
				d.synced.Add(1)
			}
		}
	}
}

// faultEnv is one scenario's parley, its sidecar and its backend, with a
// way to break each.
type faultEnv struct {
	parley  *proc
	sidecar *daprd.Sidecar
}

func (e *faultEnv) base() string { return e.parley.base }

// startFaultEnv starts daprd (resources from dir) and parley as separate
// processes, so that either can be killed alone.
func startFaultEnv(t *testing.T, profile, resources string) *faultEnv {
	t.Helper()
	requireMode(t, mode{name: "dapr-" + profile})
	appID := daprdtest.UniqueName("parley-fault")
	appPort := freePort(t)
	var sc *daprd.Sidecar
	if resources == "" {
		sc = daprdtest.StartForTest(t, profile, daprdtest.WithAppID(appID), daprdtest.WithAppPort(appPort))
	} else {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		var err error
		sc, err = daprd.Start(ctx, daprd.Options{ResourcesPath: resources, AppID: appID, AppPort: appPort,
			LogPath: filepath.Join(t.TempDir(), "daprd.log")})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = sc.Stop(context.Background()) })
	}
	p := startProc(t, mode{name: "external", args: []string{
		"-backend", "dapr", "-sidecar", "external", "-dapr-grpc", sc.GRPCAddr(), "-dapr-http", sc.HTTPAddr(),
		"-app-id", appID, "-app-port", fmt.Sprint(appPort), "-jwt-secret", faultSecret,
		"-settings", settingsFile(t, map[string]string{"parley.send_rate_per_sec": "100000", "parley.ack_timeout_ms": "2000"}),
	}})
	return &faultEnv{parley: p, sidecar: sc}
}

type scenario struct {
	name   string
	body   int // body size of each message
	inject func(t *testing.T, e *faultEnv, devs []*rdev)
}

// runFaultScenario drives traffic through env while sc.inject breaks it,
// then checks and reports.
func runFaultScenario(t *testing.T, e *faultEnv, sc scenario) {
	const users, perUser, devicesPerUser = 6, 120, 2
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	tok := func(u string) string {
		tk, err := client.DevToken(ctx, e.base(), u)
		if err != nil {
			t.Fatalf("token: %v", err)
		}
		return tk
	}
	peer := func(i int) int { return i ^ 1 }
	conv := func(a, b int) string {
		x, y := fmt.Sprintf("u%d", a), fmt.Sprintf("u%d", b)
		if y < x {
			x, y = y, x
		}
		return "d:" + x + "~" + y
	}
	var devs []*rdev
	devCtx, stopDevs := context.WithCancel(ctx)
	defer stopDevs()
	for u := range users {
		for k := range devicesPerUser {
			d := &rdev{name: fmt.Sprintf("u%d/d%d", u, k), tok: tok(fmt.Sprintf("u%d", u)), base: e.base,
				convs: []string{conv(u, peer(u))}, inbox: client.NewInbox(), stopped: make(chan struct{})}
			devs = append(devs, d)
			go d.run(devCtx)
		}
	}
	ck := &checker{acks: map[string]ackRecord{}}
	body := strings.Repeat("m", sc.body)
	var wg sync.WaitGroup
	for u := range users {
		wg.Go(func() {
			tk := tok(fmt.Sprintf("u%d", u))
			for i := range perUser {
				cmid := fmt.Sprintf("u%d-%d", u, i)
				req := fmt.Sprintf(`{"to":"u%d","cmid":%q,"body":%q}`, peer(u), cmid, body)
				ck.sent.Add(1)
				for attempt := 0; ; attempt++ {
					var m pb.Message
					err := client.DoJSON(ctx, http.MethodPost, e.base()+"/v1/messages", tk, []byte(req), &m)
					if err == nil {
						ck.mu.Lock()
						ck.acks["u"+fmt.Sprint(u)+"/"+cmid] = ackRecord{conv: m.Conv, seq: m.Seq, id: m.Id}
						ck.mu.Unlock()
						break
					}
					var ae *client.Error
					if errors.As(err, &ae) && !ae.Retryable {
						t.Errorf("send %s refused for good: %v", cmid, err)
						return
					}
					if ctx.Err() != nil {
						return
					}
					ck.retries.Add(1)
					pause(ctx, 100*time.Millisecond) // the sender's retry backoff
				}
				pause(ctx, 5*time.Millisecond) // a pace, so that the fault lands mid-traffic

			}
		})
	}
	// Break things once traffic flows: every user has ACKed sends and every
	// device is connected.
	testkit.Eventually(t, 30*time.Second, func() bool {
		for _, d := range devs {
			if d.conns.Load() == 0 {
				return false
			}
		}
		ck.mu.Lock()
		defer ck.mu.Unlock()
		return len(ck.acks) >= users*10
	}, "traffic did not start: %d sends, %d retries", ck.sent.Load(), ck.retries.Load())
	sc.inject(t, e, devs)
	wg.Wait()
	if t.Failed() {
		return
	}
	// Give every device time to catch up, then a last sync on a fresh
	// connection, as a client that comes back later would.
	byConv := map[string]map[uint64]string{}
	for _, a := range ck.acks {
		if byConv[a.conv] == nil {
			byConv[a.conv] = map[uint64]string{}
		}
		if prev, dup := byConv[a.conv][a.seq]; dup && prev != a.id {
			t.Errorf("seq %s#%d ACKed for two messages: %s and %s", a.conv, a.seq, prev, a.id)
		}
		byConv[a.conv][a.seq] = a.id
	}
	// A device that has not caught up within 30 s is reported below.
	catchUp, cancelCatchUp := context.WithTimeout(ctx, 30*time.Second)
	defer cancelCatchUp()
	_ = testkit.Until(catchUp, func() bool {
		for _, d := range devs {
			if len(d.inbox.Messages(d.convs[0])) < len(byConv[d.convs[0]]) {
				return false
			}
		}
		return true
	})
	stopDevs()
	for _, d := range devs {
		<-d.stopped
		c, err := client.Dial(ctx, e.base(), d.tok, client.Options{Device: "checker"})
		if err != nil {
			t.Fatalf("final sync of %s: %v", d.name, err)
		}
		d.syncAll(ctx, c)
		_ = c.Close()
	}
	var lost, extra, delivered, synced, dups, conns int64
	for _, d := range devs {
		want := byConv[d.convs[0]]
		got := d.inbox.Messages(d.convs[0])
		have := map[string]bool{}
		for i, m := range got {
			have[m.Id] = true
			if m.Seq != uint64(i+1) {
				t.Errorf("%s: position %d holds seq %d: a gap", d.name, i, m.Seq)
				break
			}
		}
		for seq, id := range want {
			if !have[id] {
				lost++
				var held string
				if int(seq) <= len(got) {
					held = fmt.Sprintf("%s from %s cmid %s", got[seq-1].Id, got[seq-1].From, got[seq-1].Cmid)
				}
				t.Errorf("%s lost ACKed message %s#%d (%s); it holds %s there", d.name, d.convs[0], seq, id, held)
			}
		}
		extra += int64(len(got) - len(want))
		delivered += d.live.Load()
		synced += d.synced.Load()
		dups += int64(d.inbox.Duplicates())
		conns += d.conns.Load()
	}
	t.Logf("checker %s: sent=%d acked=%d retries=%d delivered_live=%d synced=%d duplicates_dropped=%d connections=%d unacked_extra=%d lost=%d",
		sc.name, ck.sent.Load(), len(ck.acks), ck.retries.Load(), delivered, synced, dups, conns, extra, lost)
	if len(ck.acks) != users*perUser {
		t.Errorf("%d of %d sends were ACKed", len(ck.acks), users*perUser)
	}
}

func killParley(t *testing.T, e *faultEnv, _ []*rdev) {
	e.parley.kill()
	pause(t.Context(), 500*time.Millisecond) // parley stays down a while, as after a crash
	e.parley.launch(t)
}

func killDaprd(t *testing.T, e *faultEnv, _ []*rdev) {
	e.sidecar.Kill()
	pause(t.Context(), time.Second) // daprd stays down a while, as after a crash
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := e.sidecar.Restart(ctx); err != nil {
		t.Fatal(err)
	}
}

func dropTCP(t *testing.T, _ *faultEnv, devs []*rdev) {
	for range 3 {
		for _, d := range devs {
			if c := d.cur.Load(); c != nil {
				go c.Drop()
			}
		}
		pause(t.Context(), 300*time.Millisecond) // clients reconnect between the drops
	}
}

func isDone(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
	}
	return false
}

// stallClient makes one device's application stop consuming for longer
// than the ACK timeout times the tries. Its socket keeps being read, so
// the server is not slowed; the device catches up, dropping nothing. The
// server side of a socket that stops being read is covered by
// TestSlowConsumerIsDisconnected.
func stallClient(t *testing.T, _ *faultEnv, devs []*rdev) {
	d := devs[1]
	d.stall.Store(true)
	pause(t.Context(), 8*time.Second) // the stall itself
	d.stall.Store(false)
}

// TestFaults runs every scenario on the local profile (daprd's in-memory
// state lives on while parley is killed) and on redis.
func TestFaults(t *testing.T) {
	testkit.SkipShort(t)
	scenarios := []scenario{
		{name: "kill_parley", body: 64, inject: killParley},
		{name: "drop_tcp", body: 64, inject: dropTCP},
		{name: "slow_client", body: 8000, inject: stallClient},
	}
	for _, profile := range []string{daprdtest.Local, daprdtest.Redis} {
		for _, sc := range scenarios {
			t.Run(profile+"/"+sc.name, func(t *testing.T) {
				runFaultScenario(t, startFaultEnv(t, profile, ""), sc)
			})
		}
	}
	// Killing daprd loses the local profile's in-memory state by design, so
	// that scenario runs on the durable profiles.
	for _, profile := range []string{daprdtest.Redis, daprdtest.PostgresRabbitMQ, daprdtest.JetStream} {
		t.Run(profile+"/kill_daprd", func(t *testing.T) {
			runFaultScenario(t, startFaultEnv(t, profile, ""), scenario{name: "kill_daprd", body: 64, inject: killDaprd})
		})
	}
	t.Run("postgres-rabbitmq/kill_parley", func(t *testing.T) {
		runFaultScenario(t, startFaultEnv(t, daprdtest.PostgresRabbitMQ, ""), scenario{name: "kill_parley", body: 64, inject: killParley})
	})
	t.Run("postgres-rabbitmq/restart_backend", func(t *testing.T) {
		requireMode(t, mode{name: "dapr-" + daprdtest.PostgresRabbitMQ})
		pg := startPrivatePostgres(t)
		runFaultScenario(t, startFaultEnv(t, daprdtest.PostgresRabbitMQ, pg.components), scenario{name: "restart_backend", body: 64,
			inject: func(t *testing.T, _ *faultEnv, _ []*rdev) { pg.restart(t) }})
	})
	t.Run("redis-aof/restart_backend", func(t *testing.T) {
		requireMode(t, mode{name: "dapr-" + daprdtest.Redis})
		r := startPrivateRedis(t)
		runFaultScenario(t, startFaultEnv(t, daprdtest.Redis, r.components), scenario{name: "restart_backend", body: 64,
			inject: func(t *testing.T, _ *faultEnv, _ []*rdev) { r.restart(t) }})
	})
}

// privateRedis is a redis-server of the test's own, with append-only
// persistence fsynced on every write, so a SIGKILL loses nothing.
type privateRedis struct {
	port       int
	dir        string
	components string
	cmd        *exec.Cmd
}

func startPrivateRedis(t *testing.T) *privateRedis {
	t.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		testkit.Unavailable(t, "redis-server not installed")
	}
	r := &privateRedis{port: freePort(t), dir: t.TempDir()}
	root, _ := testkit.RepoRoot()
	r.components = filepath.Join(t.TempDir(), "components")
	if err := os.MkdirAll(r.components, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"statestore.yaml", "pubsub.yaml"} {
		data, err := os.ReadFile(filepath.Join(root, "components", "redis", f))
		if err != nil {
			t.Fatal(err)
		}
		data = []byte(strings.ReplaceAll(string(data), "127.0.0.1:6379", fmt.Sprintf("127.0.0.1:%d", r.port)))
		if err := os.WriteFile(filepath.Join(r.components, f), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	r.start(t)
	t.Cleanup(func() { r.kill() })
	return r
}

func (r *privateRedis) start(t *testing.T) {
	t.Helper()
	r.cmd = exec.Command("redis-server", "--port", fmt.Sprint(r.port), "--bind", "127.0.0.1", "--dir", r.dir,
		"--appendonly", "yes", "--appendfsync", "always", "--save", "", "--logfile", filepath.Join(r.dir, "redis.log"))
	r.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := r.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", r.port)
	testkit.Eventually(t, 10*time.Second, func() bool {
		ctx, cancel := context.WithTimeout(t.Context(), time.Second)
		defer cancel()
		v, err := testkit.RedisDo(ctx, addr, "PING")
		return err == nil && v == "PONG"
	}, "private redis did not start; its log ends:\n%s", testkit.Tail(filepath.Join(r.dir, "redis.log"), 20))
}

func (r *privateRedis) kill() {
	if r.cmd != nil && r.cmd.Process != nil {
		_ = r.cmd.Process.Kill()
		_ = r.cmd.Wait()
	}
}

// restart kills the server with SIGKILL and starts it again on the same
// port and data: the durability a production Redis with AOF gives.
func (r *privateRedis) restart(t *testing.T) {
	r.kill()
	pause(t.Context(), time.Second) // the backend stays down a while, as after a crash
	r.start(t)
}

// privatePostgres is a PostgreSQL server of the test's own, so that
// killing it disturbs no other test. It runs as the postgres user.
type privatePostgres struct {
	port       int
	dir        string
	components string
	cmd        *exec.Cmd
	uid, gid   uint32
}

func lookupUser(name string) (uint32, uint32, bool) {
	data, err := os.ReadFile("/etc/passwd")
	if err != nil {
		return 0, 0, false
	}
	for line := range strings.Lines(string(data)) {
		f := strings.Split(line, ":")
		if len(f) > 3 && f[0] == name {
			var uid, gid uint32
			_, _ = fmt.Sscan(f[2], &uid)
			_, _ = fmt.Sscan(f[3], &gid)
			return uid, gid, true
		}
	}
	return 0, 0, false
}

func startPrivatePostgres(t *testing.T) *privatePostgres {
	t.Helper()
	bins, _ := filepath.Glob("/usr/lib/postgresql/*/bin/postgres")
	uid, gid, ok := lookupUser("postgres")
	if len(bins) == 0 || !ok || os.Geteuid() != 0 {
		testkit.Unavailable(t, "a private PostgreSQL needs the server binaries, a postgres user and root")
	}
	bin := filepath.Dir(bins[0])
	dir, err := os.MkdirTemp("", "parley-pg-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chown(dir, int(uid), int(gid)); err != nil {
		t.Fatal(err)
	}
	p := &privatePostgres{port: freePort(t), dir: dir, uid: uid, gid: gid}
	asPostgres := func(name string, args ...string) *exec.Cmd {
		c := exec.Command(filepath.Join(bin, name), args...)
		c.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: gid}, Pdeathsig: syscall.SIGKILL}
		c.Dir = dir
		return c
	}
	if out, err := asPostgres("initdb", "-D", filepath.Join(dir, "data"), "-A", "trust", "-U", "postgres").CombinedOutput(); err != nil {
		t.Fatalf("initdb: %v\n%s", err, out)
	}
	p.cmd = asPostgres("postgres", "-D", filepath.Join(dir, "data"), "-p", fmt.Sprint(p.port), "-k", dir, "-c", "listen_addresses=127.0.0.1", "-c", "fsync=on")
	p.start(t)
	if out, err := exec.Command("psql", "-h", "127.0.0.1", "-p", fmt.Sprint(p.port), "-U", "postgres", "-c", "CREATE DATABASE test").CombinedOutput(); err != nil {
		t.Fatalf("create database: %v\n%s", err, out)
	}
	root, _ := testkit.RepoRoot()
	p.components = filepath.Join(t.TempDir(), "components")
	if err := os.MkdirAll(p.components, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"statestore.yaml", "pubsub.yaml"} {
		data, err := os.ReadFile(filepath.Join(root, "components", "postgres-rabbitmq", f))
		if err != nil {
			t.Fatal(err)
		}
		data = []byte(strings.ReplaceAll(string(data), "port=5432", fmt.Sprintf("port=%d", p.port)))
		if err := os.WriteFile(filepath.Join(p.components, f), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() { p.kill() })
	return p
}

func (p *privatePostgres) start(t *testing.T) {
	t.Helper()
	cmd := exec.Command(p.cmd.Path, p.cmd.Args[1:]...)
	cmd.SysProcAttr, cmd.Dir = p.cmd.SysProcAttr, p.cmd.Dir
	cmd.Stdout, cmd.Stderr = nil, nil
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p.cmd = cmd
	testkit.Eventually(t, 10*time.Second, func() bool {
		return exec.Command("pg_isready", "-h", "127.0.0.1", "-p", fmt.Sprint(p.port)).Run() == nil
	}, "private postgres did not start")
}

func (p *privatePostgres) kill() {
	if p.cmd != nil && p.cmd.Process != nil {
		_ = p.cmd.Process.Kill()
		_ = p.cmd.Wait()
	}
}

// restart kills the server with SIGKILL and starts it again: PostgreSQL
// recovers every committed transaction from its write-ahead log.
func (p *privatePostgres) restart(t *testing.T) {
	children := testkit.ChildPIDs(p.cmd.Process.Pid)
	p.kill()
	// The children of a killed postmaster exit on their own; a new one
	// refuses to start while they hold its shared memory.
	testkit.Eventually(t, 30*time.Second, func() bool {
		return !slices.ContainsFunc(children, testkit.Alive)
	}, "the killed postmaster's children %v did not exit", children)
	p.start(t)
}
