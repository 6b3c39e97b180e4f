package settings_test

import (
	"context"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/parley-im/parley/app/settings"
	"github.com/parley-im/parley/infrastructure/memory"
	"github.com/parley-im/parley/tools/testkit"
)

func TestApplyKeepsOldValueOnBadInput(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name    string
		kv      map[string]string
		check   func(settings.Settings) bool
		wantErr bool
	}{
		{"ack_timeout", map[string]string{"parley.ack_timeout_ms": "500"}, func(s settings.Settings) bool { return s.AckTimeout == 500*time.Millisecond }, false},
		{"body_limit", map[string]string{"parley.max_body_bytes": "100"}, func(s settings.Settings) bool { return s.MaxBodyBytes == 100 }, false},
		{"not_a_number", map[string]string{"parley.ack_tries": "three"}, func(s settings.Settings) bool { return s.AckTries == 3 }, true},
		{"out_of_range", map[string]string{"parley.max_body_bytes": "0"}, func(s settings.Settings) bool { return s.MaxBodyBytes == 16<<10 }, true},
		{"unknown_key_ignored", map[string]string{"other": "1"}, func(s settings.Settings) bool { return s == settings.Defaults() }, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			s, errs := settings.Defaults().Apply(c.kv)
			if !c.check(s) || (len(errs) > 0) != c.wantErr {
				t.Fatalf("Apply(%v) = %+v, %v", c.kv, s, errs)
			}
		})
	}
}

func TestLiveFollowsStore(t *testing.T) {
	t.Parallel()
	store := memory.NewConfigStore(map[string]string{"parley.ack_tries": "5"})
	live := settings.NewLive(settings.Defaults())
	stop, err := live.Follow(context.Background(), store, zap.NewNop(), "")
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	if live.Load().AckTries != 5 {
		t.Fatalf("initial value not read: %+v", live.Load())
	}
	store.Set(map[string]string{"parley.ack_tries": "7"})
	testkit.Eventually(t, 5*time.Second, func() bool { return live.Load().AckTries == 7 }, "change not applied within 5s")
}

// TestAbuseSettings: the parley.abuse.* keys set the guard's rules, bad
// values keep the old ones, and OnChange listeners see every update.
func TestAbuseSettings(t *testing.T) {
	t.Parallel()
	l := settings.NewLive(settings.Defaults())
	var seen []settings.AbuseRules
	l.OnChange(func(s settings.Settings) { seen = append(seen, s.Abuse) })
	errs := l.Update(map[string]string{
		"parley.abuse.window_s": "30", "parley.abuse.max_auth_failures": "3", "parley.abuse.first_ban_s": "5",
		"parley.abuse.disabled": "true", "parley.abuse.max_connects_per_ip": "0",
	})
	a := l.Load().Abuse
	if len(errs) != 1 || a.Window != 30*time.Second || a.MaxAuthFailures != 3 || a.FirstBan != 5*time.Second || !a.Disabled || a.MaxConnectsPerIP != 0 {
		t.Fatalf("got %+v, errors %v", a, errs)
	}
	if len(seen) != 1 || seen[0] != a {
		t.Fatalf("listener saw %+v", seen)
	}
}
