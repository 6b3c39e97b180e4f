// Package daprdtest starts real daprd sidecars for tests, one per profile in
// components/, and cleans them up with the test. Only tests import it.
//
// A profile whose servers are not reachable is skipped with a one-line
// reason, except when the environment says CI=true: there a skip would hide
// a broken setup, so it fails instead.
package daprdtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/parley-im/parley/infrastructure/dapr/daprd"
	"github.com/parley-im/parley/tools/testkit"
)

// The profiles, named after their folders in components/.
const (
	Local            = "local"
	Redis            = "redis"
	PostgresRabbitMQ = "postgres-rabbitmq"
	MySQLMQTT        = "mysql-mqtt"
	SQLite           = "sqlite"
	JetStream        = "jetstream"
)

// Profile describes what a profile needs and offers.
type Profile struct {
	Name string
	// Servers are the loopback addresses the profile's components use.
	Servers []string
	// ConfigStore says whether the profile has a configuration component.
	ConfigStore bool
	// Durable says whether published messages wait in a broker shared by
	// every daprd of one app-id, surviving a subscriber's daprd restart.
	Durable bool
}

var profiles = map[string]Profile{
	Local:            {Name: Local},
	Redis:            {Name: Redis, Servers: []string{RedisAddr}, ConfigStore: true, Durable: true},
	PostgresRabbitMQ: {Name: PostgresRabbitMQ, Servers: []string{"127.0.0.1:5432", "127.0.0.1:5672"}, ConfigStore: true, Durable: true},
	// Not durable: the broker keeps a killed daprd's messages, but daprd's
	// mqtt3 component takes them back at reconnection before any
	// subscription exists and never acknowledges them (see
	// components/mysql-mqtt/pubsub.yaml).
	MySQLMQTT: {Name: MySQLMQTT, Servers: []string{"127.0.0.1:3306", MQTTAddr}},
	SQLite:    {Name: SQLite},
	// Durable: the stream keeps what is published while a subscriber's
	// daprd is down, and its new consumer starts at the stream's first
	// message (components/jetstream/pubsub.yaml).
	JetStream: {Name: JetStream, Servers: []string{"127.0.0.1:5432", NATSAddr}, ConfigStore: true, Durable: true},
}

// Profiles lists every tested profile, in a stable order.
func Profiles() []Profile {
	return []Profile{profiles[Local], profiles[Redis], profiles[PostgresRabbitMQ], profiles[MySQLMQTT], profiles[SQLite], profiles[JetStream]}
}

// Lookup returns the named profile; it fails the test for an unknown name.
func Lookup(t testing.TB, name string) Profile {
	t.Helper()
	p, ok := profiles[name]
	if !ok {
		t.Fatalf("daprdtest: unknown profile %q", name)
	}
	return p
}

// RequireServers checks that the profile's servers accept TCP connections,
// then sets up what its components need on them (see prepare), so that a
// daprd that parley launches itself starts on a fresh machine too.
func RequireServers(t testing.TB, profile string) {
	t.Helper()
	for _, addr := range Lookup(t, profile).Servers {
		conn, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			testkit.Unavailable(t, "profile %s: server %s not reachable: %v", profile, addr, err)
			return
		}
		conn.Close()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	prepare(t, ctx, profile)
}

// UniqueName returns prefix followed by random hex, for app ids, topics and
// keys that must not collide with other runs on shared servers.
func UniqueName(prefix string) string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return prefix + "-" + hex.EncodeToString(b[:])
}

// Option changes the daprd.Options StartForTest uses.
type Option func(*daprd.Options)

// WithAppID sets the app id; the default is a unique one per call.
func WithAppID(id string) Option { return func(o *daprd.Options) { o.AppID = id } }

// WithAppPort makes daprd call the app on port for invocations.
func WithAppPort(port int) Option { return func(o *daprd.Options) { o.AppPort = port } }

// WithInstanceName names the daprd among the replicas of its app id.
func WithInstanceName(name string) Option { return func(o *daprd.Options) { o.InstanceName = name } }

// WithDir sets daprd's working directory; the default is a temporary one.
func WithDir(dir string) Option { return func(o *daprd.Options) { o.Dir = dir } }

// WithAPITokens starts daprd requiring api on its APIs (DAPR_API_TOKEN) and
// sending app on its calls into the app (APP_API_TOKEN).
func WithAPITokens(api, app string) Option {
	return func(o *daprd.Options) { o.APIToken, o.AppAPIToken = api, app }
}

// RequireBinary returns the repository root once sidecar/bin/daprd is
// built; otherwise it skips the test (fails it under CI=true) saying how to
// build it.
func RequireBinary(t testing.TB) (root string) {
	t.Helper()
	root, err := testkit.RepoRoot()
	if err != nil {
		t.Fatalf("daprdtest: %v", err)
	}
	if _, err := os.Stat(filepath.Join(root, "sidecar", "bin", "daprd")); err != nil {
		testkit.Unavailable(t, "daprd is not built: run `make sidecar` (%v)", err)
	}
	return root
}

// StartForTest starts daprd with the profile's components and stops it when
// the test ends. It skips the test (fails it under CI=true) when the
// profile's servers are down or daprd has not been built. When the test
// fails, the daprd log's path and tail are logged.
func StartForTest(t testing.TB, profile string, opts ...Option) *daprd.Sidecar {
	t.Helper()
	RequireServers(t, profile)
	root := RequireBinary(t)

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	o := daprd.Options{
		ResourcesPath: filepath.Join(root, "components", profile),
		AppID:         UniqueName("parley-test"),
		Dir:           t.TempDir(),
		LogPath:       filepath.Join(os.TempDir(), UniqueName("parley-daprd-"+profile)+".log"),
	}
	for _, opt := range opts {
		opt(&o)
	}
	s, err := daprd.Start(ctx, o)
	if err != nil {
		t.Fatalf("daprdtest: start daprd for profile %s: %v", profile, err)
	}
	t.Cleanup(func() {
		stopCtx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		if err := s.Stop(stopCtx); err != nil {
			t.Errorf("daprdtest: stop daprd: %v", err)
		}
		if profile == MySQLMQTT {
			if err := clearMQTTSession(stopCtx, MQTTAddr, s.InstanceName()); err != nil {
				t.Logf("daprdtest: clear the MQTT session of %s: %v", s.InstanceName(), err)
			}
		}
		if t.Failed() {
			t.Logf("daprd log (%s): %s", profile, s.LogPath())
			return
		}
		os.Remove(s.LogPath())
	})
	return s
}

// prepare sets up what a profile's components need on their servers
// before daprd starts.
func prepare(t testing.TB, ctx context.Context, profile string) {
	t.Helper()
	switch profile {
	case Redis:
		// Configuration watches rely on keyspace notifications.
		if err := enableKeyspaceEvents(ctx, RedisAddr); err != nil {
			t.Fatalf("daprdtest: enable redis keyspace notifications: %v", err)
		}
	case PostgresRabbitMQ, JetStream:
		// daprd refuses to start without the configuration table.
		if err := EnsurePostgresConfigTable(ctx, PostgresURL); err != nil {
			t.Fatalf("daprdtest: create the postgres configuration table: %v", err)
		}
	}
	if profile == JetStream {
		// pubsub.jetstream publishes into, and consumes from, a stream it
		// does not create.
		if err := EnsureJetStream(ctx, NATSAddr); err != nil {
			t.Fatalf("daprdtest: create the JetStream stream: %v", err)
		}
	}
}
