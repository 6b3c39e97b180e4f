package abuse_test

import (
	"testing"

	"github.com/parley-im/parley/app/abuse"
)

// FuzzParseSubject: operator input never panics the parser, and what it
// accepts reads back the same from its String form, so that a ban listed
// can be lifted by what List printed.
func FuzzParseSubject(f *testing.F) {
	for _, s := range []string{"user:alice", "ip:192.0.2.1", "ip:::ffff:10.0.0.1", "ip:2001:db8::1", "ip:2001:db8::/64", "ip:fe80::1%eth0", "user:", ":", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		s, err := abuse.ParseSubject(in)
		if err != nil {
			return
		}
		again, err := abuse.ParseSubject(s.String())
		if err != nil || again != s {
			t.Fatalf("ParseSubject(%q) = %v, but %q reads back as %v, %v", in, s, s.String(), again, err)
		}
	})
}
