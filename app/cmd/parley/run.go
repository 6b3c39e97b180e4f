package main

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/pprof"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"gopkg.in/natefinch/lumberjack.v2"

	"github.com/parley-im/parley/app/abuse"
	"github.com/parley-im/parley/app/auth"
	"github.com/parley-im/parley/app/chat"
	"github.com/parley-im/parley/app/delivery"
	"github.com/parley-im/parley/app/gateway"
	"github.com/parley-im/parley/app/hook"
	"github.com/parley-im/parley/app/metrics"
	"github.com/parley-im/parley/app/presence"
	"github.com/parley-im/parley/app/settings"
	"github.com/parley-im/parley/app/store"
	"github.com/parley-im/parley/app/tracing"
	"github.com/parley-im/parley/domain"
	"github.com/parley-im/parley/infrastructure"
	"github.com/parley-im/parley/infrastructure/dapr"
	"github.com/parley-im/parley/infrastructure/dapr/daprd"
	"github.com/parley-im/parley/infrastructure/memory"
)

func run(ctx context.Context, args []string, stderr io.Writer) error {
	o, err := parseOptions(args, stderr)
	if err != nil {
		return err
	}
	log, stopLog, err := newLogger(o.logFormat, o.logLevel, stderr, o.logFile)
	if err != nil {
		return err
	}
	defer stopLog()

	ln, err := net.Listen("tcp", o.addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w (is another parley running? pick another with -addr)", o.addr, err)
	}
	if o.nodeID == "" {
		host, _ := os.Hostname()
		o.nodeID = fmt.Sprintf("%s-%d", host, ln.Addr().(*net.TCPAddr).Port)
	}
	log = log.With(zap.String("node", o.nodeID))

	stopTracing, err := tracing.Setup(ctx, tracing.Config{Exporter: o.traceExporter, Endpoint: o.traceEndpoint,
		SampleRatio: o.traceSample, NodeID: o.nodeID})
	if err != nil {
		_ = ln.Close()
		return err
	}
	defer func() {
		// Spans of the last requests are flushed after everything else
		// stopped; a collector that does not answer costs at most this.
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if err := stopTracing(fctx); err != nil {
			log.Warn("spans not flushed", zap.Error(err))
		}
	}()
	if o.traceExporter != "" {
		log.Info("tracing", zap.String("exporter", o.traceExporter), zap.String("endpoint", o.traceEndpoint), zap.Float64("sample", o.traceSample))
	}

	promReg := metrics.NewRegistry()
	m, err := metrics.New(promReg)
	if err != nil {
		_ = ln.Close()
		return err
	}
	if o.metricsAddr != "" {
		stopMetrics := serveMetrics(o.metricsAddr, promReg, log)
		defer stopMetrics()
	}

	backend, secrets, cleanup, err := openBackend(ctx, o, log, m)
	if err != nil {
		_ = ln.Close()
		return err
	}
	defer cleanup()

	live := settings.NewLive(settings.Defaults())
	live.OnReload(m.SettingsReloaded)
	stopSettings, err := followSettings(ctx, o, backend, live, log)
	if err != nil {
		_ = ln.Close()
		return err
	}
	defer stopSettings()

	verifier, err := newVerifier(ctx, o, secrets, log)
	if err != nil {
		_ = ln.Close()
		return err
	}
	defer verifier.Close()

	if o.publicURL == "" {
		o.publicURL = "http://" + ln.Addr().String()
	}
	app, err := newApplication(ctx, o, log, backend, live, verifier, m)
	if err != nil {
		_ = ln.Close()
		return err
	}
	srv := app.gateway
	// Read, write and idle timeouts bound every HTTP request; WebSocket
	// connections clear them once upgraded.
	httpSrv := srv.HTTPServer(zap.NewStdLog(log.Named("http")))
	serveErr := make(chan error, 1)
	go func() { serveErr <- httpSrv.Serve(ln) }()
	if o.debugAddr != "" {
		stopDebug, err := serveDebug(o.debugAddr, log)
		if err != nil {
			return err
		}
		defer stopDebug()
	}
	url := "http://" + ln.Addr().String()
	if tcp := ln.Addr().(*net.TCPAddr); tcp.IP.IsLoopback() {
		url = fmt.Sprintf("http://localhost:%d", tcp.Port)
	}
	log.Info("parley is serving", zap.String("page", url+"/"), zap.String("websocket", url+"/v1/ws"),
		zap.String("backend", o.backend), zap.Bool("dev_tokens", o.devTokens))
	fmt.Fprintf(stderr, "\n  parley is up: open %s/ in a browser (Ctrl-C stops it)\n\n", url)
	if o.readyFile != "" {
		if err := os.WriteFile(o.readyFile, []byte(ln.Addr().String()), 0o644); err != nil {
			log.Warn("write ready file", zap.Error(err))
		}
	}

	select {
	case err := <-serveErr:
		return fmt.Errorf("http server: %w", err)
	case <-ctx.Done():
	}
	log.Info("shutting down", zap.Duration("deadline", o.shutdown))
	sctx, cancel := context.WithTimeout(context.Background(), o.shutdown)
	defer cancel()
	// Stop accepting first, then drain WebSocket connections: hijacked
	// connections are not tracked by http.Server.
	httpErr := httpSrv.Shutdown(sctx)
	gwErr := srv.Shutdown(sctx)
	app.stop(sctx)
	if err := errors.Join(httpErr, gwErr); err != nil {
		log.Warn("shutdown was not clean", zap.Error(err))
	}
	log.Info("stopped")
	return nil
}

