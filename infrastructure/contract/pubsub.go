package contract

import (
	"context"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/parley-im/parley/infrastructure"
	"github.com/parley-im/parley/tools/testkit"
)

// collector gathers the payloads a subscription received.
type collector struct {
	mu   sync.Mutex
	seen map[string]int
	ch   chan string
}

func newCollector() *collector {
	return &collector{seen: make(map[string]int), ch: make(chan string, 1024)}
}

func (c *collector) add(s string) {
	c.mu.Lock()
	c.seen[s]++
	c.mu.Unlock()
	select {
	case c.ch <- s:
	default:
	}
}

func (c *collector) count(s string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.seen[s]
}

// waitAll waits until every payload in want arrived at least once.
func (c *collector) waitAll(t *testing.T, want []string, d time.Duration) {
	t.Helper()
	var missing []string
	ctx, cancel := context.WithTimeout(t.Context(), d)
	defer cancel()
	if testkit.Until(ctx, func() bool {
		missing = missing[:0]
		for _, w := range want {
			if c.count(w) == 0 {
				missing = append(missing, w)
			}
		}
		return len(missing) == 0
	}) != nil {
		t.Fatalf("after %v, %d of %d messages never arrived, e.g. %q", d, len(missing), len(want), missing[0])
	}
}

// WaitSubscribed publishes probes on topic until one comes back through c.
// Brokers attach a subscription asynchronously, and a message published
// before that is lost on non-durable brokers; probes make the start certain.
func WaitSubscribed(t *testing.T, ps infrastructure.PubSub, topic string, arrived func(probe string) bool) {
	t.Helper()
	ctx := ctxFor(t, 30*time.Second)
	for i := 0; ; i++ {
		probe := "probe-" + unique("p")
		if err := ps.Publish(ctx, topic, []byte(probe)); err != nil {
			t.Fatalf("publish probe: %v", err)
		}
		// Half a second per probe, then a new one: the first may have been
		// published before the subscription was attached.
		wait, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
		err := testkit.Until(wait, func() bool { return arrived(probe) })
		cancel()
		if err == nil {
			return
		}
		if ctx.Err() != nil {
			t.Fatalf("subscription on %s never received a probe", topic)
		}
	}
}

func subscribe(t *testing.T, ps infrastructure.PubSub, topic string, h infrastructure.Handler) {
	t.Helper()
	sub, err := ps.Subscribe(context.Background(), topic, h)
	if err != nil {
		t.Fatalf("subscribe %s: %v", topic, err)
	}
	t.Cleanup(func() {
		if err := sub.Close(); err != nil {
			t.Errorf("close subscription: %v", err)
		}
	})
}

func runPubSub(t *testing.T, f Factory) {
	ps := f.Backend.PubSub
	t.Run("publish_and_bulk_publish_reach_subscriber", func(t *testing.T) {
		t.Parallel()
		topic := unique("topic")
		c := newCollector()
		subscribe(t, ps, topic, func(_ context.Context, m *infrastructure.Message) infrastructure.Outcome {
			if m.Topic != "" && m.Topic != topic {
				t.Errorf("message for topic %q delivered on %q", m.Topic, topic)
			}
			c.add(string(m.Data))
			return infrastructure.Success
		})
		WaitSubscribed(t, ps, topic, func(p string) bool { return c.count(p) > 0 })
		ctx := ctxFor(t, 60*time.Second)
		var want []string
		for i := range 20 {
			msg := unique("single") + "-" + string(rune('a'+i))
			want = append(want, msg)
			if err := ps.Publish(ctx, topic, []byte(msg)); err != nil {
				t.Fatalf("publish: %v", err)
			}
		}
		var bulk [][]byte
		for range 20 {
			msg := unique("bulk")
			want = append(want, msg)
			bulk = append(bulk, []byte(msg))
		}
		if err := ps.BulkPublish(ctx, topic, bulk); err != nil {
			t.Fatalf("bulk publish: %v", err)
		}
		c.waitAll(t, want, 30*time.Second)
	})
	t.Run("retry_redelivers_and_drop_does_not", func(t *testing.T) {
		t.Parallel()
		topic := unique("topic-retry")
		c := newCollector()
		var mu sync.Mutex
		attempts := map[string]int{}
		subscribe(t, ps, topic, func(_ context.Context, m *infrastructure.Message) infrastructure.Outcome {
			body := string(m.Data)
			mu.Lock()
			attempts[body]++
			n := attempts[body]
			mu.Unlock()
			switch {
			case strings.HasPrefix(body, "retry-") && n == 1:
				return infrastructure.Retry
			case strings.HasPrefix(body, "drop-"):
				c.add(body)
				return infrastructure.Drop
			}
			c.add(body)
			return infrastructure.Success
		})
		WaitSubscribed(t, ps, topic, func(p string) bool { return c.count(p) > 0 })
		ctx := ctxFor(t, 60*time.Second)
		retry, drop, after := unique("retry"), unique("drop"), unique("after")
		for _, m := range []string{retry, drop} {
			if err := ps.Publish(ctx, topic, []byte(m)); err != nil {
				t.Fatal(err)
			}
		}
		c.waitAll(t, []string{retry, drop}, 45*time.Second)
		mu.Lock()
		if attempts[retry] < 2 {
			t.Errorf("a message answered with Retry was delivered %d times, want at least 2", attempts[retry])
		}
		mu.Unlock()
		// Give a wrong redelivery of the dropped message time to show up.
		if err := ps.Publish(ctx, topic, []byte(after)); err != nil {
			t.Fatal(err)
		}
		c.waitAll(t, []string{after}, 30*time.Second)
		// A sleep on purpose: what is checked is that nothing more arrives,
		// and there is no event to wait on for an absence.
		time.Sleep(2 * time.Second)
		mu.Lock()
		defer mu.Unlock()
		if attempts[drop] != 1 {
			t.Errorf("a message answered with Drop was delivered %d times, want 1", attempts[drop])
		}
	})
}

