// Command parley runs one parley node: the WebSocket gateway, the HTTP API
// and the chat page, over either a Dapr sidecar (the default; it can launch
// one itself) or the in-memory adapter.
//
// Flags and environment variables are read here and nowhere else.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/parley-im/parley/app/gateway"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stderr); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "parley:", err)
		}
		os.Exit(1)
	}
}

// maxSendsInFlight bounds -max-sends-in-flight: each send in flight holds
// a goroutine, and a connection's reader waits once its sends are all
// under way.
const maxSendsInFlight = 256

// options are the command line, with the environment as fallback.
type options struct {
	addr           string
	backend        string
	profile        string
	sidecar        string
	daprGRPC       string
	daprHTTP       string
	appID          string
	nodeID         string
	jwtSecret      string
	devTokens      bool
	settingsFile   string
	maxSends       int
	logFormat      string
	logLevel       string
	logFile        logFile
	shutdown       time.Duration
	readyFile      string
	publicURL      string
	leaseTTL       time.Duration
	hookAppID      string
	assignAppID    string
	serviceShops   string
	settingsPrefix string
	appPort        int
	debugAddr      string

	// Tokens, origins, the operator API.
	jwtKeyFile        string
	jwksURL           string
	jwtAudience       string
	jwtIssuer         string
	jwtUserClaim      string
	jwtLeeway         time.Duration
	secretStore       string
	jwtSecretName     string
	jwksURLSecretName string
	allowedOrigins    string
	adminToken        string
	trustForwardedFor bool

	// Observability.
	metricsAddr   string
	traceExporter string
	traceEndpoint string
	traceSample   float64

	// Dapr API tokens, from the environment only (the names daprd reads):
	// a token on a command line shows in the process list.
	daprAPIToken string
	appAPIToken  string
	// units makes the node one unit of several (units.go).
	units unitOptions
	// push sends offline members a push through an output binding (push.go).
	push pushOptions
}