// newVerifier builds the token verifier from the options: an HS256
// secret (given, read from the secret store, or random for development),
// and public keys from a file or a JWKS URL.
func newVerifier(ctx context.Context, o options, secrets auth.SecretSource, log *zap.Logger) (*auth.Verifier, error) {
	cfg := auth.Config{
		HS256Secret: []byte(o.jwtSecret), HS256SecretName: o.jwtSecretName,
		KeyFile: o.jwtKeyFile, JWKSURL: o.jwksURL, JWKSURLSecretName: o.jwksURLSecretName,
		Issuer: o.jwtIssuer, UserClaim: o.jwtUserClaim, Leeway: o.jwtLeeway,
		Logger: log.Named("auth"),
	}
	if o.jwtSecretName != "" || o.jwksURLSecretName != "" {
		if secrets == nil {
			return nil, errors.New("-secret-store needs the dapr backend")
		}
		cfg.Secrets = secrets
	}
	for _, a := range strings.Split(o.jwtAudience, ",") {
		if a = strings.TrimSpace(a); a != "" {
			cfg.Audience = append(cfg.Audience, a)
		}
	}
	noKeys := len(cfg.HS256Secret) == 0 && cfg.HS256SecretName == "" && cfg.KeyFile == "" && cfg.JWKSURL == "" && cfg.JWKSURLSecretName == ""
	if len(cfg.HS256Secret) == 0 && cfg.HS256SecretName == "" && o.devTokens {
		cfg.HS256Secret = make([]byte, 32)
		_, _ = rand.Read(cfg.HS256Secret)
		log.Warn("no -jwt-secret given: development tokens use a random secret, so they end with this process")
	}
	if noKeys && !o.devTokens {
		return nil, errors.New("no way to verify tokens: set -jwt-secret (PARLEY_JWT_SECRET), -jwt-key-file, -jwks-url, or -jwt-secret-name with -secret-store")
	}
	v, err := auth.New(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("token verifier: %w", err)
	}
	return v, nil
}

// abuseRules maps the live settings to the guard's rules.
func abuseRules(s settings.Settings) abuse.Rules {
	a := s.Abuse
	return abuse.Rules{
		Window: a.Window, MaxConnectsPerUser: a.MaxConnectsPerUser, MaxConnectsPerIP: a.MaxConnectsPerIP,
		MaxAuthFailures: a.MaxAuthFailures, MaxRateLimited: a.MaxRateLimited, MaxBannedAttempts: a.MaxBannedAttempts,
		FirstBan: a.FirstBan, MaxBan: a.MaxBan, Forget: a.Forget, Disabled: a.Disabled,
	}
}