func runInvoke(t *testing.T, f Factory) {
	inv := f.Backend.Invoker
	method := unique("echo")
	if err := inv.Serve(method, func(_ context.Context, in []byte) ([]byte, error) {
		return append([]byte("echo:"), in...), nil
	}); err != nil {
		t.Fatalf("serve: %v", err)
	}
	t.Run("invoke_own_method_round_trips", func(t *testing.T) {
		ctx := ctxFor(t, 30*time.Second)
		out, err := inv.Invoke(ctx, f.AppID, method, []byte(`{"x":1}`))
		if err != nil {
			t.Fatalf("invoke %s/%s: %v", f.AppID, method, err)
		}
		if string(out) != `echo:{"x":1}` {
			t.Fatalf("reply = %q", out)
		}
	})
	t.Run("unknown_method_fails", func(t *testing.T) {
		ctx := ctxFor(t, 30*time.Second)
		_, err := inv.Invoke(ctx, f.AppID, unique("nope"), nil)
		if err == nil {
			t.Fatal("invoking an unknown method succeeded")
		}
	})
}

func runConfig(t *testing.T, f Factory) {
	cs := f.Backend.Config
	ctx := ctxFor(t, 60*time.Second)
	// Configuration keys allow letters, digits, '.', '/' and '_' only
	// (PostgreSQL's store enforces it), so no '-'.
	k := strings.ReplaceAll(unique("cfg"), "-", "_")
	if err := f.SetConfig(ctx, k, "v1"); err != nil {
		t.Fatalf("set config: %v", err)
	}
	got, err := cs.Get(ctx, k, strings.ReplaceAll(unique("cfg_missing"), "-", "_"))
	if err != nil {
		t.Fatalf("get config: %v", err)
	}
	if len(got) != 1 || got[k] != "v1" {
		t.Fatalf("get config = %v, want only %s=v1", got, k)
	}
	changes := make(chan map[string]string, 16)
	stop, err := cs.Watch(ctx, []string{k}, func(m map[string]string) { changes <- m })
	if err != nil {
		t.Fatalf("watch: %v", err)
	}
	defer stop()
	// A watch may attach asynchronously: keep writing new values until one
	// is seen, then require that the last value written arrives.
	deadline := time.After(30 * time.Second)
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	n := 2
	want := "v2"
	if err := f.SetConfig(ctx, k, want); err != nil {
		t.Fatal(err)
	}
	for {
		select {
		case m := <-changes:
			if m[k] == want {
				return
			}
		case <-tick.C:
			n++
			want = "v" + strconv.Itoa(n)
			if err := f.SetConfig(ctx, k, want); err != nil {
				t.Fatal(err)
			}
		case <-deadline:
			t.Fatalf("no change of %s seen within 30s (last written %s)", k, want)
		}
	}
}
