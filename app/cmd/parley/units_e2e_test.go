package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/parley-im/parley/app/units"
	"github.com/parley-im/parley/client"
	"github.com/parley-im/parley/domain"
	"github.com/parley-im/parley/infrastructure/dapr/daprd"
	"github.com/parley-im/parley/infrastructure/dapr/daprd/daprdtest"
	pb "github.com/parley-im/parley/proto/parley/v1"
	"github.com/parley-im/parley/tools/testkit"
)

// unitsSecret signs the tokens of both units: a user signs in to either.
const unitsSecret = "units-test-secret-units-test-secret-0123"

// unitsAdminToken opens both units' operator API.
const unitsAdminToken = "units-test-admin-token"

// unitsShop is a shop's business account on both units.
const unitsShop = "unitshop"

// unitEnv is one unit: its own daprd, on its own profile, and one parley
// node, started as separate processes so that the daprd can be killed
// alone.
type unitEnv struct {
	name, appID, profile string
	sidecar              *daprd.Sidecar
	parley               *proc
	// setConfig writes a live setting into the unit's configuration store.
	setConfig func(ctx context.Context, key, value string) error
}

func (u *unitEnv) node() *node { return u.parley.node() }

// unitsEnv is two units, onprem on postgres-rabbitmq and cloud on redis,
// sharing the route store of components/units.
type unitsEnv struct {
	onprem, cloud *unitEnv
	// prefix keeps this run's live settings apart from other runs'.
	prefix string
}

// startUnits starts both units with the component folders of
// components/units, their resiliency targets renamed to this run's app-ids.
func startUnits(t *testing.T) *unitsEnv { return startUnitsWith(t, unitsSetup{}) }

// unitsSetup varies how the units are started.
type unitsSetup struct {
	// gateway makes onprem reach cloud as a unit in another cluster is
	// reached: through an HTTPEndpoint to cloud's daprd HTTP API, which
	// takes only calls with the API token (deploy/kubernetes/overlays/
	// units-*). Cloud reaches onprem by app-id, as on one machine.
	gateway bool
}

// gatewayEndpoint is the name onprem's -units gives cloud in gateway mode:
// the HTTPEndpoint's, not an app-id.
const gatewayEndpoint = "parley-cloud-gateway"

func startUnitsWith(t *testing.T, setup unitsSetup) *unitsEnv {
	t.Helper()
	testkit.SkipShort(t)
	root := daprdtest.RequireBinary(t)
	daprdtest.RequireServers(t, daprdtest.PostgresRabbitMQ)
	daprdtest.RequireServers(t, daprdtest.Redis)
	env := &unitsEnv{
		onprem: &unitEnv{name: "onprem", appID: daprdtest.UniqueName("parley-onprem"), profile: daprdtest.PostgresRabbitMQ},
		cloud:  &unitEnv{name: "cloud", appID: daprdtest.UniqueName("parley-cloud"), profile: daprdtest.Redis},
		prefix: strings.ReplaceAll(daprdtest.UniqueName("units"), "-", "_") + ".",
	}
	unitsFlag := fmt.Sprintf("onprem=%s,cloud=%s", env.onprem.appID, env.cloud.appID)
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	order := []*unitEnv{env.onprem, env.cloud}
	if setup.gateway {
		// Every daprd, and every parley that calls its own, takes the
		// token from the environment: cloud's API takes no call without
		// it, and onprem's HTTPEndpoint sends it.
		t.Setenv("DAPR_API_TOKEN", "units-gateway-token-0123456789")
		order = []*unitEnv{env.cloud, env.onprem}
	}
	for _, u := range order {
		u.setConfig = daprdtest.ConfigSetter(t, u.profile)
		// Sends are not rate limited here: the kill scenario retries hard.
		if err := u.setConfig(ctx, env.prefix+"parley.send_rate_per_sec", "100000"); err != nil {
			t.Fatal(err)
		}
		resources := filepath.Join(t.TempDir(), "components")
		copyUnitComponents(t, filepath.Join(root, "components", "units", u.name), resources,
			strings.NewReplacer("parley-onprem", env.onprem.appID, "parley-cloud", env.cloud.appID))
		flag := unitsFlag
		if setup.gateway && u == env.onprem {
			writeGatewayEndpoint(t, resources, env.cloud)
			flag = fmt.Sprintf("onprem=%s,cloud=%s", env.onprem.appID, gatewayEndpoint)
		}
		appPort := freePort(t)
		sc, err := daprd.Start(ctx, daprd.Options{ResourcesPath: resources, AppID: u.appID, AppPort: appPort,
			Dir: t.TempDir(), LogPath: filepath.Join(t.TempDir(), "daprd.log")})
		if err != nil {
			t.Fatalf("start the %s unit's daprd: %v", u.name, err)
		}
		u.sidecar = sc
		t.Cleanup(func() {
			if t.Failed() {
				t.Logf("%s daprd log:\n%s", u.name, testkit.Tail(sc.LogPath(), 30))
			}
			sctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
			defer cancel()
			_ = sc.Stop(sctx)
		})
		u.parley = startProc(t, mode{name: "external", args: []string{
			"-backend", "dapr", "-sidecar", "external", "-dapr-grpc", sc.GRPCAddr(), "-dapr-http", sc.HTTPAddr(),
			"-app-id", u.appID, "-app-port", fmt.Sprint(appPort), "-node-id", u.appID + "-n1",
			"-jwt-secret", unitsSecret, "-settings-prefix", env.prefix, "-metrics-addr", "",
			"-unit", u.name, "-units", flag, "-admin-token", unitsAdminToken, "-service-shops", unitsShop,
		}})
		t.Cleanup(func() {
			if t.Failed() {
				t.Logf("%s parley log:\n%s", u.name, testkit.Tail(u.parley.log, 30))
			}
		})
	}
	return env
}