// application is one wired node.
type application struct {
	store    *store.Store
	gateway  *gateway.Server
	router   *delivery.Router
	presence *presence.Registry
	service  *chat.ServiceHandler
	receipts *chat.ReadReceipts
	// stopUnits ends the hand-offs to other units (a no-op when the node
	// is no unit).
	stopUnits func(context.Context)
	// stopPush drains the queued pushes (a no-op without -push-binding).
	stopPush func(context.Context)
}

// newApplication builds the whole application from a backend: the one place
// where the core meets concrete adapters. It joins the cluster (a lease and
// a node topic) before it returns.
func newApplication(ctx context.Context, o options, log *zap.Logger, b infrastructure.Backend, live *settings.Live, verifier gateway.Verifier, m *metrics.Metrics) (*application, error) {
	st := store.New(b.State)
	hub := delivery.NewHub()
	hub.SetGroupAckMax(live.Load().GroupAckMax)
	live.OnChange(func(s settings.Settings) { hub.SetGroupAckMax(s.GroupAckMax) })
	reg := presence.New(presence.Config{Node: o.nodeID, URL: o.publicURL, LeaseTTL: o.leaseTTL, Metrics: m}, b.State, log.Named("presence"),
		func() (int, []domain.UserID) { return hub.Count(), hub.OnlineUsers() })
	router := delivery.NewRouter(hub, reg, b.PubSub, o.nodeID, log.Named("delivery"))
	router.SetMetrics(m)
	if err := reg.Start(ctx); err != nil {
		return nil, err
	}
	if err := router.Start(ctx); err != nil {
		reg.Stop(ctx)
		return nil, err
	}
	deliver, stopPush, err := setupPush(ctx, o.push, log.Named("push"), b, live, st, hub, reg, router)
	if err != nil {
		reg.Stop(ctx)
		router.Stop(ctx)
		return nil, fmt.Errorf("push: %w", err)
	}
	send := chat.NewSendMessageHandler(st, live, deliver, time.Now)
	if o.hookAppID != "" {
		send.WithHook(hook.New(o.hookAppID, b.Invoker, live, log.Named("hook")))
		log.Info("before-send hook enabled", zap.String("hook_app_id", o.hookAppID))
	}
	var svc *chat.ServiceHandler
	if o.serviceShops != "" {
		shops := map[domain.UserID]bool{}
		for _, sh := range strings.Split(o.serviceShops, ",") {
			if sh = strings.TrimSpace(sh); sh != "" {
				shops[domain.UserID(sh)] = true
			}
		}
		svc = chat.NewServiceHandler(st, live, router, noticeNotifier{router}, b.Invoker, chat.ServiceConfig{
			AssignAppID: o.assignAppID,
			IsShop:      func(u domain.UserID) bool { return shops[u] },
		}, log.Named("service"), time.Now)
		send.WithService(svc)
		log.Info("customer service enabled", zap.Int("shops", len(shops)), zap.String("assign_app_id", o.assignAppID))
	}
	notices := noticeNotifier{router}
	receipts := chat.NewReadReceipts(st, live, notices, log.Named("receipts"), time.Second)
	uc := gateway.UseCases{
		Service:       svc,
		Send:          send,
		History:       chat.NewHistoryHandler(st),
		List:          chat.NewListConversationsHandler(st),
		MarkRead:      chat.NewMarkReadHandler(st).WithReceipts(notices, receipts),
		Groups:        chat.NewGroupsHandler(st, live, router, notices, time.Now),
		ChangeMessage: chat.NewChangeMessageHandler(st, live, router, time.Now),
		Typing:        chat.NewTypingHandler(st, notices, time.Now),
	}
	guard, err := abuse.New(b.State, abuse.Config{Rules: abuseRules(live.Load()), Logger: log.Named("abuse")})
	if err != nil {
		stopPush(ctx)
		reg.Stop(ctx)
		router.Stop(ctx)
		return nil, fmt.Errorf("abuse guard: %w", err)
	}
	live.OnChange(func(s settings.Settings) {
		if err := guard.SetRules(abuseRules(s)); err != nil {
			log.Warn("abuse settings ignored", zap.Error(err))
		}
	})
	var origins []string
	for _, org := range strings.Split(o.allowedOrigins, ",") {
		if org = strings.TrimSpace(org); org != "" {
			origins = append(origins, org)
		}
	}
	gw := gateway.New(gateway.Config{NodeID: o.nodeID, PublicURL: o.publicURL, DevTokens: o.devTokens, Ready: b.Ready,
		AllowedOrigins: origins, AdminToken: o.adminToken, TrustForwardedFor: o.trustForwardedFor, Metrics: m,
		MaxSendsInFlight: o.maxSends},
		log, verifier, live, hub, uc, reg, router).WithGuard(guard)
	if err := gw.ServeInvocations(b.Invoker); err != nil {
		stopPush(ctx)
		reg.Stop(ctx)
		router.Stop(ctx)
		return nil, fmt.Errorf("serve invocations: %w", err)
	}
	stopUnits, err := setupUnits(ctx, o.units, o.settingsPrefix, log.Named("units"), b, &uc, router, gw, st, live)
	if err != nil {
		stopPush(ctx)
		reg.Stop(ctx)
		router.Stop(ctx)
		return nil, fmt.Errorf("units: %w", err)
	}
	receipts.Start()
	return &application{store: st, gateway: gw, router: router, presence: reg, service: svc, receipts: receipts, stopUnits: stopUnits, stopPush: stopPush}, nil
}

