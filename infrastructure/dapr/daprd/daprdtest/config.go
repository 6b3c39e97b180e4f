package daprdtest

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/parley-im/parley/tools/testkit"
)

const (
	// RedisAddr is the Redis server of components/redis.
	RedisAddr = "127.0.0.1:6379"
	// PostgresURL reaches the PostgreSQL database of components/postgres-rabbitmq
	// and components/jetstream.
	PostgresURL = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"
	// PostgresConfigTable and PostgresNotifyChannel match
	// components/postgres-rabbitmq/configstore.yaml.
	PostgresConfigTable   = "parley_config"
	PostgresNotifyChannel = "parley_config"
)

// ConfigSetter returns a function that writes a setting into the profile's
// configuration store, the way an operator would, or nil when the profile
// has none. The keys it wrote are removed when the test ends.
func ConfigSetter(t testing.TB, profile string) func(ctx context.Context, key, value string) error {
	t.Helper()
	var (
		mu      sync.Mutex
		written = map[string]bool{}
		set     func(ctx context.Context, key, value string) error
		remove  func(ctx context.Context, keys []string) error
	)
	switch profile {
	case Redis:
		set, remove = redisSetConfig, redisDeleteKeys
	case PostgresRabbitMQ, JetStream:
		set, remove = postgresSetConfig, postgresDeleteConfig
	default:
		return nil
	}
	t.Cleanup(func() {
		mu.Lock()
		keys := make([]string, 0, len(written))
		for k := range written {
			keys = append(keys, k)
		}
		mu.Unlock()
		if len(keys) == 0 {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := remove(ctx, keys); err != nil {
			t.Logf("daprdtest: remove configuration keys: %v", err)
		}
	})
	return func(ctx context.Context, key, value string) error {
		mu.Lock()
		written[key] = true
		mu.Unlock()
		return set(ctx, key, value)
	}
}

// configVersion grows with every write, as the stores' version fields expect.
var configVersion atomic.Int64

func init() { configVersion.Store(time.Now().UnixNano()) }

// redisSetConfig writes "value||version", the format of Dapr's Redis
// configuration store.
func redisSetConfig(ctx context.Context, key, value string) error {
	v := value + "||" + strconv.FormatInt(configVersion.Add(1), 10)
	_, err := redisDo(ctx, RedisAddr, "SET", key, v)
	return err
}

func redisDeleteKeys(ctx context.Context, keys []string) error {
	_, err := redisDo(ctx, RedisAddr, append([]string{"DEL"}, keys...)...)
	return err
}

// enableKeyspaceEvents adds the notifications Dapr's Redis configuration
// store subscribes to ("KEA") to whatever the server already has, without
// removing flags others rely on.
func enableKeyspaceEvents(ctx context.Context, addr string) error {
	reply, err := redisDo(ctx, addr, "CONFIG", "GET", "notify-keyspace-events")
	if err != nil {
		return err
	}
	current := ""
	if parts := strings.Split(reply, "\n"); len(parts) == 2 {
		current = parts[1]
	}
	flags := current
	for _, f := range "KEA" {
		if !strings.ContainsRune(flags, f) {
			flags += string(f)
		}
	}
	if flags == current {
		return nil
	}
	_, err = redisDo(ctx, addr, "CONFIG", "SET", "notify-keyspace-events", flags)
	return err
}

// redisDo sends one command and returns the reply: a status or bulk
// string, an integer, or an array's strings joined by newlines.
func redisDo(ctx context.Context, addr string, args ...string) (string, error) {
	v, err := testkit.RedisDo(ctx, addr, args...)
	if err != nil {
		return "", err
	}
	return respString(v), nil
}

func respString(v any) string {
	switch v := v.(type) {
	case nil:
		return ""
	case string:
		return v
	case int64:
		return strconv.FormatInt(v, 10)
	case []any:
		parts := make([]string, len(v))
		for i, p := range v {
			parts[i] = respString(p)
		}
		return strings.Join(parts, "\n")
	}
	return fmt.Sprint(v)
}

// EnsurePostgresConfigTable creates the table and the change trigger that
// components/postgres-rabbitmq/configstore.yaml needs, if they are missing.
// A deleted row is announced with an empty value, which parley reads as
// "back to the default".
func EnsurePostgresConfigTable(ctx context.Context, url string) error {
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	// Several test binaries may run this at once; the advisory lock keeps
	// their CREATE OR REPLACE statements from racing.
	_, err = conn.Exec(ctx, `
SELECT pg_advisory_lock(7243);
CREATE TABLE IF NOT EXISTS `+PostgresConfigTable+` (
  key VARCHAR NOT NULL PRIMARY KEY,
  value VARCHAR NOT NULL,
  version VARCHAR NOT NULL,
  metadata JSON);
CREATE OR REPLACE FUNCTION `+PostgresConfigTable+`_notify() RETURNS TRIGGER AS $$
DECLARE data json; notification json;
BEGIN
  IF (TG_OP = 'DELETE') THEN
    data = json_build_object('key', OLD.key, 'value', '', 'version', OLD.version, 'metadata', OLD.metadata);
  ELSE
    data = row_to_json(NEW);
  END IF;
  notification = json_build_object('table', TG_TABLE_NAME, 'action', TG_OP, 'data', data);
  PERFORM pg_notify('`+PostgresNotifyChannel+`', notification::text);
  RETURN NULL;
END; $$ LANGUAGE plpgsql;
CREATE OR REPLACE TRIGGER `+PostgresConfigTable+`_changed
  AFTER INSERT OR UPDATE OR DELETE ON `+PostgresConfigTable+`
  FOR EACH ROW EXECUTE PROCEDURE `+PostgresConfigTable+`_notify();
SELECT pg_advisory_unlock(7243);`)
	return err
}

func postgresSetConfig(ctx context.Context, key, value string) error {
	conn, err := pgx.Connect(ctx, PostgresURL)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, `INSERT INTO `+PostgresConfigTable+` (key, value, version) VALUES ($1, $2, $3)
ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, version = EXCLUDED.version`,
		key, value, strconv.FormatInt(configVersion.Add(1), 10))
	return err
}

func postgresDeleteConfig(ctx context.Context, keys []string) error {
	conn, err := pgx.Connect(ctx, PostgresURL)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, `DELETE FROM `+PostgresConfigTable+` WHERE key = ANY($1)`, keys)
	return err
}
