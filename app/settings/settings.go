// Package settings holds parley's live settings: limits, timeouts and
// switches that operators change at run time through the configuration
// interface, without a restart.
package settings

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/parley-im/parley/infrastructure"
)

// Settings is one immutable snapshot. Readers take it with Live.Load and
// never see a half-applied change.
type Settings struct {
	// MaxBodyBytes bounds a message body. Key parley.max_body_bytes, default 16384.
	MaxBodyBytes int
	// AckTimeout is how long a device has to acknowledge a pushed message
	// before it is sent again. Key parley.ack_timeout_ms, default 18s.
	AckTimeout time.Duration
	// AckTries is how many times a message is sent before the connection is
	// closed for the client to re-sync. Key parley.ack_tries, default 3.
	AckTries int
	// HeartbeatIdle is how long a connection may stay silent before the
	// server pings it. Key parley.heartbeat_idle_ms, default 25s.
	HeartbeatIdle time.Duration
	// SendRate is how many sends per second one user may make; bursts of
	// twice that are allowed. Key parley.send_rate_per_sec, default 50.
	SendRate float64
	// IdempotencyTTL is how long a client message id stays reserved.
	// Key parley.idempotency_ttl_s, default 24h.
	IdempotencyTTL time.Duration
	// HookTimeout bounds one call of the before-send hook.
	// Key parley.hook_timeout_ms, default 500ms.
	HookTimeout time.Duration
	// HookFailOpen lets messages through when the hook fails; false refuses
	// them as retryable. Key parley.hook_fail_open, default true.
	HookFailOpen bool
	// GroupMemberCap bounds a group's members. Key parley.group_member_cap,
	// default 10,000, from 2 to 100,000.
	GroupMemberCap int
	// RecallWindow is how long a sender may recall a message (the owner
	// and admins of a group may at any time). Key parley.recall_window_s,
	// default 2 minutes.
	RecallWindow time.Duration
	// EditWindow is how long a sender may edit a message. Key
	// parley.edit_window_s, default 15 minutes.
	EditWindow time.Duration
	// ReceiptsGroupMax is the largest group whose senders are told how
	// many members read their messages. Key parley.receipts_group_max,
	// default 500, from 0 (none) to 10,000.
	ReceiptsGroupMax int
	// GroupAckMax is the largest group whose pushes a device acknowledges
	// with recv and the server sends again until it does. Pushes of larger
	// groups carry no_ack: on a connection that stays up TCP delivers them
	// in order, and a device whose connection drops or falls behind syncs
	// from its last contiguous seq when it reconnects. A recv per member per
	// message was the largest cost of a big group's fan-out on both sides.
	// Key parley.group_ack_max, default 500, from 0 (no group pushes are
	// acknowledged) to 100,000.
	GroupAckMax int
	// PushInterval is the least time between two offline pushes to one
	// user for one conversation (package push); the messages in between
	// are not pushed. Key parley.push_interval_s, default 30s, from 0
	// (every message) to 86400.
	PushInterval time.Duration
	// PushPreview is how many characters of a message's text an offline
	// push carries. Key parley.push_preview, default 0: no preview, so that
	// no message text reaches a push gateway unless an operator asks.
	// From 0 to 1000.
	PushPreview int
	// Abuse are the rules that suspend abusive users and addresses (see
	// package abuse). Keys parley.abuse.*; a zero field means the abuse
	// package's default.
	Abuse AbuseRules
}

// AbuseRules mirror abuse.Rules as live settings; zero means the default.
type AbuseRules struct {
	// Window over which events are counted. Key parley.abuse.window_s
	// (1 to 3600; default 60).
	Window time.Duration
	// MaxConnectsPerUser: key parley.abuse.max_connects_per_user (1 to
	// 100000; default 30).
	MaxConnectsPerUser int
	// MaxConnectsPerIP: key parley.abuse.max_connects_per_ip (1 to
	// 1000000; default 300).
	MaxConnectsPerIP int
	// MaxAuthFailures: key parley.abuse.max_auth_failures (1 to 100000;
	// default 10).
	MaxAuthFailures int
	// MaxRateLimited: key parley.abuse.max_rate_limited (1 to 100000;
	// default 30).
	MaxRateLimited int
	// MaxBannedAttempts: key parley.abuse.max_banned_attempts (1 to
	// 100000; default 5).
	MaxBannedAttempts int
	// FirstBan: key parley.abuse.first_ban_s (1 to 86400; default 60).
	FirstBan time.Duration
	// MaxBan: key parley.abuse.max_ban_s (1 to 2592000, at least
	// first_ban_s; default 86400).
	MaxBan time.Duration
	// Forget: key parley.abuse.forget_s (60 to 2592000; default 86400).
	Forget time.Duration
	// Disabled stops counting and automatic suspensions; suspensions in
	// force are still enforced. Key parley.abuse.disabled (true or false;
	// default false).
	Disabled bool
}