// noticeNotifier tells users' devices of chat notices through the router.
type noticeNotifier struct{ r *delivery.Router }

func (n noticeNotifier) Notify(ctx context.Context, users []domain.UserID, nt chat.Notice) {
	for _, u := range users {
		n.r.Notify(ctx, u, delivery.Event{Type: nt.Type, Conv: nt.Conv, Seq: nt.Seq, User: nt.User, Count: nt.Count, Note: nt.Note})
	}
}

// stop leaves the cluster: no more deliveries from other nodes, and the
// lease is deleted so that this node's connections stop counting at once.
// Call it once the gateway has drained: the store's record retries stop
// last, when no use case can start another.
func (a *application) stop(ctx context.Context) {
	if a.service != nil {
		_ = a.service.Stop(ctx)
	}
	a.receipts.Stop()
	a.stopUnits(ctx)
	a.stopPush(ctx)
	a.presence.Stop(ctx)
	a.router.Stop(ctx)
	a.store.Close()
}

// openBackend returns the backend the options name, launching daprd first
// when asked to. cleanup closes the client, then stops the sidecar.
func openBackend(ctx context.Context, o options, log *zap.Logger, m *metrics.Metrics) (infrastructure.Backend, auth.SecretSource, func(), error) {
	if o.backend == "memory" {
		log.Info("backend: in-memory; nothing survives a restart")
		return memory.NewBackend(o.appID, nil, nil), nil, func() {}, nil
	}
	// Invocations from other apps arrive from daprd on an app port of ours.
	appLn, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", o.appPort))
	if err != nil {
		return infrastructure.Backend{}, nil, nil, fmt.Errorf("listen for dapr invocations: %w", err)
	}
	var sc *daprd.Sidecar
	grpcAddr, httpAddr := o.daprGRPC, o.daprHTTP
	if o.sidecar == "launch" {
		root, err := daprd.RepoRoot()
		if err != nil {
			_ = appLn.Close()
			return infrastructure.Backend{}, nil, nil, fmt.Errorf("find the components folder: %w (run from the parley checkout, or use -sidecar external)", err)
		}
		logPath := filepath.Join(os.TempDir(), fmt.Sprintf("parley-daprd-%s.log", o.nodeID))
		sc, err = daprd.Start(ctx, daprd.Options{
			ResourcesPath: filepath.Join(root, "components", o.profile),
			AppID:         o.appID,
			AppPort:       appLn.Addr().(*net.TCPAddr).Port,
			InstanceName:  o.nodeID,
			LogPath:       logPath,
			APIToken:      o.daprAPIToken,
			AppAPIToken:   o.appAPIToken,
			Env:           daprdTraceEnv(o.traceExporter, o.traceEndpoint),
		})
		if err != nil {
			_ = appLn.Close()
			return infrastructure.Backend{}, nil, nil, fmt.Errorf("launch daprd for profile %q: %w", o.profile, err)
		}
		log.Info("daprd is ready", zap.String("profile", o.profile), zap.String("grpc", sc.GRPCAddr()), zap.String("log", logPath))
		grpcAddr, httpAddr = sc.GRPCAddr(), sc.HTTPAddr()
	}
	client, err := dapr.New(ctx, dapr.Config{GRPCAddress: grpcAddr, HTTPAddress: httpAddr, Logger: log.Named("dapr"),
		Observer: m, APIToken: o.daprAPIToken, AppAPIToken: o.appAPIToken})
	if err != nil {
		_ = appLn.Close()
		if sc != nil {
			_ = sc.Stop(context.Background())
		}
		return infrastructure.Backend{}, nil, nil, err
	}
	appSrv := &http.Server{Handler: client.InvocationHandler(), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = appSrv.Serve(appLn) }()
	cleanup := func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = appSrv.Shutdown(sctx)
		_ = client.Close()
		if sc != nil {
			if err := sc.Stop(sctx); err != nil {
				log.Warn("stop daprd", zap.Error(err))
			}
		}
	}
	b := client.Backend()
	b.Bindings = client.OutputBinding()
	if !client.HasConfigStore(ctx) {
		// Profiles without a configuration store read live settings from a file.
		b.Config = nil
	}
	var secrets auth.SecretSource
	if o.secretStore != "" {
		secrets = client.SecretStore(o.secretStore)
	}
	return b, secrets, cleanup, nil
}

