package dapr_test

import (
	"context"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/parley-im/parley/infrastructure"
	"github.com/parley-im/parley/infrastructure/dapr/daprd/daprdtest"
	"github.com/parley-im/parley/tools/testkit"
)

// received records payloads, counting duplicates, which at-least-once
// delivery allows.
type received struct {
	mu   sync.Mutex
	seen map[string]int
}

func (r *received) handler(_ context.Context, m *infrastructure.Message) infrastructure.Outcome {
	r.mu.Lock()
	r.seen[string(m.Data)]++
	r.mu.Unlock()
	return infrastructure.Success
}

func (r *received) has(payload string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.seen[payload] > 0
}

func (r *received) missing(want []string) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, w := range want {
		if r.seen[w] == 0 {
			out = append(out, w)
		}
	}
	return out
}

// waitFor checks cond until it holds or d passes.
func waitFor(d time.Duration, cond func() bool) bool {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	return testkit.Until(ctx, cond) == nil
}

// TestAtLeastOnceAcrossSidecarRestart kills the subscriber's daprd, publishes
// through another daprd of the same app-id, restarts the subscriber's
// daprd and expects every message: the broker keeps them, and the adapter
// re-subscribes by itself, with no help from the test.
func TestAtLeastOnceAcrossSidecarRestart(t *testing.T) {
	const n = 50
	// mysql-mqtt is not among them. Checked by hand with daprd 1.18.2 and
	// Mosquitto 2.0: the broker keeps the messages and delivers them when
	// the restarted daprd reconnects, before any subscription route exists,
	// and the mqtt3 component never acknowledges them, so they stay in
	// flight until the next reconnection (components/mysql-mqtt/pubsub.yaml).
	for _, p := range daprdtest.Profiles() {
		if !p.Durable {
			continue
		}
		t.Run(p.Name, func(t *testing.T) {
			appID := daprdtest.UniqueName("parley-restart")
			a := startNode(t, p.Name, daprdtest.WithAppID(appID))
			b := startNode(t, p.Name, daprdtest.WithAppID(appID))
			topic := daprdtest.UniqueName("restart")
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()

			got := &received{seen: map[string]int{}}
			sub, err := b.client.Backend().PubSub.Subscribe(ctx, topic, got.handler)
			if err != nil {
				t.Fatalf("subscribe through daprd B: %v", err)
			}
			defer sub.Close()

			// The broker attaches B's subscription asynchronously; a probe
			// that comes back proves the queue or consumer group exists.
			pubA := a.client.Backend().PubSub
			probed := false
			for attempt := 0; attempt < 40 && !probed; attempt++ {
				probe := "probe-" + strconv.Itoa(attempt)
				if err := pubA.Publish(ctx, topic, []byte(probe)); err != nil {
					t.Fatalf("publish probe through daprd A: %v", err)
				}
				probed = waitFor(500*time.Millisecond, func() bool { return got.has(probe) })
			}
			if !probed {
				t.Fatal("daprd B never received a probe published through daprd A")
			}

			b.sidecar.Kill()

			want := make([]string, n)
			for i := range want {
				want[i] = topic + "-msg-" + strconv.Itoa(i)
				if err := pubA.Publish(ctx, topic, []byte(want[i])); err != nil {
					t.Fatalf("publish %d through daprd A while B is down: %v", i, err)
				}
			}

			if err := b.sidecar.Restart(ctx); err != nil {
				t.Fatalf("restart daprd B: %v", err)
			}
			if !waitFor(60*time.Second, func() bool { return len(got.missing(want)) == 0 }) {
				m := got.missing(want)
				t.Fatalf("%d of %d messages published while daprd B was down never arrived after its restart, e.g. %q", len(m), n, m[0])
			}
		})
	}
}

// TestConfigWatchSurvivesSidecarRestart kills daprd under a configuration
// watch, changes the setting while it is down, and expects the watch to
// report that change after the restart, then later ones through the new
// stream.
func TestConfigWatchSurvivesSidecarRestart(t *testing.T) {
	for _, name := range []string{daprdtest.Redis, daprdtest.PostgresRabbitMQ, daprdtest.JetStream} {
		t.Run(name, func(t *testing.T) {
			n := startNode(t, name)
			set := daprdtest.ConfigSetter(t, name)
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			// Configuration keys keep to [a-zA-Z0-9./_] in every profile.
			key := strings.ReplaceAll(daprdtest.UniqueName("parley_cfg"), "-", "_")
			if err := set(ctx, key, "v1"); err != nil {
				t.Fatal(err)
			}
			got, err := n.client.Backend().Config.Get(ctx, key, key+"_missing")
			if err != nil || len(got) != 1 || got[key] != "v1" {
				t.Fatalf("get = %v, %v; want only %s=v1", got, err, key)
			}

			changes := make(chan string, 64)
			stop, err := n.client.Backend().Config.Watch(ctx, []string{key}, func(m map[string]string) {
				if v, ok := m[key]; ok {
					changes <- v
				}
			})
			if err != nil {
				t.Fatalf("watch: %v", err)
			}
			defer stop()

			// expect writes value until the watch reports it; the first
			// write may race the store attaching its listener.
			expect := func(value string, rewrite bool) {
				t.Helper()
				tick := time.NewTicker(time.Second)
				defer tick.Stop()
				for {
					select {
					case v := <-changes:
						if v == value {
							return
						}
					case <-tick.C:
						if rewrite {
							if err := set(ctx, key, value); err != nil {
								t.Fatal(err)
							}
						}
					case <-ctx.Done():
						t.Fatalf("watch never reported %s=%s", key, value)
					}
				}
			}
			if err := set(ctx, key, "v2"); err != nil {
				t.Fatal(err)
			}
			expect("v2", true)

			n.sidecar.Kill()
			if err := set(ctx, key, "v3"); err != nil {
				t.Fatal(err)
			}
			if err := n.sidecar.Restart(ctx); err != nil {
				t.Fatalf("restart daprd: %v", err)
			}
			expect("v3", false) // caught up from a read, not re-written

			if err := set(ctx, key, "v4"); err != nil {
				t.Fatal(err)
			}
			expect("v4", true)
		})
	}
}
