package abuse

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/parley-im/parley/domain"
)

// Kind is what a Subject names.
type Kind uint8

const (
	// KindUser is a user id.
	KindUser Kind = iota + 1
	// KindIP is a source address: an IPv4 address, or an IPv6 /64, since
	// one host commonly holds a whole /64.
	KindIP
)

// Subject is who is counted and suspended: a user or a source address.
// Build it with User, IP or ParseSubject; the zero value names no one.
type Subject struct {
	Kind Kind
	ID   string
}

// User is the subject for a user id.
func User(u domain.UserID) Subject { return Subject{Kind: KindUser, ID: string(u)} }

// IP is the subject for a source address. IPv4-mapped IPv6 addresses count
// as IPv4; other IPv6 addresses are cut to their /64.
func IP(a netip.Addr) Subject {
	a = a.Unmap().WithZone("")
	if a.Is6() {
		p, _ := a.Prefix(64)
		return Subject{Kind: KindIP, ID: p.String()}
	}
	return Subject{Kind: KindIP, ID: a.String()}
}

// loopback reports whether s is a loopback source address: 127.0.0.0/8,
// or the IPv6 /64 that holds ::1 (in practice nothing else reaches a
// server from it).
func (s Subject) loopback() bool {
	if s.Kind != KindIP {
		return false
	}
	if a, err := netip.ParseAddr(s.ID); err == nil {
		return a.IsLoopback()
	}
	return s.ID == loopback6
}

// loopback6 is the subject of ::1.
var loopback6 = func() string { p, _ := netip.MustParseAddr("::1").Prefix(64); return p.String() }()

// String is "user:<id>" or "ip:<address>", the form ParseSubject reads.
func (s Subject) String() string {
	switch s.Kind {
	case KindUser:
		return "user:" + s.ID
	case KindIP:
		return "ip:" + s.ID
	default:
		return "none:" + s.ID
	}
}

// ParseSubject reads "user:<id>" or "ip:<address or IPv6 /64>", as given to
// the operator API.
func ParseSubject(s string) (Subject, error) {
	kind, id, ok := strings.Cut(s, ":")
	if !ok {
		return Subject{}, fmt.Errorf("subject %q: want user:<id> or ip:<address>", s)
	}
	switch kind {
	case "user":
		u, err := domain.ParseUserID(id)
		if err != nil {
			return Subject{}, fmt.Errorf("subject %q: %w", s, err)
		}
		return User(u), nil
	case "ip":
		if p, err := netip.ParsePrefix(id); err == nil && p.Addr().Is6() && p.Bits() == 64 {
			return IP(p.Addr()), nil
		}
		a, err := netip.ParseAddr(id)
		if err != nil {
			return Subject{}, fmt.Errorf("subject %q: not an IP address", s)
		}
		return IP(a), nil
	default:
		return Subject{}, fmt.Errorf("subject %q: want user:<id> or ip:<address>", s)
	}
}

// Event is something counted against a subject.
type Event uint8

const (
	// Connect is a connection opened (or a login).
	Connect Event = iota
	// AuthFailure is a token refused.
	AuthFailure
	// RateLimited is a request refused by a rate limit.
	RateLimited
	// bannedAttempt is an attempt refused because of a suspension; Check
	// counts it.
	bannedAttempt
	numEvents
)

var reasons = [numEvents]string{
	Connect:       "too many connections",
	AuthFailure:   "too many failed logins",
	RateLimited:   "too many requests over the rate limit",
	bannedAttempt: "kept trying while suspended",
}

// ErrBanned is matched by every *BannedError.
var ErrBanned = errors.New("banned")

// BannedError says that a subject is suspended, until when and why. Its
// text is safe to show to the client.
type BannedError struct {
	Subject Subject
	Until   time.Time
	Reason  string
}

func (e *BannedError) Error() string {
	return fmt.Sprintf("%s is suspended until %s: %s", e.Subject, e.Until.UTC().Format(time.RFC3339), e.Reason)
}

// Is makes errors.Is(err, ErrBanned) true.
func (e *BannedError) Is(target error) bool { return target == ErrBanned }

// RetryAfter is how long from now until the suspension ends, at least a second.
func (e *BannedError) RetryAfter(now time.Time) time.Duration {
	return max(e.Until.Sub(now), time.Second)
}

// Ban is one suspension in force, as List returns it.
type Ban struct {
	Subject Subject
	Until   time.Time
	Reason  string
	// Offences counts the automatic suspensions that escalated to this one.
	Offences int
	// Manual is true for a suspension set by an operator.
	Manual bool
}