// Keys are the configuration keys parley watches.
var Keys = []string{
	"parley.max_body_bytes", "parley.ack_timeout_ms", "parley.ack_tries",
	"parley.heartbeat_idle_ms", "parley.send_rate_per_sec", "parley.idempotency_ttl_s",
	"parley.hook_timeout_ms", "parley.hook_fail_open",
	"parley.group_member_cap", "parley.recall_window_s", "parley.edit_window_s",
	"parley.receipts_group_max", "parley.group_ack_max", "parley.push_interval_s", "parley.push_preview",
	"parley.abuse.window_s", "parley.abuse.max_connects_per_user", "parley.abuse.max_connects_per_ip",
	"parley.abuse.max_auth_failures", "parley.abuse.max_rate_limited", "parley.abuse.max_banned_attempts",
	"parley.abuse.first_ban_s", "parley.abuse.max_ban_s", "parley.abuse.forget_s", "parley.abuse.disabled",
}

// Defaults returns the settings used for keys the store does not hold.
func Defaults() Settings {
	return Settings{
		MaxBodyBytes:     16 << 10,
		AckTimeout:       18 * time.Second,
		AckTries:         3,
		HeartbeatIdle:    25 * time.Second,
		SendRate:         50,
		IdempotencyTTL:   24 * time.Hour,
		HookTimeout:      500 * time.Millisecond,
		HookFailOpen:     true,
		GroupMemberCap:   10_000,
		RecallWindow:     2 * time.Minute,
		EditWindow:       15 * time.Minute,
		ReceiptsGroupMax: 500,
		GroupAckMax:      500,
		PushInterval:     30 * time.Second,
	}
}