// writeGatewayEndpoint writes into resources the HTTPEndpoint by which a
// unit reaches the cloud unit's daprd HTTP API, with a path prefix and the
// API token header, as overlays/units-onprem does across clusters.
func writeGatewayEndpoint(t *testing.T, resources string, cloud *unitEnv) {
	t.Helper()
	ep := fmt.Sprintf(`apiVersion: dapr.io/v1alpha1
kind: HTTPEndpoint
metadata:
  name: %s
spec:
  baseUrl: http://%s/v1.0/invoke/%s/method
  headers:
    - name: dapr-api-token
      value: %q
`, gatewayEndpoint, cloud.sidecar.HTTPAddr(), cloud.appID, os.Getenv("DAPR_API_TOKEN"))
	if err := os.WriteFile(filepath.Join(resources, "httpendpoint.yaml"), []byte(ep), 0o644); err != nil {
		t.Fatal(err)
	}
}

// copyUnitComponents copies a unit's component folder, rewriting it.
func copyUnitComponents(t *testing.T, from, to string, r *strings.Replacer) {
	t.Helper()
	if err := os.MkdirAll(to, 0o755); err != nil {
		t.Fatal(err)
	}
	files, err := filepath.Glob(filepath.Join(from, "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no components in %s: %v", from, err)
	}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(to, filepath.Base(f)), []byte(r.Replace(string(data))), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// homeOf reads conv's route from the shared route table, as the units'
// sidecars stored it: under the bare key, with no app-id prefix
// (keyPrefix none). "" means not bound.
func homeOf(t *testing.T, ctx context.Context, conv string) string {
	t.Helper()
	conn, err := pgx.Connect(ctx, daprdtest.PostgresURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var value []byte
	err = conn.QueryRow(ctx, "SELECT value FROM parley_units_state WHERE key = $1", units.RouteKey(domain.ConversationID(conv))).Scan(&value)
	if errors.Is(err, pgx.ErrNoRows) {
		return ""
	}
	if err != nil {
		t.Fatal(err)
	}
	var r units.Route
	if err := json.Unmarshal(value, &r); err != nil {
		t.Fatalf("route of %s: %q: %v", conv, value, err)
	}
	return r.Unit
}

// httpSend sends one message over the HTTP API and returns the stored
// message, or the client error.
func httpSend(ctx context.Context, base, tok, to, conv, cmid, body string) (seq uint64, id string, err error) {
	req, _ := json.Marshal(map[string]string{"to": to, "conv": conv, "cmid": cmid, "body": body})
	var out struct {
		ID  string `json:"id"`
		Seq uint64 `json:"seq"`
	}
	err = client.DoJSON(ctx, http.MethodPost, base+"/v1/messages", tok, req, &out)
	return out.Seq, out.ID, err
}

func directConv(a, b string) string {
	if b < a {
		a, b = b, a
	}
	return "d:" + a + "~" + b
}

// TestUnits runs two units on one machine, onprem on postgres-rabbitmq
// and cloud on redis, each with its own daprd, sharing one route table.
func TestUnits(t *testing.T) {
	env := startUnits(t)
	t.Run("chat_both_ways", func(t *testing.T) { testUnitsChat(t, env) })
	t.Run("group_both_ways", func(t *testing.T) { testUnitsGroup(t, env) })
	t.Run("service_both_ways", func(t *testing.T) { testUnitsService(t, env) })
	t.Run("bind_race", func(t *testing.T) { testUnitsBindRace(t, env) })
	t.Run("burst", func(t *testing.T) { testUnitsBurst(t, env) })
	t.Run("latency", func(t *testing.T) { testUnitsLatency(t, env) })
	t.Run("move_busy", func(t *testing.T) { testUnitsMove(t, env) })
	// Last: they kill a sidecar.
	t.Run("local_pending", func(t *testing.T) { testUnitsPending(t, env) })
	t.Run("home_unit_killed", func(t *testing.T) { testUnitsKill(t, env) })
	t.Run("home_parley_killed", func(t *testing.T) { testUnitsParleyKilled(t, env) })
}

// testUnitsChat: a user on onprem and a user on cloud chat in a direct
// conversation homed in each unit in turn. Every device, on either unit,
// gets every message once in one gap-free order, and history, sync, read
// cursors and the listing read the same from both sides.
func testUnitsChat(t *testing.T, env *unitsEnv) {
	for _, home := range []*unitEnv{env.onprem, env.cloud} {
		t.Run("homed_in_"+home.name, func(t *testing.T) {
			ctx := ctxT(t, 2*time.Minute)
			a, b := daprdtest.UniqueName("ann"), daprdtest.UniqueName("ben")
			conv := directConv(a, b)
			aOn := connectDevice(t, env.onprem.node(), a, "web")
			aCloud := connectDevice(t, env.cloud.node(), a, "phone")
			bCloud := connectDevice(t, env.cloud.node(), b, "web")
			var mu sync.Mutex
			acked := map[uint64]string{}
			send := func(d *device, to, cmid string) {
				m, err := d.c.Send(ctx, to, "", cmid, "hello from "+d.name)
				if err != nil {
					t.Fatalf("%s sends: %v", d.name, err)
				}
				mu.Lock()
				acked[m.Seq] = m.Id
				mu.Unlock()
				d.inbox.Add(m)
			}
			// The first message binds the conversation where it is sent.
			if home == env.onprem {
				send(aOn, b, "first")
			} else {
				send(bCloud, a, "first")
			}
			if got := homeOf(t, ctx, conv); got != home.name {
				t.Fatalf("%s is homed in %q, want %s", conv, got, home.name)
			}
			var wg sync.WaitGroup
			for _, s := range []struct {
				d  *device
				to string
			}{{aOn, b}, {bCloud, a}, {aCloud, b}} {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := range 8 {
						send(s.d, s.to, fmt.Sprintf("%s-%d", s.d.name, i))
					}
				}()
			}
			wg.Wait()
			for _, d := range []*device{aOn, aCloud, bCloud} {
				waitInbox(t, d, conv, len(acked), 30*time.Second)
				checkComplete(t, d, conv, acked)
			}
			// Sync from either side gives the same gap-free log.
			for _, d := range []*device{aOn, bCloud} {
				msgs, err := d.c.Sync(ctx, conv, 0)
				if err != nil {
					t.Fatalf("%s syncs: %v", d.name, err)
				}
				if len(msgs) != len(acked) || msgs[len(msgs)-1].Seq != uint64(len(acked)) {
					t.Fatalf("%s synced %d messages, %d were ACKed", d.name, len(msgs), len(acked))
				}
			}
			// ben reads through cloud, ann through onprem; each one's
			// listing, through either unit, shows the cursor moved.
			last := uint64(len(acked))
			if seq, err := bCloud.c.MarkRead(ctx, conv, last); err != nil || seq != last {
				t.Fatalf("ben marks read through cloud: %d, %v", seq, err)
			}
			if seq, err := aOn.c.MarkRead(ctx, conv, last); err != nil || seq != last {
				t.Fatalf("ann marks read through onprem: %d, %v", seq, err)
			}
			for _, c := range []struct {
				d    *device
				read uint64
			}{{bCloud, last}, {aOn, last}, {aCloud, last}} {
				convs, err := c.d.c.Conversations(ctx)
				if err != nil {
					t.Fatal(err)
				}
				i := slices.IndexFunc(convs, func(pc *pb.Conversation) bool { return pc.Id == conv })
				if i < 0 || convs[i].LastSeq != last || convs[i].ReadSeq != c.read {
					t.Fatalf("%s's listing: %v, want %s at %d read to %d", c.d.name, convs, conv, last, c.read)
				}
			}
		})
	}
}

// testUnitsBindRace: both units bind the same new direct conversation at
// the same moment, many times; each time there is one home, and the two
// first messages share its seq order.
func testUnitsBindRace(t *testing.T, env *unitsEnv) {
	ctx := ctxT(t, 2*time.Minute)
	for i := range 15 {
		a, b := daprdtest.UniqueName("rx"), daprdtest.UniqueName("ry")
		conv := directConv(a, b)
		ta, tb := token(t, env.onprem.node(), a), token(t, env.cloud.node(), b)
		var seqs [2]uint64
		var errs [2]error
		var wg sync.WaitGroup
		wg.Add(2)
		go func() {
			defer wg.Done()
			seqs[0], _, errs[0] = httpSend(ctx, env.onprem.parley.base, ta, b, "", "x", "race")
		}()
		go func() {
			defer wg.Done()
			seqs[1], _, errs[1] = httpSend(ctx, env.cloud.parley.base, tb, a, "", "y", "race")
		}()
		wg.Wait()
		if errs[0] != nil || errs[1] != nil {
			t.Fatalf("race %d: %v, %v", i, errs[0], errs[1])
		}
		if !(seqs[0] == 1 && seqs[1] == 2 || seqs[0] == 2 && seqs[1] == 1) {
			t.Fatalf("race %d: seqs %v: two homes", i, seqs)
		}
		if h := homeOf(t, ctx, conv); h != "onprem" && h != "cloud" {
			t.Fatalf("race %d: home %q", i, h)
		}
	}
}

// testUnitsBurst: flipping the burst setting makes new conversations bind
// to cloud, wherever they start; conversations bound before keep their
// home.
func testUnitsBurst(t *testing.T, env *unitsEnv) {
	ctx := ctxT(t, 2*time.Minute)
	a := daprdtest.UniqueName("burst")
	ta := token(t, env.onprem.node(), a)
	old := daprdtest.UniqueName("old")
	if _, _, err := httpSend(ctx, env.onprem.parley.base, ta, old, "", "before", "before the burst"); err != nil {
		t.Fatal(err)
	}
	if h := homeOf(t, ctx, directConv(a, old)); h != "onprem" {
		t.Fatalf("before the burst, a conversation started on onprem is homed in %q", h)
	}
	for _, u := range []*unitEnv{env.onprem, env.cloud} {
		if err := u.setConfig(ctx, env.prefix+"parley.units.bind_to", "cloud"); err != nil {
			t.Fatal(err)
		}
	}
	// The setting reaches the node through a watch: new conversations
	// bind to cloud once it has.
	n := 0
	testkit.Eventually(t, 20*time.Second, func() bool {
		n++
		peer := fmt.Sprintf("%s-new%d", a, n)
		if _, _, err := httpSend(ctx, env.onprem.parley.base, ta, peer, "", fmt.Sprint("new", n), "during the burst"); err != nil {
			t.Fatal(err)
		}
		return homeOf(t, ctx, directConv(a, peer)) == "cloud"
	}, "new conversations started on onprem still bind to onprem after bind_to=cloud")
	seq, _, err := httpSend(ctx, env.onprem.parley.base, ta, old, "", "after", "after the burst")
	if err != nil || seq != 2 {
		t.Fatalf("the old conversation during the burst: seq %d, %v", seq, err)
	}
	if h := homeOf(t, ctx, directConv(a, old)); h != "onprem" {
		t.Fatalf("the old conversation moved to %q", h)
	}
	for _, u := range []*unitEnv{env.onprem, env.cloud} {
		if err := u.setConfig(ctx, env.prefix+"parley.units.bind_to", ""); err != nil {
			t.Fatal(err)
		}
	}
}

// testUnitsLatency measures send → deliver for a conversation homed in the
// other unit and for one homed locally, both between devices on onprem,
// and the rate of sends to a conversation homed in the other unit.
func testUnitsLatency(t *testing.T, env *unitsEnv) {
	ctx := ctxT(t, 2*time.Minute)
	const n = 100
	// pair is a sender and a receiver, both on onprem, in a conversation
	// homed in homeIn.
	type pair struct {
		conv, to string
		sender   *device
		receiver *client.Client
		took     []time.Duration
	}
	newPair := func(homeIn *unitEnv) *pair {
		a, b := daprdtest.UniqueName("lat"), daprdtest.UniqueName("lat")
		p := &pair{conv: directConv(a, b), to: b, sender: connectDevice(t, env.onprem.node(), a, "web"),
			receiver: dial(t, env.onprem.node(), b, "web")}
		// The first message, sent through the home unit, binds it there.
		if _, _, err := httpSend(ctx, homeIn.parley.base, token(t, homeIn.node(), a), b, "", "bind", "bind"); err != nil {
			t.Fatal(err)
		}
		return p
	}
	// roundTrip sends one message and waits for its push to the receiver.
	roundTrip := func(p *pair, i int) {
		cmid := fmt.Sprint("m", i)
		start := time.Now()
		if _, err := p.sender.c.Send(ctx, p.to, "", cmid, "ping"); err != nil {
			t.Fatal(err)
		}
		for {
			select {
			case m := <-p.receiver.Messages:
				if m.Conv != p.conv || m.Cmid != cmid {
					continue
				}
			case <-ctx.Done():
				t.Fatalf("message %d of %s not delivered", i, p.conv)
			}
			break
		}
		p.took = append(p.took, time.Since(start))
	}
	local, remote := newPair(env.onprem), newPair(env.cloud)
	// Interleaved, so that both see the same load on the machine.
	for i := range n {
		roundTrip(local, i)
		roundTrip(remote, i)
	}
	pct := func(d []time.Duration, p int) time.Duration {
		slices.Sort(d)
		return d[len(d)*p/100]
	}
	t.Logf("send→deliver between two devices on onprem, %d sends each: homed on onprem p50 %v p99 %v; homed on cloud p50 %v p99 %v",
		n, pct(local.took, 50), pct(local.took, 99), pct(remote.took, 50), pct(remote.took, 99))

	// Throughput: 4 senders on onprem, each to its own conversation homed
	// on cloud.
	const senders, each = 4, 100
	var wg sync.WaitGroup
	start := time.Now()
	for s := range senders {
		a, b := daprdtest.UniqueName("tp"), daprdtest.UniqueName("tp")
		d := dial(t, env.onprem.node(), a, "web")
		if _, _, err := httpSend(ctx, env.cloud.parley.base, token(t, env.cloud.node(), b), a, "", "bind", "bind"); err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				if _, err := d.Send(ctx, b, "", fmt.Sprint(s, "-", i), "load"); err != nil {
					t.Errorf("sender %d: %v", s, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	el := time.Since(start)
	t.Logf("cross-unit sends: %d ACKed in %v: %.0f msg/s (onprem → cloud home, %d senders)", senders*each, el.Round(time.Millisecond),
		float64(senders*each)/el.Seconds(), senders)
}

// testUnitsKill: the home unit's daprd is killed with SIGKILL while a user
// on the other unit sends. Sends get unit_unavailable, retryable, until it
// is back; then they go through, and no ACKed message is lost, none is
// stored twice, and the seqs have no gap.
func testUnitsKill(t *testing.T, env *unitsEnv) {
	testUnitsKillWith(t, env, "cloud's daprd", env.cloud.sidecar.Kill, env.cloud.sidecar.Restart)
}

// testUnitsParleyKilled: as testUnitsKill, with the home unit's parley
// process killed with SIGKILL instead of its daprd, and started again.
func testUnitsParleyKilled(t *testing.T, env *unitsEnv) {
	testUnitsKillWith(t, env, "cloud's parley", env.cloud.parley.kill, func(context.Context) error {
		env.cloud.parley.launch(t)
		return nil
	})
}

// testUnitsKillWith kills part of the home unit with kill mid-traffic and
// brings it back with restart.
func testUnitsKillWith(t *testing.T, env *unitsEnv, what string, kill func(), restart func(context.Context) error) {
	ctx := ctxT(t, 3*time.Minute)
	a, b := daprdtest.UniqueName("kx"), daprdtest.UniqueName("ky")
	conv := directConv(a, b)
	bCloud := connectDevice(t, env.cloud.node(), b, "web")
	first, err := bCloud.c.Send(ctx, a, "", "b0", "homed on cloud")
	if err != nil {
		t.Fatal(err)
	}
	acked := map[uint64]string{first.Seq: first.Id}
	ta := token(t, env.onprem.node(), a)
	var codes []string
	killed, restarted := false, false
	for i := 0; len(acked) < 60; i++ {
		if i > 600 {
			t.Fatalf("%d messages ACKed after %d tries; errors: %v", len(acked), i, codes)
		}
		cmid := fmt.Sprint("a", len(acked))
		if len(acked) == 20 && !killed {
			kill()
			killed = true
		}
		seq, id, err := httpSend(ctx, env.onprem.parley.base, ta, b, "", cmid, "mid-traffic")
		var ce *client.Error
		switch {
		case err == nil:
			acked[seq] = id
		case errors.As(err, &ce) && ce.Retryable:
			codes = append(codes, ce.Code)
			if killed && !restarted && len(codes) >= 3 {
				if err := restart(ctx); err != nil {
					t.Fatalf("restart %s: %v", what, err)
				}
				restarted = true
			}
			pause(ctx, 100*time.Millisecond) // the client's retry backoff; same cmid
		default:
			t.Fatalf("send %s: %v", cmid, err)
		}
	}
	if !restarted {
		t.Fatalf("no send failed while %s was down", what)
	}
	if !slices.Contains(codes, "unit_unavailable") {
		t.Fatalf("errors while the home unit was down: %v, want unit_unavailable", codes)
	}
	t.Logf("while %s was down: %d retryable errors (%v)", what, len(codes), slices.Compact(slices.Clone(codes)))
	// Both sides read the same log: every ACKed message, once, no gap.
	for _, base := range []string{env.onprem.parley.base, env.cloud.parley.base} {
		var page struct {
			Messages []struct {
				ID  string `json:"id"`
				Seq uint64 `json:"seq"`
			} `json:"messages"`
		}
		if err := client.DoJSON(ctx, http.MethodGet, base+"/v1/conversations/"+conv+"/messages?limit=200", ta, nil, &page); err != nil {
			t.Fatal(err)
		}
		if len(page.Messages) != len(acked) {
			t.Errorf("%s: history holds %d messages, %d were ACKed", base, len(page.Messages), len(acked))
		}
		for i, m := range page.Messages {
			if m.Seq != uint64(i+1) {
				t.Fatalf("%s: position %d holds seq %d: gap", base, i, m.Seq)
			}
			if acked[m.Seq] != m.ID {
				t.Errorf("%s: seq %d is %s, the ACK said %s", base, m.Seq, m.ID, acked[m.Seq])
			}
		}
	}
}

// TestUnitsThroughGateway: onprem reaches cloud as a unit in another
// cluster is reached, through an HTTPEndpoint to cloud's daprd HTTP API
// with the API token. Chat both ways, in conversations homed in each unit,
// works as on one machine, and a move goes through it too.
func TestUnitsThroughGateway(t *testing.T) {
	env := startUnitsWith(t, unitsSetup{gateway: true})
	t.Run("chat_both_ways", func(t *testing.T) { testUnitsChat(t, env) })
	t.Run("move_busy", func(t *testing.T) { testUnitsMove(t, env) })
}

// TestUnitComponentsShareTheRouteStore: every unit's folder in
// components/units holds the same routes component, so that all units
// read and bind one route table, and a resiliency policy for its peers.
func TestUnitComponentsShareTheRouteStore(t *testing.T) {
	t.Parallel()
	root, err := testkit.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	dirs, err := filepath.Glob(filepath.Join(root, "components", "units", "*"))
	if err != nil || len(dirs) < 2 {
		t.Fatalf("unit folders: %v, %v", dirs, err)
	}
	var first []byte
	for _, d := range dirs {
		routes, err := os.ReadFile(filepath.Join(d, "routes.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(routes), "value: \"none\"") {
			t.Errorf("%s/routes.yaml: keyPrefix is not none; each unit would see only its own routes", d)
		}
		if first == nil {
			first = routes
		} else if string(routes) != string(first) {
			t.Errorf("%s/routes.yaml differs from %s/routes.yaml: the units would not share one route table", d, dirs[0])
		}
		res, err := os.ReadFile(filepath.Join(d, "resiliency.yaml"))
		if err != nil || !strings.Contains(string(res), "kind: Resiliency") {
			t.Errorf("%s: no resiliency for calls to other units: %v", d, err)
		}
	}
}
