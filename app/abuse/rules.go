package abuse

import (
	"fmt"
	"time"
)

// Rules decide when a user or an IP is suspended and for how long. They are
// live settings: change them with Guard.SetRules. A zero field takes its
// default from DefaultRules; Validate gives the accepted range of each.
type Rules struct {
	// Window is the span over which events are counted, as a sliding
	// window. Default 1 minute; 1 s to 1 h.
	Window time.Duration
	// MaxConnectsPerUser is how many connections one user may open in a
	// Window; one more is an offence. Default 30; 1 to 100000.
	MaxConnectsPerUser int
	// MaxConnectsPerIP is the same for one source address (an IPv6 /64),
	// higher because of NAT. Default 300; 1 to 1000000.
	MaxConnectsPerIP int
	// MaxAuthFailures is how many refused tokens one subject may present in
	// a Window. Default 10; 1 to 100000.
	MaxAuthFailures int
	// MaxRateLimited is how many requests of one subject may be refused as
	// rate limited in a Window. Default 30; 1 to 100000.
	MaxRateLimited int
	// MaxBannedAttempts is how many attempts a suspended subject may make
	// in a Window before its suspension escalates again. Default 5; 1 to 100000.
	MaxBannedAttempts int
	// FirstBan is the length of a first suspension; each further offence
	// doubles it. Default 1 minute; 1 s to 24 h.
	FirstBan time.Duration
	// MaxBan caps a suspension. Default 24 h; FirstBan to 30 days.
	MaxBan time.Duration
	// Forget is how long after its last offence a subject's offences stop
	// counting, so that its next suspension is FirstBan again. Default 24 h;
	// 1 minute to 30 days.
	Forget time.Duration
	// Disabled stops counting and automatic suspensions; suspensions in
	// force, automatic or set by an operator, are still enforced. Zero
	// value: enabled.
	Disabled bool
}

// DefaultRules returns the rules used for zero fields.
func DefaultRules() Rules {
	return Rules{
		Window:             time.Minute,
		MaxConnectsPerUser: 30,
		MaxConnectsPerIP:   300,
		MaxAuthFailures:    10,
		MaxRateLimited:     30,
		MaxBannedAttempts:  5,
		FirstBan:           time.Minute,
		MaxBan:             24 * time.Hour,
		Forget:             24 * time.Hour,
	}
}

// withDefaults fills zero fields from DefaultRules.
func (r Rules) withDefaults() Rules {
	d := DefaultRules()
	dur := func(v *time.Duration, def time.Duration) {
		if *v == 0 {
			*v = def
		}
	}
	num := func(v *int, def int) {
		if *v == 0 {
			*v = def
		}
	}
	dur(&r.Window, d.Window)
	num(&r.MaxConnectsPerUser, d.MaxConnectsPerUser)
	num(&r.MaxConnectsPerIP, d.MaxConnectsPerIP)
	num(&r.MaxAuthFailures, d.MaxAuthFailures)
	num(&r.MaxRateLimited, d.MaxRateLimited)
	num(&r.MaxBannedAttempts, d.MaxBannedAttempts)
	dur(&r.FirstBan, d.FirstBan)
	if r.MaxBan == 0 {
		r.MaxBan = max(d.MaxBan, r.FirstBan)
	}
	dur(&r.Forget, d.Forget)
	return r
}

// Validate reports the first field out of its range, after defaults.
func (r Rules) Validate() error {
	r = r.withDefaults()
	const day = 24 * time.Hour
	durs := []struct {
		name   string
		v      time.Duration
		lo, hi time.Duration
	}{
		{"Window", r.Window, time.Second, time.Hour},
		{"FirstBan", r.FirstBan, time.Second, day},
		{"MaxBan", r.MaxBan, r.FirstBan, 30 * day},
		{"Forget", r.Forget, time.Minute, 30 * day},
	}
	for _, d := range durs {
		if d.v < d.lo || d.v > d.hi {
			return fmt.Errorf("abuse rules: %s %v is outside %v to %v", d.name, d.v, d.lo, d.hi)
		}
	}
	nums := []struct {
		name string
		v    int
		hi   int
	}{
		{"MaxConnectsPerUser", r.MaxConnectsPerUser, 100000},
		{"MaxConnectsPerIP", r.MaxConnectsPerIP, 1000000},
		{"MaxAuthFailures", r.MaxAuthFailures, 100000},
		{"MaxRateLimited", r.MaxRateLimited, 100000},
		{"MaxBannedAttempts", r.MaxBannedAttempts, 100000},
	}
	for _, n := range nums {
		if n.v < 1 || n.v > n.hi {
			return fmt.Errorf("abuse rules: %s %d is outside 1 to %d", n.name, n.v, n.hi)
		}
	}
	return nil
}

// limit is the threshold of ev for a subject of kind k.
func (r *Rules) limit(ev Event, k Kind) int {
	switch ev {
	case Connect:
		if k == KindIP {
			return r.MaxConnectsPerIP
		}
		return r.MaxConnectsPerUser
	case AuthFailure:
		return r.MaxAuthFailures
	case RateLimited:
		return r.MaxRateLimited
	default:
		return r.MaxBannedAttempts
	}
}

// banFor is the suspension for the n-th offence: FirstBan doubled n-1
// times, capped at MaxBan.
func (r *Rules) banFor(n int) time.Duration {
	d := r.FirstBan
	for i := 1; i < n && d < r.MaxBan; i++ {
		d *= 2
	}
	return min(d, r.MaxBan)
}