// daprdTraceEnv tells a daprd that parley launches where to export its
// spans: sidecar/config.yaml reads these variables, and daprd skips an
// exporter whose address is empty. It is the collector parley's own spans
// go to, so that one trace holds both.
func daprdTraceEnv(exporter, endpoint string) []string {
	switch exporter {
	case tracing.ExporterOTLPGRPC, tracing.ExporterOTLPHTTP:
		protocol := "grpc"
		if exporter == tracing.ExporterOTLPHTTP {
			protocol = "http"
		}
		// daprd takes host:port; parley also takes a URL for otlp-http.
		if u, err := url.Parse(endpoint); err == nil && u.Host != "" {
			endpoint = u.Host
		}
		return []string{"PARLEY_DAPR_OTLP_ENDPOINT=" + endpoint, "PARLEY_DAPR_OTLP_PROTOCOL=" + protocol}
	case tracing.ExporterZipkin:
		return []string{"PARLEY_DAPR_ZIPKIN_ENDPOINT=" + endpoint}
	}
	return nil
}

// serveMetrics serves Prometheus' /metrics on addr, apart from the public
// listener so that it is never exposed with it. A busy address is logged
// and the node serves without it: chat matters more than its metrics.
func serveMetrics(addr string, reg *prometheus.Registry, log *zap.Logger) (stop func()) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		log.Error("metrics are not served: pick a free address with -metrics-addr (PARLEY_METRICS_ADDR)", zap.String("addr", addr), zap.Error(err))
		return func() {}
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", metrics.Handler(reg))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second, WriteTimeout: 30 * time.Second, IdleTimeout: 60 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	log.Info("metrics are serving", zap.String("metrics", "http://"+ln.Addr().String()+"/metrics"))
	return func() { _ = srv.Close() }
}

