package testkit

import (
	"os"
	"testing"
)

// CI reports whether the environment says CI=true. There, a test whose
// servers or programs are missing fails instead of skipping, because a skip
// would hide a broken setup.
func CI() bool { return os.Getenv("CI") == "true" }

// Unavailable ends a test that cannot run here, with a one-line reason:
// it skips, or, under CI=true, fails.
func Unavailable(t testing.TB, format string, args ...any) {
	t.Helper()
	if CI() {
		t.Fatalf(format, args...)
	} else {
		t.Skipf(format, args...)
	}
}

// SkipShort skips an end-to-end test under go test -short, which runs the
// unit tests only: no sidecar, no server, no process of parley's own.
func SkipShort(t testing.TB) {
	t.Helper()
	if testing.Short() {
		t.Skip("end-to-end test; runs without -short")
	}
}