// Apply returns s with the values in kv applied. A value that does not parse
// or is out of range is reported and leaves the old value in place, so a
// typo in the store never takes a limit away.
func (s Settings) Apply(kv map[string]string) (Settings, []error) {
	var errs []error
	intIn := func(key string, lo, hi int64, set func(int64)) {
		v, ok := kv[key]
		if !ok {
			return
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < lo || n > hi {
			errs = append(errs, fmt.Errorf("setting %s=%q ignored: want a whole number from %d to %d", key, v, lo, hi))
			return
		}
		set(n)
	}
	intIn("parley.max_body_bytes", 1, 1<<20, func(n int64) { s.MaxBodyBytes = int(n) })
	intIn("parley.ack_timeout_ms", 100, 600_000, func(n int64) { s.AckTimeout = time.Duration(n) * time.Millisecond })
	intIn("parley.ack_tries", 1, 100, func(n int64) { s.AckTries = int(n) })
	intIn("parley.heartbeat_idle_ms", 100, 600_000, func(n int64) { s.HeartbeatIdle = time.Duration(n) * time.Millisecond })
	intIn("parley.send_rate_per_sec", 1, 1_000_000, func(n int64) { s.SendRate = float64(n) })
	intIn("parley.idempotency_ttl_s", 1, 30*24*3600, func(n int64) { s.IdempotencyTTL = time.Duration(n) * time.Second })
	intIn("parley.hook_timeout_ms", 10, 60_000, func(n int64) { s.HookTimeout = time.Duration(n) * time.Millisecond })
	intIn("parley.group_member_cap", 2, 100_000, func(n int64) { s.GroupMemberCap = int(n) })
	intIn("parley.recall_window_s", 1, 30*24*3600, func(n int64) { s.RecallWindow = time.Duration(n) * time.Second })
	intIn("parley.edit_window_s", 1, 30*24*3600, func(n int64) { s.EditWindow = time.Duration(n) * time.Second })
	intIn("parley.receipts_group_max", 0, 10_000, func(n int64) { s.ReceiptsGroupMax = int(n) })
	intIn("parley.group_ack_max", 0, 100_000, func(n int64) { s.GroupAckMax = int(n) })
	intIn("parley.push_interval_s", 0, 24*3600, func(n int64) { s.PushInterval = time.Duration(n) * time.Second })
	intIn("parley.push_preview", 0, 1000, func(n int64) { s.PushPreview = int(n) })
	secs := func(d *time.Duration) func(int64) { return func(n int64) { *d = time.Duration(n) * time.Second } }
	num := func(v *int) func(int64) { return func(n int64) { *v = int(n) } }
	a := &s.Abuse
	intIn("parley.abuse.window_s", 1, 3600, secs(&a.Window))
	intIn("parley.abuse.max_connects_per_user", 1, 100_000, num(&a.MaxConnectsPerUser))
	intIn("parley.abuse.max_connects_per_ip", 1, 1_000_000, num(&a.MaxConnectsPerIP))
	intIn("parley.abuse.max_auth_failures", 1, 100_000, num(&a.MaxAuthFailures))
	intIn("parley.abuse.max_rate_limited", 1, 100_000, num(&a.MaxRateLimited))
	intIn("parley.abuse.max_banned_attempts", 1, 100_000, num(&a.MaxBannedAttempts))
	intIn("parley.abuse.first_ban_s", 1, 24*3600, secs(&a.FirstBan))
	intIn("parley.abuse.max_ban_s", 1, 30*24*3600, secs(&a.MaxBan))
	intIn("parley.abuse.forget_s", 60, 30*24*3600, secs(&a.Forget))
	boolIn := func(key string, set func(bool)) {
		v, ok := kv[key]
		if !ok {
			return
		}
		switch v {
		case "true":
			set(true)
		case "false":
			set(false)
		default:
			errs = append(errs, fmt.Errorf("setting %s=%q ignored: want true or false", key, v))
		}
	}
	boolIn("parley.hook_fail_open", func(b bool) { s.HookFailOpen = b })
	boolIn("parley.abuse.disabled", func(b bool) { a.Disabled = b })
	return s, errs
}

// Live holds the current settings and follows the configuration store.
// The zero value is not usable; use NewLive. Safe for concurrent use.
type Live struct {
	cur atomic.Pointer[Settings]

	mu        sync.Mutex
	listeners []func(Settings)
	reloaded  func(refused int)
}

// NewLive starts at base.
func NewLive(base Settings) *Live {
	l := &Live{}
	l.cur.Store(&base)
	return l
}

// Load returns the current snapshot.
func (l *Live) Load() Settings { return *l.cur.Load() }

// Update applies kv to the current snapshot and tells the listeners of
// OnChange, in order, before it returns.
func (l *Live) Update(kv map[string]string) []error {
	l.mu.Lock()
	defer l.mu.Unlock()
	next, errs := l.cur.Load().Apply(kv)
	l.cur.Store(&next)
	for _, fn := range l.listeners {
		fn(next)
	}
	if l.reloaded != nil {
		l.reloaded(len(errs))
	}
	return errs
}

// OnReload calls fn after every Update from now on with how many of its
// values were refused, for the settings-reload metric. Like OnChange's
// listeners, fn runs under the lock that orders updates. Only one fn is
// kept: a second call replaces the first.
func (l *Live) OnReload(fn func(refused int)) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.reloaded = fn
}

// OnChange calls fn with every snapshot that Update makes from now on, for
// components that hold a copy of their settings (the abuse guard's rules).
// fn runs under the lock that orders updates: it must be quick and must not
// call Update.
func (l *Live) OnChange(fn func(Settings)) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.listeners = append(l.listeners, fn)
}

// Follow reads the keys from store once and then watches them until ctx
// ends. prefix is prepended to every key in the store, so that several
// deployments can share one configuration store. The returned stop function
// ends the watch.
func (l *Live) Follow(ctx context.Context, store infrastructure.ConfigStore, log *zap.Logger, prefix string) (stop func(), err error) {
	keys := make([]string, len(Keys))
	for i, k := range Keys {
		keys[i] = prefix + k
	}
	strip := func(kv map[string]string) map[string]string {
		out := make(map[string]string, len(kv))
		for k, v := range kv {
			out[strings.TrimPrefix(k, prefix)] = v
		}
		return out
	}
	kv, err := store.Get(ctx, keys...)
	if err != nil {
		return nil, fmt.Errorf("read live settings: %w", err)
	}
	for _, e := range l.Update(strip(kv)) {
		log.Warn("bad live setting", zap.Error(e))
	}
	return store.Watch(ctx, keys, func(changed map[string]string) {
		for _, e := range l.Update(strip(changed)) {
			log.Warn("bad live setting", zap.Error(e))
		}
		log.Info("live settings changed", zap.Any("keys", changed))
	})
}
