// Package abuse suspends users and source addresses that abuse the server,
// as the travel IM's blacklists do: too many connections, failed logins or
// rate-limited requests within a window suspend the subject, and a subject
// that keeps trying while suspended is suspended longer, the length
// doubling with each offence up to a cap.
//
// Suspensions live in the state store with a TTL, so every node of a
// cluster enforces them. The counters that lead to one are kept per node:
// they are on the path of every connection, and a store write per connect
// would double its cost and make one hot key of an attacker. A cluster of n
// nodes behind a balancer that spreads one subject's connections may thus
// let up to n times a threshold through before the first suspension; a
// balancer that hashes on the source address makes the IP counts exact.
//
// Each node caches what it read of a subject's suspension for
// Config.CacheTTL (1 s by default): a suspension or an unban made on
// another node applies here within that time; one made on this node applies
// at once.
package abuse

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/parley-im/parley/infrastructure"
)

// State keys.
const (
	keyPrefix = "ban:" // ban:user:<id>, ban:ip:<address>: one suspension record
	keyIndex  = "bans" // the subjects suspended, for List
	// maxIndex bounds the index, so that its value stays far below the
	// store's 4 MiB limit during an attack from many addresses; the
	// suspensions ending soonest are left out of it first.
	maxIndex      = 10000
	maxReasonLen  = 200
	defaultReason = "suspended by an operator"
)

// Config sets up a Guard.
type Config struct {
	// Rules are the initial rules; zero fields take DefaultRules.
	Rules Rules
	// CacheTTL is how long a node trusts its last read of a subject's
	// suspension, and so how long a suspension or unban made on another
	// node may take to apply here. Zero value means 1 second.
	CacheTTL time.Duration
	// MaxTracked bounds the subjects a node counts and caches; beyond it
	// the stale ones are dropped, then all. Zero value means 100000.
	MaxTracked int
	// Logger reports store failures. Nil: no logs.
	Logger *zap.Logger
	// Now is the clock. Nil: time.Now.
	Now func() time.Time
}

// Guard counts events and enforces suspensions. The zero value is not
// usable; call New. Safe for concurrent use. It starts no goroutine.
type Guard struct {
	store infrastructure.StateStore
	cfg   Config
	rules atomic.Pointer[Rules]

	mu     sync.Mutex
	seq    uint64 // bumped by every local change to cache
	cache  map[string]cached
	reads  map[string]*readCall
	counts map[string]*counter
}

// cached is what this node last knew of a subject: rec nil means not suspended.
type cached struct {
	rec *record
	at  time.Time
	seq uint64
}

// readCall is one store read of a subject, shared by concurrent checks.
type readCall struct {
	done chan struct{}
	rec  *record
	err  error
}

// record is a suspension as stored.
type record struct {
	Until    time.Time `json:"until"`
	Reason   string    `json:"reason"`
	Offences int       `json:"offences,omitempty"`
	Last     time.Time `json:"last,omitzero"` // the last automatic offence
	Manual   bool      `json:"manual,omitempty"`
}

// New returns a Guard over store.
func New(store infrastructure.StateStore, cfg Config) (*Guard, error) {
	if cfg.CacheTTL == 0 {
		cfg.CacheTTL = time.Second
	}
	if cfg.CacheTTL < 0 {
		return nil, errors.New("abuse config: negative CacheTTL")
	}
	if cfg.MaxTracked == 0 {
		cfg.MaxTracked = 100000
	}
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	g := &Guard{store: store, cfg: cfg, cache: map[string]cached{}, reads: map[string]*readCall{}, counts: map[string]*counter{}}
	if err := g.SetRules(cfg.Rules); err != nil {
		return nil, err
	}
	return g, nil
}

// SetRules replaces the rules; zero fields take defaults. Rules out of
// range are refused and the old ones stay.
func (g *Guard) SetRules(r Rules) error {
	if err := r.Validate(); err != nil {
		return err
	}
	r = r.withDefaults()
	g.rules.Store(&r)
	return nil
}

// Rules returns the rules in force.
func (g *Guard) Rules() Rules { return *g.rules.Load() }