func parseOptions(args []string, out io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("parley", flag.ContinueOnError)
	fs.SetOutput(out)
	fs.StringVar(&o.addr, "addr", envOr("PARLEY_ADDR", "127.0.0.1:8080"), "listen address for the page, the HTTP API and WebSocket (env PARLEY_ADDR)")
	fs.StringVar(&o.backend, "backend", envOr("PARLEY_BACKEND", "dapr"), "dapr: state and pub/sub through a Dapr sidecar; memory: in-process, no sidecar, nothing kept (env PARLEY_BACKEND)")
	fs.StringVar(&o.profile, "profile", envOr("PARLEY_PROFILE", "local"), "components/<profile> used when parley launches its own sidecar (env PARLEY_PROFILE)")
	fs.StringVar(&o.sidecar, "sidecar", envOr("PARLEY_SIDECAR", "launch"), "launch: start daprd from sidecar/bin for -profile; external: use the daprd at -dapr-grpc/-dapr-http (env PARLEY_SIDECAR)")
	fs.StringVar(&o.daprGRPC, "dapr-grpc", envOr("DAPR_GRPC_ENDPOINT", "127.0.0.1:50001"), "daprd gRPC address with -sidecar=external (env DAPR_GRPC_ENDPOINT)")
	fs.StringVar(&o.daprHTTP, "dapr-http", envOr("DAPR_HTTP_ENDPOINT", "127.0.0.1:3500"), "daprd HTTP address with -sidecar=external (env DAPR_HTTP_ENDPOINT)")
	fs.StringVar(&o.appID, "app-id", envOr("PARLEY_APP_ID", "parley"), "Dapr app-id: state key prefix and consumer group (env PARLEY_APP_ID)")
	fs.StringVar(&o.nodeID, "node-id", envOr("PARLEY_NODE_ID", ""), "this node's name; empty means the host name plus the port (env PARLEY_NODE_ID)")
	fs.StringVar(&o.jwtSecret, "jwt-secret", os.Getenv("PARLEY_JWT_SECRET"), "HS256 secret for tokens, 32+ bytes; empty with -dev-tokens means a random one (env PARLEY_JWT_SECRET)")
	fs.BoolVar(&o.devTokens, "dev-tokens", envOr("PARLEY_DEV_TOKENS", "") == "true", "enable POST /v1/dev/token (on by default with -profile local or -backend memory) (env PARLEY_DEV_TOKENS)")
	fs.StringVar(&o.settingsFile, "settings", envOr("PARLEY_SETTINGS", ""), "YAML file of live settings, re-read when it changes, for profiles without a configuration store (env PARLEY_SETTINGS)")
	fs.StringVar(&o.logFormat, "log-format", envOr("PARLEY_LOG_FORMAT", "auto"), "auto (console on a terminal, JSON otherwise), console or json (env PARLEY_LOG_FORMAT)")
	fs.StringVar(&o.logLevel, "log-level", envOr("PARLEY_LOG_LEVEL", "info"), "debug, info, warn or error (env PARLEY_LOG_LEVEL)")
	fs.StringVar(&o.logFile.path, "log-file", envOr("PARLEY_LOG_FILE", ""), "write the log to this file, rotated by size, instead of stderr; empty means stderr (env PARLEY_LOG_FILE)")
	fs.IntVar(&o.logFile.maxSizeMB, "log-max-size", envInt("PARLEY_LOG_MAX_SIZE", 100), "with -log-file: megabytes a log file grows to before it is rotated (env PARLEY_LOG_MAX_SIZE)")
	fs.IntVar(&o.logFile.maxBackups, "log-max-backups", envInt("PARLEY_LOG_MAX_BACKUPS", 10), "with -log-file: rotated files kept; 0 means all (env PARLEY_LOG_MAX_BACKUPS)")
	fs.IntVar(&o.logFile.maxAgeDays, "log-max-age", envInt("PARLEY_LOG_MAX_AGE", 30), "with -log-file: days a rotated file is kept; 0 means no limit by age (env PARLEY_LOG_MAX_AGE)")
	fs.IntVar(&o.maxSends, "max-sends-in-flight", envInt("PARLEY_MAX_SENDS_IN_FLIGHT", gateway.DefaultMaxSendsInFlight), "sends of one connection handled at once, 1-256; they keep their order for seqs and ACKs (env PARLEY_MAX_SENDS_IN_FLIGHT)")
	fs.DurationVar(&o.shutdown, "shutdown-timeout", 10*time.Second, "how long a graceful shutdown may take")
	fs.StringVar(&o.readyFile, "ready-file", "", "write the listen address to this file once serving (for scripts and tests)")
	fs.StringVar(&o.publicURL, "public-url", envOr("PARLEY_PUBLIC_URL", ""), "where clients reach this node, for GET /v1/route; empty means http://<-addr> (env PARLEY_PUBLIC_URL)")
	fs.DurationVar(&o.leaseTTL, "lease-ttl", 15*time.Second, "how long a node's presence lease lives without renewal; a dead node's connections stop counting after it")
	fs.StringVar(&o.settingsPrefix, "settings-prefix", envOr("PARLEY_SETTINGS_PREFIX", ""), "prefix of the live-setting keys in the configuration store, for deployments that share one (env PARLEY_SETTINGS_PREFIX)")
	fs.StringVar(&o.assignAppID, "assign-app-id", envOr("PARLEY_ASSIGN_APP_ID", ""), "Dapr app-id of the app that assigns a shop's agents to customers; empty means none (env PARLEY_ASSIGN_APP_ID)")
	fs.StringVar(&o.serviceShops, "service-shops", envOr("PARLEY_SERVICE_SHOPS", ""), "comma-separated user ids of shops' business accounts: a message to one opens a customer-service conversation (env PARLEY_SERVICE_SHOPS)")
	fs.StringVar(&o.hookAppID, "hook-app-id", envOr("PARLEY_HOOK_APP_ID", ""), "Dapr app-id of a before-send hook app; empty means none (env PARLEY_HOOK_APP_ID)")
	fs.StringVar(&o.debugAddr, "debug-addr", envOr("PARLEY_DEBUG_ADDR", ""), "listen address for Go's profiler (/debug/pprof/); empty means off. Keep it on loopback (env PARLEY_DEBUG_ADDR)")
	fs.StringVar(&o.jwtKeyFile, "jwt-key-file", envOr("PARLEY_JWT_KEY_FILE", ""), "file of PEM public keys or a JWKS document verifying RS256/ES256/EdDSA tokens, re-read every 10 min (env PARLEY_JWT_KEY_FILE)")
	fs.StringVar(&o.jwksURL, "jwks-url", envOr("PARLEY_JWKS_URL", ""), "https URL of an identity provider's JWKS, fetched and refreshed (env PARLEY_JWKS_URL)")
	fs.StringVar(&o.jwtAudience, "jwt-audience", envOr("PARLEY_JWT_AUDIENCE", ""), "comma-separated audiences a token's aud must contain one of; empty means aud is not checked (env PARLEY_JWT_AUDIENCE)")
	fs.StringVar(&o.jwtIssuer, "jwt-issuer", envOr("PARLEY_JWT_ISSUER", ""), "the iss tokens must carry; empty means not checked (env PARLEY_JWT_ISSUER)")
	fs.StringVar(&o.jwtUserClaim, "jwt-user-claim", envOr("PARLEY_JWT_USER_CLAIM", "sub"), "the claim that holds the user id (env PARLEY_JWT_USER_CLAIM)")
	leeway, _ := time.ParseDuration(envOr("PARLEY_JWT_LEEWAY", "30s"))
	fs.DurationVar(&o.jwtLeeway, "jwt-leeway", leeway, "clock skew allowed on exp, nbf and iat; 0 means none (env PARLEY_JWT_LEEWAY)")
	fs.StringVar(&o.secretStore, "secret-store", envOr("PARLEY_SECRET_STORE", ""), "Dapr secret store component that -jwt-secret-name and -jwks-url-secret-name read from (env PARLEY_SECRET_STORE)")
	fs.StringVar(&o.jwtSecretName, "jwt-secret-name", envOr("PARLEY_JWT_SECRET_NAME", ""), "name of the HS256 secret in -secret-store, instead of -jwt-secret (env PARLEY_JWT_SECRET_NAME)")
	fs.StringVar(&o.jwksURLSecretName, "jwks-url-secret-name", envOr("PARLEY_JWKS_URL_SECRET_NAME", ""), "name of the JWKS URL in -secret-store, instead of -jwks-url (env PARLEY_JWKS_URL_SECRET_NAME)")
	fs.StringVar(&o.allowedOrigins, "allowed-origins", envOr("PARLEY_ALLOWED_ORIGINS", ""), "comma-separated browser origins (scheme://host[:port]) allowed to open a WebSocket besides the page's own (env PARLEY_ALLOWED_ORIGINS)")
	fs.StringVar(&o.adminToken, "admin-token", os.Getenv("PARLEY_ADMIN_TOKEN"), "bearer token of the operator API (/v1/admin/...); empty turns it off (env PARLEY_ADMIN_TOKEN)")
	fs.BoolVar(&o.trustForwardedFor, "trust-forwarded-for", envOr("PARLEY_TRUST_FORWARDED_FOR", "") == "true", "take the client address from the last X-Forwarded-For entry: only behind one reverse proxy that sets it (env PARLEY_TRUST_FORWARDED_FOR)")
	fs.StringVar(&o.metricsAddr, "metrics-addr", envOr("PARLEY_METRICS_ADDR", "127.0.0.1:9090"), "listen address of the Prometheus /metrics endpoint; empty means off. Keep it off the public network (env PARLEY_METRICS_ADDR)")
	fs.StringVar(&o.traceExporter, "trace-exporter", envOr("PARLEY_TRACE_EXPORTER", ""), "where spans go: otlp-grpc, otlp-http or zipkin; empty means no tracing (env PARLEY_TRACE_EXPORTER)")
	fs.StringVar(&o.traceEndpoint, "trace-endpoint", envOr("PARLEY_TRACE_ENDPOINT", ""), "the collector: host:port for otlp-grpc and otlp-http, the spans URL (http://host:9411/api/v2/spans) for zipkin (env PARLEY_TRACE_ENDPOINT)")
	sample, err := strconv.ParseFloat(envOr("PARLEY_TRACE_SAMPLE", "0.01"), 64)
	if err != nil {
		sample = -1 // refused below, with the flag's name
	}
	fs.Float64Var(&o.traceSample, "trace-sample", sample, "share of new traces recorded, 0 to 1; a trace a client started sampled is always recorded (env PARLEY_TRACE_SAMPLE)")
	o.daprAPIToken = os.Getenv("DAPR_API_TOKEN")
	o.appAPIToken = os.Getenv("APP_API_TOKEN")
	appPort, _ := strconv.Atoi(envOr("PARLEY_APP_PORT", "0"))
	fs.IntVar(&o.appPort, "app-port", appPort, "port on 127.0.0.1 where daprd delivers invocations to parley; 0 picks a free one (env PARLEY_APP_PORT)")
	o.units.register(fs)
	o.push.register(fs)
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if !set["dev-tokens"] && os.Getenv("PARLEY_DEV_TOKENS") == "" {
		o.devTokens = o.backend == "memory" || (o.sidecar == "launch" && o.profile == "local")
	}
	switch o.backend {
	case "dapr", "memory":
	default:
		return o, fmt.Errorf("-backend %q: use dapr or memory", o.backend)
	}
	if o.jwtLeeway == 0 {
		// auth.Config reads zero as the default; a flag of 0 means none.
		o.jwtLeeway = -1
	}
	if (o.jwtSecretName != "" || o.jwksURLSecretName != "") && o.secretStore == "" {
		return o, errors.New("-jwt-secret-name and -jwks-url-secret-name need -secret-store")
	}
	if o.maxSends < 1 || o.maxSends > maxSendsInFlight {
		return o, fmt.Errorf("-max-sends-in-flight %d: want 1 to %d (PARLEY_MAX_SENDS_IN_FLIGHT)", o.maxSends, maxSendsInFlight)
	}
	if o.logFile.maxSizeMB < 1 {
		return o, fmt.Errorf("-log-max-size %d: want 1 megabyte or more (PARLEY_LOG_MAX_SIZE)", o.logFile.maxSizeMB)
	}
	if o.logFile.maxBackups < 0 {
		return o, fmt.Errorf("-log-max-backups %d: want 0 (keep all) or more (PARLEY_LOG_MAX_BACKUPS)", o.logFile.maxBackups)
	}
	if o.logFile.maxAgeDays < 0 {
		return o, fmt.Errorf("-log-max-age %d: want 0 (no limit) or more days (PARLEY_LOG_MAX_AGE)", o.logFile.maxAgeDays)
	}
	if o.traceSample < 0 || o.traceSample > 1 {
		return o, fmt.Errorf("-trace-sample %v: want a share between 0 and 1 (PARLEY_TRACE_SAMPLE)", o.traceSample)
	}
	switch o.traceExporter {
	case "", "otlp-grpc", "otlp-http", "zipkin":
	default:
		return o, fmt.Errorf("-trace-exporter %q: use otlp-grpc, otlp-http, zipkin or nothing", o.traceExporter)
	}
	if o.traceExporter != "" && o.traceEndpoint == "" {
		return o, fmt.Errorf("-trace-exporter %s needs -trace-endpoint (PARLEY_TRACE_ENDPOINT)", o.traceExporter)
	}
	switch o.sidecar {
	case "launch", "external":
	default:
		return o, fmt.Errorf("-sidecar %q: use launch or external", o.sidecar)
	}
	return o, nil
}

// envInt reads an integer from the environment. A value that is not one
// gives -1, which the flags it feeds refuse with their own name.
func envInt(key string, def int) int {
	v, ok := os.LookupEnv(key)
	if !ok {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		return -1
	}
	return n
}

func envOr(key, def string) string {
	if v, ok := os.LookupEnv(key); ok {
		return v
	}
	return def
}