// logFile says where the log goes when it goes to a file, and how the file
// is rotated. The zero path means the log goes to the writer run is given.
type logFile struct {
	path       string
	maxSizeMB  int // rotate once the file would grow past this
	maxBackups int // rotated files kept; 0 keeps all
	maxAgeDays int // days a rotated file is kept; 0 means no limit
}

// newLogger builds the process logger. JSON logs go through a buffer that
// is flushed every logFlushInterval and at exit: one write(2) per send line
// cost about a tenth of a node's CPU at full load. A console on a terminal
// is written at once. With a log file, the buffer's flushes go to a file
// that lumberjack renames aside with a timestamp (parley-2026-01-02T15-04-05.000.log)
// once it would pass its size, removing the oldest beyond the backups and
// age kept. stop flushes, stops the flusher and closes the file.
func newLogger(format, level string, out io.Writer, file logFile) (log *zap.Logger, stop func(), err error) {
	lvl, err := zapcore.ParseLevel(level)
	if err != nil {
		return nil, nil, fmt.Errorf("-log-level %q: use debug, info, warn or error", level)
	}
	ws := zapcore.AddSync(out)
	closeFile := func() {}
	if file.path != "" {
		// lumberjack opens the file at the first write; a path that cannot
		// be written is refused now rather than lost with every line.
		if err := os.MkdirAll(filepath.Dir(file.path), 0o755); err != nil {
			return nil, nil, fmt.Errorf("-log-file %s: %w", file.path, err)
		}
		f, err := os.OpenFile(file.path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
		if err != nil {
			return nil, nil, fmt.Errorf("-log-file: %w", err)
		}
		_ = f.Close()
		// lumberjack also starts one goroutine, on the first write, that
		// removes old files after each rotation; it lives as long as the
		// process (v2.2.1 never stops it), so a node has exactly one.
		lj := &lumberjack.Logger{Filename: file.path, MaxSize: file.maxSizeMB, MaxBackups: file.maxBackups, MaxAge: file.maxAgeDays}
		ws, out = zapcore.AddSync(lj), lj
		closeFile = func() { _ = lj.Close() }
	}
	if format == "auto" {
		format = "json"
		if f, ok := out.(*os.File); ok {
			if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
				format = "console"
			}
		}
	}
	encCfg := zap.NewProductionEncoderConfig()
	encCfg.EncodeTime = zapcore.ISO8601TimeEncoder
	var enc zapcore.Encoder
	stop = func() { _ = ws.Sync(); closeFile() }
	switch format {
	case "json":
		enc = zapcore.NewJSONEncoder(encCfg)
		buf := &zapcore.BufferedWriteSyncer{WS: ws, Size: 256 << 10, FlushInterval: logFlushInterval}
		ws, stop = buf, func() { _ = buf.Stop(); closeFile() }
	case "console":
		// Colours only for a terminal: in a file they are escape codes.
		encCfg.EncodeLevel = zapcore.CapitalLevelEncoder
		if file.path == "" {
			encCfg.EncodeLevel = zapcore.CapitalColorLevelEncoder
		}
		enc = zapcore.NewConsoleEncoder(encCfg)
	default:
		closeFile()
		return nil, nil, fmt.Errorf("-log-format %q: use auto, console or json", format)
	}
	return zap.New(zapcore.NewCore(enc, ws, lvl)), stop, nil
}

// logFlushInterval bounds how late a JSON log line reaches its file.
const logFlushInterval = 200 * time.Millisecond

// serveDebug serves Go's profiler on addr, apart from the public listener so
// that it is never exposed with it.
func serveDebug(addr string, log *zap.Logger) (func(), error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("-debug-addr %s: %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	log.Info("profiler is serving", zap.String("pprof", "http://"+ln.Addr().String()+"/debug/pprof/"))
	return func() { _ = srv.Close() }, nil
}