// Check returns a *BannedError for the first of subjects that is
// suspended, nil if none is. An attempt during an automatic suspension
// counts: MaxBannedAttempts of them within a Window escalate it. When the
// store cannot be read, Check enforces what this node last knew and
// otherwise lets the subject through: an outage of the store must not lock
// everyone out.
func (g *Guard) Check(ctx context.Context, subjects ...Subject) error {
	r := g.rules.Load()
	now := g.cfg.Now()
	for _, s := range subjects {
		rec, err := g.lookup(ctx, s)
		if err != nil {
			g.cfg.Logger.Warn("read suspension", zap.Stringer("subject", s), zap.Error(err))
		}
		if rec == nil || !rec.Until.After(now) {
			continue
		}
		be := &BannedError{Subject: s, Until: rec.Until, Reason: rec.Reason}
		if !r.Disabled && !rec.Manual && g.count(s, bannedAttempt, r, now) {
			if e, err := g.offence(ctx, s, bannedAttempt, r, now); err != nil {
				g.cfg.Logger.Warn("escalate suspension", zap.Stringer("subject", s), zap.Error(err))
			} else {
				be = e
			}
		}
		return be
	}
	return nil
}

// Record counts ev against each of subjects. When a count passes its
// threshold the subject is suspended, or its suspension escalates, and
// Record returns the *BannedError; otherwise nil. It does not check
// suspensions already in force: call Check for that.
func (g *Guard) Record(ctx context.Context, ev Event, subjects ...Subject) error {
	r := g.rules.Load()
	if r.Disabled || ev >= bannedAttempt {
		return nil
	}
	now := g.cfg.Now()
	var banned error
	for _, s := range subjects {
		if s.loopback() {
			// Everyone behind a proxy on the same host (without
			// -trust-forwarded-for), and every local tool, shares the
			// loopback address: suspending it would shut everyone out.
			// An operator may still suspend it by hand.
			continue
		}
		if !g.count(s, ev, r, now) {
			continue
		}
		be, err := g.offence(ctx, s, ev, r, now)
		if err != nil {
			g.cfg.Logger.Warn("suspend", zap.Stringer("subject", s), zap.Error(err))
			continue
		}
		if banned == nil {
			banned = be
		}
	}
	return banned
}

// Ban suspends s until the given time, for reason (shown to the client;
// empty means "suspended by an operator"). It replaces any suspension of s,
// shorter or longer, and automatic escalation leaves it alone.
func (g *Guard) Ban(ctx context.Context, s Subject, until time.Time, reason string) error {
	now := g.cfg.Now()
	if s.Kind != KindUser && s.Kind != KindIP || s.ID == "" {
		return fmt.Errorf("ban: no subject")
	}
	if !until.After(now) {
		return fmt.Errorf("ban %s: until %s is not in the future", s, until.UTC().Format(time.RFC3339))
	}
	if len(reason) > maxReasonLen {
		return fmt.Errorf("ban %s: reason longer than %d bytes", s, maxReasonLen)
	}
	if reason == "" {
		reason = defaultReason
	}
	r := g.rules.Load()
	var out record
	err := g.cas(ctx, keyPrefix+s.String(), func(cur *record) (*record, time.Duration) {
		out = record{Until: until, Reason: reason, Manual: true}
		if cur != nil {
			out.Offences, out.Last = cur.Offences, cur.Last
		}
		return &out, ttlFor(&out, now, r)
	})
	if err != nil {
		return fmt.Errorf("ban %s: %w", s, err)
	}
	g.remember(s, &out, now)
	g.indexPut(ctx, s, out.Until, now)
	return nil
}

// Unban lifts the suspension of s and forgets its offences and counts.
func (g *Guard) Unban(ctx context.Context, s Subject) error {
	if err := g.store.Delete(ctx, keyPrefix+s.String()); err != nil {
		return fmt.Errorf("unban %s: %w", s, err)
	}
	now := g.cfg.Now()
	g.remember(s, nil, now)
	g.mu.Lock()
	delete(g.counts, s.String())
	g.mu.Unlock()
	g.indexPut(ctx, s, time.Time{}, now)
	return nil
}

// List returns the suspensions in force, longest first, as the cluster
// stores them (up to 10000).
func (g *Guard) List(ctx context.Context) ([]Ban, error) {
	idx, err := g.store.Get(ctx, keyIndex)
	if err != nil {
		return nil, fmt.Errorf("list bans: %w", err)
	}
	m := map[string]time.Time{}
	if idx.Found {
		if err := json.Unmarshal(idx.Value, &m); err != nil {
			return nil, fmt.Errorf("list bans: index: %w", err)
		}
	}
	subjects := make([]Subject, 0, len(m))
	keys := make([]string, 0, len(m))
	for k := range m {
		s, err := ParseSubject(k)
		if err != nil {
			continue
		}
		subjects = append(subjects, s)
		keys = append(keys, keyPrefix+s.String())
	}
	if len(keys) == 0 {
		return nil, nil
	}
	items, err := g.store.BulkGet(ctx, keys)
	if err != nil {
		return nil, fmt.Errorf("list bans: %w", err)
	}
	now := g.cfg.Now()
	var out []Ban
	for i, it := range items {
		rec := decode(it)
		if rec == nil || !rec.Until.After(now) {
			continue
		}
		out = append(out, Ban{Subject: subjects[i], Until: rec.Until, Reason: rec.Reason, Offences: rec.Offences, Manual: rec.Manual})
	}
	slices.SortFunc(out, func(a, b Ban) int {
		return cmp.Or(b.Until.Compare(a.Until), cmp.Compare(a.Subject.String(), b.Subject.String()))
	})
	return out, nil
}

// offence escalates the suspension of s for one more offence of kind ev.
func (g *Guard) offence(ctx context.Context, s Subject, ev Event, r *Rules, now time.Time) (*BannedError, error) {
	var out record
	wrote := false
	err := g.cas(ctx, keyPrefix+s.String(), func(cur *record) (*record, time.Duration) {
		wrote = false
		if cur != nil && cur.Until.After(now) {
			// An operator's suspension stands as set. And another node may
			// have suspended s for the same burst a moment ago, before it
			// could know of ours: that is one offence, not two.
			if cur.Manual || now.Sub(cur.Last) < g.cfg.CacheTTL {
				out = *cur
				return nil, 0
			}
		}
		n := 0
		if cur != nil && now.Sub(cur.Last) <= r.Forget {
			n = cur.Offences
		}
		n++
		out = record{Until: now.Add(r.banFor(n)), Reason: reasons[ev], Offences: n, Last: now}
		if cur != nil && cur.Until.After(out.Until) {
			out.Until = cur.Until // an escalation never shortens
		}
		wrote = true
		return &out, ttlFor(&out, now, r)
	})
	if err != nil {
		return nil, err
	}
	g.remember(s, &out, now)
	if wrote {
		g.cfg.Logger.Info("suspended", zap.Stringer("subject", s), zap.String("reason", out.Reason),
			zap.Int("offences", out.Offences), zap.Time("until", out.Until))
		g.indexPut(ctx, s, out.Until, now)
	}
	return &BannedError{Subject: s, Until: out.Until, Reason: out.Reason}, nil
}

// ttlFor keeps a record while it suspends, and while its offences still
// count towards the next suspension.
func ttlFor(rec *record, now time.Time, r *Rules) time.Duration {
	end := rec.Until
	if !rec.Last.IsZero() {
		end = later(end, rec.Last.Add(r.Forget))
	}
	return max(end.Sub(now), time.Second)
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

func decode(it infrastructure.Item) *record {
	if !it.Found {
		return nil
	}
	var rec record
	if err := json.Unmarshal(it.Value, &rec); err != nil {
		return nil // unreadable: treated as no suspension, and overwritten by the next
	}
	return &rec
}

// cas is a compare-and-set loop like infrastructure.Update, except that
// the TTL comes with the new value: a suspension's TTL depends on what was
// stored before. fn returns nil to write nothing.
func (g *Guard) cas(ctx context.Context, key string, fn func(cur *record) (*record, time.Duration)) error {
	for {
		it, err := g.store.Get(ctx, key)
		if err != nil {
			return err
		}
		next, ttl := fn(decode(it))
		if next == nil {
			return nil
		}
		b, err := json.Marshal(next)
		if err != nil {
			return err
		}
		check := infrastructure.IfAbsent()
		if it.Found {
			check = infrastructure.IfMatch(it.ETag)
		}
		err = g.store.Set(ctx, key, b, check, infrastructure.WithTTL(ttl))
		if !errors.Is(err, infrastructure.ErrConflict) {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
	}
}

// indexPut records s in the index until the given time, or removes it for
// a zero time, and drops ended suspensions. The index only serves List:
// enforcement reads the records, so a failed index write is logged, not
// returned.
func (g *Guard) indexPut(ctx context.Context, s Subject, until, now time.Time) {
	err := infrastructure.Update(ctx, g.store, keyIndex, func(cur infrastructure.Item) ([]byte, infrastructure.Change, error) {
		m := map[string]time.Time{}
		if cur.Found {
			_ = json.Unmarshal(cur.Value, &m) // a broken index is rebuilt from here on
		}
		for k, u := range m {
			if !u.After(now) {
				delete(m, k)
			}
		}
		if until.IsZero() {
			delete(m, s.String())
		} else {
			m[s.String()] = until
		}
		if len(m) > maxIndex {
			type entry struct {
				k string
				u time.Time
			}
			es := make([]entry, 0, len(m))
			for k, u := range m {
				es = append(es, entry{k, u})
			}
			slices.SortFunc(es, func(a, b entry) int { return a.u.Compare(b.u) })
			for _, e := range es[:len(m)-maxIndex] {
				delete(m, e.k)
			}
		}
		b, err := json.Marshal(m)
		return b, infrastructure.Put, err
	})
	if err != nil {
		g.cfg.Logger.Warn("update ban index", zap.Stringer("subject", s), zap.Error(err))
	}
}

// lookup returns the suspension record of s, from the cache while it is
// fresh, else from the store; concurrent lookups of one subject share one
// read. On a read error it returns what the cache last held.
func (g *Guard) lookup(ctx context.Context, s Subject) (*record, error) {
	k := s.String()
	now := g.cfg.Now()
	g.mu.Lock()
	c, ok := g.cache[k]
	if ok && now.Sub(c.at) < g.cfg.CacheTTL {
		g.mu.Unlock()
		return c.rec, nil
	}
	if call, ok := g.reads[k]; ok {
		g.mu.Unlock()
		select {
		case <-call.done:
			return call.rec, call.err
		case <-ctx.Done():
			return c.rec, ctx.Err()
		}
	}
	call := &readCall{done: make(chan struct{})}
	g.reads[k] = call
	start := g.seq
	g.mu.Unlock()

	it, err := g.store.Get(ctx, keyPrefix+k)
	g.mu.Lock()
	delete(g.reads, k)
	if err != nil {
		call.rec, call.err = c.rec, fmt.Errorf("read suspension of %s: %w", s, err)
	} else {
		call.rec = decode(it)
		// A change made here while the read was in flight is newer than
		// what the read returned.
		if cur, ok := g.cache[k]; !ok || cur.seq <= start {
			g.putLocked(k, cached{rec: call.rec, at: now})
		} else {
			call.rec = cur.rec
		}
	}
	g.mu.Unlock()
	close(call.done)
	return call.rec, call.err
}

// remember caches what this node just wrote for s.
func (g *Guard) remember(s Subject, rec *record, now time.Time) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.seq++
	g.putLocked(s.String(), cached{rec: rec, at: now, seq: g.seq})
}

func (g *Guard) putLocked(k string, c cached) {
	if _, ok := g.cache[k]; !ok && len(g.cache) >= g.cfg.MaxTracked {
		for k2, c2 := range g.cache {
			if c.at.Sub(c2.at) >= g.cfg.CacheTTL {
				delete(g.cache, k2)
			}
		}
		if len(g.cache) >= g.cfg.MaxTracked {
			clear(g.cache)
		}
	}
	g.cache[k] = c
}

// counter counts one subject's events over a sliding window, estimated
// from the current and the previous fixed window. There is one per user and
// address seen within the window, so it is kept small: a count is reset when
// it passes its threshold, far below the range of an int32.
type counter struct {
	start     time.Time
	cur, prev [numEvents]int32
}

// count adds one ev for s and reports whether its threshold was passed;
// it then starts the count of ev afresh, so that the next offence needs
// another threshold's worth of events.
func (g *Guard) count(s Subject, ev Event, r *Rules, now time.Time) bool {
	k := s.String()
	w := r.Window
	g.mu.Lock()
	defer g.mu.Unlock()
	c, ok := g.counts[k]
	if !ok {
		if len(g.counts) >= g.cfg.MaxTracked {
			for k2, c2 := range g.counts {
				if now.Sub(c2.start) >= 2*w {
					delete(g.counts, k2)
				}
			}
			if len(g.counts) >= g.cfg.MaxTracked {
				clear(g.counts)
			}
		}
		c = &counter{start: now}
		g.counts[k] = c
	}
	switch el := now.Sub(c.start); {
	case el < w:
	case el < 2*w:
		c.prev, c.cur, c.start = c.cur, [numEvents]int32{}, c.start.Add(w)
	default:
		c.prev, c.cur, c.start = [numEvents]int32{}, [numEvents]int32{}, now
	}
	c.cur[ev]++
	rest := w - now.Sub(c.start)
	est := int(c.cur[ev]) + int(int64(c.prev[ev])*int64(rest)/int64(w))
	if est <= r.limit(ev, s.Kind) {
		return false
	}
	c.cur[ev], c.prev[ev] = 0, 0
	return true
}
