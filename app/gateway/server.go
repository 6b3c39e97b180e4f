// Package gateway is parley's edge: the WebSocket endpoint, the HTTP API and
// the chat page. It authenticates, decodes frames, calls the chat use cases
// and maps their errors to protocol codes in one place.
package gateway

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"log"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/zap"

	"github.com/parley-im/parley/app/abuse"
	"github.com/parley-im/parley/app/chat"
	"github.com/parley-im/parley/app/delivery"
	"github.com/parley-im/parley/app/gateway/wsconn"
	"github.com/parley-im/parley/app/metrics"
	"github.com/parley-im/parley/app/presence"
	"github.com/parley-im/parley/app/settings"
	"github.com/parley-im/parley/domain"
)

// Config sets up a Server. Every zero value has a documented default.
type Config struct {
	// NodeID names this node in logs and hello frames. Zero means "node-1".
	NodeID string
	// PublicURL is where clients reach this node, for GET /v1/route.
	PublicURL string
	// DevTokens enables POST /v1/dev/token, which hands out a token for any
	// user name. Only for the local profile: it is an open door.
	DevTokens bool
	// MaxFrameBytes bounds one WebSocket frame. A larger frame closes the
	// connection with 1009. Zero means 64 KiB.
	MaxFrameBytes int64
	// MaxQueueBytes and MaxQueueFrames bound a connection's write queue; a
	// client that lets it fill is disconnected with 4008. Zero means 1 MiB
	// and 1024 frames.
	MaxQueueBytes  int
	MaxQueueFrames int
	// MaxPendingAcks bounds messages awaiting a device ACK per connection.
	// Zero means 4096.
	MaxPendingAcks int
	// WriteTimeout bounds one write to a client. Zero means 10s.
	WriteTimeout time.Duration
	// MaxConnsPerUser bounds one user's devices on this node. Zero means 16.
	MaxConnsPerUser int
	// Ready reports whether the backend answers, for /readyz. Nil means always.
	Ready func(ctx context.Context) error
	// MaxFrameRate and MaxFrameBurst bound the frames one connection may
	// send, of every type: past the burst the connection's reader is
	// slowed to the rate, and a client still a second behind is closed
	// with 4011. Zero means 1000 per second and a burst of 2000.
	MaxFrameRate  int
	MaxFrameBurst int
	// MaxSendsInFlight bounds the sends of one connection handled at
	// once; the connection's next frame waits for a free one. Its sends
	// still take their seqs in the order they came, and their answers go
	// out in that order. Zero means DefaultMaxSendsInFlight; 1 handles
	// one at a time.
	MaxSendsInFlight int
	// DeliveredWindow is the shortest gap between two "delivered" events
	// for one (conversation, sender, reader): acknowledgements in between
	// are merged, the newest seq winning. Zero means 100ms.
	DeliveredWindow time.Duration
	// AllowedOrigins lists the browser origins (scheme://host[:port]) whose
	// pages may open a WebSocket, besides the page's own origin. Empty
	// means only the same origin, or no Origin at all (API clients).
	AllowedOrigins []string
	// ReadHeaderTimeout, ReadTimeout, HTTPWriteTimeout and IdleTimeout are
	// the http.Server limits of HTTPServer: how long a client may take to
	// send headers, a whole request, how long a reply may take, and how
	// long an idle keep-alive connection stays. WebSocket connections are
	// not bound by them: their deadlines are cleared after the upgrade.
	// Zero means 5s, 30s, 30s and 60s.
	ReadHeaderTimeout time.Duration
	ReadTimeout       time.Duration
	HTTPWriteTimeout  time.Duration
	IdleTimeout       time.Duration
	// AdminToken authenticates the operator API (/v1/admin/...). Empty
	// means the operator API is off: its routes answer 404.
	AdminToken string
	// TrustForwardedFor takes a client's address from the last entry of
	// X-Forwarded-For, which the one reverse proxy in front of parley
	// appends, instead of the socket's peer. Zero value: the peer, which
	// behind a proxy is the proxy, so IP limits then count the proxy.
	TrustForwardedFor bool
	// Metrics counts connections, frames, messages and errors. Nil means
	// none: every call on a nil *metrics.Metrics returns at once.
	Metrics *metrics.Metrics
}

func (c *Config) defaults() {
	if c.NodeID == "" {
		c.NodeID = "node-1"
	}
	if c.MaxFrameBytes == 0 {
		c.MaxFrameBytes = 64 << 10
	}
	if c.MaxQueueBytes == 0 {
		c.MaxQueueBytes = 1 << 20
	}
	if c.MaxQueueFrames == 0 {
		c.MaxQueueFrames = 1024
	}
	if c.MaxPendingAcks == 0 {
		c.MaxPendingAcks = 4096
	}
	if c.WriteTimeout == 0 {
		c.WriteTimeout = 10 * time.Second
	}
	if c.MaxConnsPerUser == 0 {
		c.MaxConnsPerUser = 16
	}
	if c.MaxFrameRate == 0 {
		c.MaxFrameRate = 1000
	}
	if c.MaxFrameBurst == 0 {
		c.MaxFrameBurst = 2000
	}
	if c.MaxSendsInFlight <= 0 {
		c.MaxSendsInFlight = DefaultMaxSendsInFlight
	}
	if c.DeliveredWindow == 0 {
		c.DeliveredWindow = 100 * time.Millisecond
	}
	for _, d := range []struct {
		v   *time.Duration
		def time.Duration
	}{{&c.ReadHeaderTimeout, 5 * time.Second}, {&c.ReadTimeout, 30 * time.Second}, {&c.HTTPWriteTimeout, 30 * time.Second}, {&c.IdleTimeout, 60 * time.Second}} {
		if *d.v == 0 {
			*d.v = d.def
		}
	}
}

// HTTPServer returns the http.Server to serve Handler with, its timeouts
// set from Config, so that a client that sends nothing, or slowly, or
// holds an idle connection, is cut. errorLog may be nil.
func (s *Server) HTTPServer(errorLog *log.Logger) *http.Server {
	return &http.Server{
		Handler:           s.Handler(),
		ReadHeaderTimeout: s.cfg.ReadHeaderTimeout,
		ReadTimeout:       s.cfg.ReadTimeout,
		WriteTimeout:      s.cfg.HTTPWriteTimeout,
		IdleTimeout:       s.cfg.IdleTimeout,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          errorLog,
	}
}

// Server serves WebSocket, HTTP and the page. The zero value is not usable;
// use New. Safe for concurrent use.
type Server struct {
	cfg      Config
	metrics  *metrics.Metrics // cfg.Metrics, one load closer on hot paths
	log      *zap.Logger
	verifier Verifier
	guard    *abuse.Guard
	// mover moves conversations between units; nil when the node is
	// not one of several units.
	mover    Mover
	settings *settings.Live
	hub      *delivery.Hub
	send     *chat.SendMessageHandler
	history  *chat.HistoryHandler
	list     *chat.ListConversationsHandler
	markRead *chat.MarkReadHandler
	// delivered and online are built here from the others when the
	// wiring gives none.
	delivered *chat.ConfirmDeliveryHandler
	online    *chat.ListOnlineUsersHandler
	service   *chat.ServiceHandler
	groups    *chat.GroupsHandler
	change    *chat.ChangeMessageHandler
	typing    *chat.TypingHandler
	presence  Presence
	notifier  Notifier
	upgrader  websocket.Upgrader
	mux       *http.ServeMux
	// wsCfg bounds every connection's transport.
	wsCfg wsconn.Config

	// slots counts each user's connections on this node, taken before the
	// upgrade so that concurrent upgrades cannot pass MaxConnsPerUser.
	slotsMu sync.Mutex
	slots   map[domain.UserID]int

	draining atomic.Bool
	admitMu  sync.Mutex // orders conns.Add before a shutdown's conns.Wait
	conns    sync.WaitGroup

	pollerMu sync.Mutex
	poller   *wsconn.Poller
}

// startPoller starts the poller of idle connections on the first one.
func (s *Server) startPoller() error {
	s.pollerMu.Lock()
	defer s.pollerMu.Unlock()
	if s.poller != nil {
		return nil
	}
	p, err := wsconn.NewPoller()
	if err != nil {
		return err
	}
	s.poller = p
	return nil
}

func (s *Server) loadPoller() *wsconn.Poller {
	s.pollerMu.Lock()
	defer s.pollerMu.Unlock()
	return s.poller
}

// UseCases are the handlers the gateway calls.
type UseCases struct {
	Send     *chat.SendMessageHandler
	History  *chat.HistoryHandler
	List     *chat.ListConversationsHandler
	MarkRead *chat.MarkReadHandler
	// Delivered handles devices' acknowledgements. Nil means one built on
	// History that notifies through the Server's Notifier.
	Delivered *chat.ConfirmDeliveryHandler
	// Online lists online users. Nil means one built on the hub and the
	// Presence registry.
	Online *chat.ListOnlineUsersHandler
	// Service hands customer-service conversations to agents (v1/assign).
	// Nil means no customer service.
	Service *chat.ServiceHandler
	// Groups creates and changes groups. Nil: group frames and routes
	// answer unknown_type / not_found.
	Groups *chat.GroupsHandler
	// ChangeMessage recalls and edits messages. Nil: recall and edit are
	// unknown.
	ChangeMessage *chat.ChangeMessageHandler
	// Typing passes typing notices. Nil: typing is unknown.
	Typing *chat.TypingHandler
}

// Presence is the cluster-wide presence registry as the gateway needs it.
type Presence interface {
	Connect(ctx context.Context, u domain.UserID, e presence.Entry) error
	Disconnect(ctx context.Context, u domain.UserID, conn string) error
	OnlineUsers(local []domain.UserID) []domain.UserID
	LiveNodes() []presence.Lease
}

// Notifier sends events to every device of a user, on any node.
type Notifier interface {
	Notify(ctx context.Context, u domain.UserID, ev delivery.Event)
}

// New builds a Server. pres and notifier may be nil for a node that runs
// alone.
func New(cfg Config, log *zap.Logger, verifier Verifier, live *settings.Live, hub *delivery.Hub, uc UseCases, pres Presence, notifier Notifier) *Server {
	cfg.defaults()
	s := &Server{
		cfg: cfg, metrics: cfg.Metrics, log: log, verifier: verifier, settings: live, hub: hub, presence: pres, notifier: notifier,
		send: uc.Send, history: uc.History, list: uc.List, markRead: uc.MarkRead,
		delivered: uc.Delivered, online: uc.Online, service: uc.Service,
		groups: uc.Groups, change: uc.ChangeMessage, typing: uc.Typing,
		wsCfg: wsconn.Config{
			MaxMessageBytes: cfg.MaxFrameBytes, MaxQueueBytes: cfg.MaxQueueBytes,
			MaxQueueFrames: cfg.MaxQueueFrames, WriteTimeout: cfg.WriteTimeout,
		},
		upgrader: websocket.Upgrader{
			// The library reads nothing after the handshake (see
			// package wsconn); its reader gets the smallest buffer it takes.
			ReadBufferSize:  wsconn.MaxControlPayload,
			WriteBufferSize: 1024,
			// A shared pool means an idle connection holds no write buffer.
			WriteBufferPool:   &sync.Pool{},
			Subprotocols:      []string{SubprotocolJSON, SubprotocolProto},
			HandshakeTimeout:  10 * time.Second,
			EnableCompression: false,
			// The page is served from the same origin; API clients send no
			// Origin. Other browser pages are refused unless allowed.
			CheckOrigin: func(r *http.Request) bool { return originAllowed(r, cfg.AllowedOrigins) },
		},
	}
	s.upgrader.Error = s.upgradeError
	if s.delivered == nil {
		s.delivered = chat.NewConfirmDeliveryHandler(uc.History, chat.NewCoalescingNotifier(deliveryNotifier{s}, cfg.DeliveredWindow))
	}
	if s.online == nil {
		var cluster chat.ClusterUsers
		if pres != nil {
			cluster = pres
		}
		s.online = chat.NewListOnlineUsersHandler(hub, cluster)
	}
	s.routes()
	return s
}

// WithGuard makes s enforce g's suspensions and feed it connections,
// refused tokens and rate-limited sends. Call it before serving. Without a
// guard nothing is counted or suspended.
func (s *Server) WithGuard(g *abuse.Guard) *Server {
	s.guard = g
	return s
}

// deliveryNotifier sends "delivered" events through the Server's Notifier.
type deliveryNotifier struct{ s *Server }

func (n deliveryNotifier) NotifyDelivered(ctx context.Context, sender domain.UserID, conv domain.ConversationID, seq uint64, reader domain.UserID) {
	n.s.notify(ctx, sender, delivery.Event{Type: "delivered", Conv: conv, Seq: seq, User: reader})
}

// Handler is the HTTP handler of every endpoint.
func (s *Server) Handler() http.Handler { return s.mux }

func newConnID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return "c" + hex.EncodeToString(b[:])
}

func (s *Server) handleWS(w http.ResponseWriter, r *http.Request) {
	if s.draining.Load() {
		s.writeError(w, apiError{http.StatusServiceUnavailable, CodeUnavailable, "server is shutting down; connect to another node or retry", true, 0})
		return
	}
	user, ip, ok := s.admit(w, r, true)
	if !ok {
		return
	}
	if s.guard != nil {
		if err := s.guard.Record(r.Context(), abuse.Connect, abuse.User(user), ip); err != nil {
			s.countBan(err)
			s.writeError(w, toAPIError(err))
			return
		}
	}
	if !s.takeSlot(user) {
		s.metrics.RateLimited(metrics.LimitConnections)
		s.writeError(w, apiError{http.StatusTooManyRequests, CodeRateLimited, "too many connections for this user on this node", true, 0})
		return
	}
	admitted := false
	defer func() {
		if !admitted {
			s.releaseSlot(user)
		}
	}()
	device := r.URL.Query().Get("device")
	if len(device) > 32 {
		device = device[:32]
	}
	if err := s.startPoller(); err != nil {
		s.log.Error("cannot watch connections", zap.Error(err))
		s.writeError(w, apiError{http.StatusServiceUnavailable, CodeUnavailable, "server cannot take connections now; retry", true, 0})
		return
	}
	ws, err := s.upgrader.Upgrade(w, r, nil)
	if err != nil {
		return // the upgrader already answered with an HTTP error
	}
	// The http.Server's read and write timeouts bound requests, not a
	// WebSocket's life: the deadlines they set stay on the hijacked socket.
	_ = ws.NetConn().SetDeadline(time.Time{})
	// Clone what the connection keeps, so that it does not pin the request.
	c := &conn{srv: s, id: newConnID(), user: domain.UserID(strings.Clone(string(user))), device: strings.Clone(device), codec: jsonCodec{},
		ip: ip, sinceMs: time.Now().UnixMilli()}
	if ws.Subprotocol() == SubprotocolProto {
		c.codec, c.encoding = protoCodec{}, delivery.EncodingProtobuf
	}
	c.wc.Init(ws, &s.wsCfg, c, s.loadPoller(), c.codec.binary())
	// Serve on a goroutine of our own and let the handler return: net/http
	// then releases its per-connection buffers and request, which would
	// otherwise stay alive for the whole life of the WebSocket. The context
	// keeps the request's trace, if it has one, and nothing else: the
	// request's own contexts (two cancellable ones and their values) cost
	// each connection a few hundred bytes for as long as it lives.
	c.ctx = context.Background()
	if sc := trace.SpanContextFromContext(r.Context()); sc.IsValid() {
		c.ctx = trace.ContextWithSpanContext(c.ctx, sc)
	}
	// Counted under admitMu, so that no connection is added once Shutdown
	// waits for them; one that arrives that late is closed at once.
	s.admitMu.Lock()
	if s.draining.Load() {
		s.admitMu.Unlock()
		_ = ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(CloseGoingAway, "server shutting down; reconnect"), time.Now().Add(time.Second))
		_ = ws.Close()
		return
	}
	s.conns.Add(1)
	s.admitMu.Unlock()
	// From here the slot is the connection's: teardown gives it back.
	admitted = true
	s.metrics.ConnOpened()
	go s.serveConn(c)
}

// takeSlot reserves one of user's MaxConnsPerUser connections on this node.
func (s *Server) takeSlot(user domain.UserID) bool {
	s.slotsMu.Lock()
	defer s.slotsMu.Unlock()
	if s.slots[user] >= s.cfg.MaxConnsPerUser {
		return false
	}
	if s.slots == nil {
		s.slots = make(map[domain.UserID]int)
	}
	s.slots[user]++
	return true
}

// releaseSlot gives back a slot taken by takeSlot.
func (s *Server) releaseSlot(user domain.UserID) {
	s.slotsMu.Lock()
	defer s.slotsMu.Unlock()
	if s.slots[user] <= 1 {
		delete(s.slots, user)
		return
	}
	s.slots[user]--
}

func (s *Server) serveConn(c *conn) {
	// Presence, then hello, then the hub: once the device has its hello,
	// other nodes know where it is, so a message sent after that reaches
	// it wherever the sender is; and no push comes before the hello.
	if s.presence != nil {
		if err := s.presence.Connect(c.ctx, c.user, presence.Entry{Conn: c.id, Device: c.device, SinceMs: c.sinceMs}); err != nil {
			c.logger().Warn("presence not recorded; devices on other nodes may need to sync", zap.Error(err))
		}
	}
	c.hello()
	n := s.hub.Add(c)
	c.logger().Info("connected", zap.String("device", c.device), zap.Int("user_conns", n))
	c.start()
}

func (s *Server) notify(ctx context.Context, u domain.UserID, ev delivery.Event) {
	if s.notifier != nil {
		s.notifier.Notify(ctx, u, ev)
		return
	}
	s.hub.NotifyUser(u, ev)
}

// originAllowed admits no Origin (API clients), the page's own origin, and
// the allowed ones.
func originAllowed(r *http.Request, allowed []string) bool {
	origin := r.Header.Get("Origin")
	if origin == "" || origin == "http://"+r.Host || origin == "https://"+r.Host {
		return true
	}
	for _, a := range allowed {
		if strings.EqualFold(origin, a) {
			return true
		}
	}
	return false
}

// upgradeError answers a refused upgrade in the shape of every other error.
func (s *Server) upgradeError(w http.ResponseWriter, _ *http.Request, status int, reason error) {
	if status == http.StatusForbidden {
		s.writeError(w, apiError{status, CodeOriginNotAllowed, "this page's origin may not open a WebSocket here; see AllowedOrigins", false, 0})
		return
	}
	s.writeError(w, apiError{status, CodeBadFrame, "not a valid WebSocket upgrade: " + reason.Error(), false, 0})
}

// Shutdown stops accepting connections, lets every connection finish the
// frame it is handling and flush its replies, closes it with 1001 so the
// client reconnects elsewhere, and waits for all of them until ctx ends.
func (s *Server) Shutdown(ctx context.Context) error {
	s.admitMu.Lock()
	s.draining.Store(true)
	s.admitMu.Unlock()
	for _, sess := range s.hub.All() {
		if c, ok := sess.(*conn); ok {
			// A connection being read drains when its read ends; an idle
			// one drains now.
			c.mu.Lock()
			reading := c.reading
			c.mu.Unlock()
			switch {
			case !c.wc.Polled():
				// Its goroutine waits in a blocking read: interrupt it;
				// readReady then drains.
				c.wc.InterruptRead()
			case !reading:
				go c.drain()
			}
		}
	}
	done := make(chan struct{})
	go func() {
		s.conns.Wait()
		if p := s.loadPoller(); p != nil {
			p.Stop()
		}
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		for _, sess := range s.hub.All() {
			if c, ok := sess.(*conn); ok {
				c.closeWith(CloseGoingAway, "server shutting down")
			}
		}
		// Closed, they unregister at once; do not wait past the deadline
		// for one stuck in a handler.
		select {
		case <-done:
		case <-time.After(time.Second):
		}
		return errors.New("shutdown deadline passed; remaining connections were closed")
	}
}

// logSend writes a send's one line, with the ids that follow the message
// across nodes. traced are the send's trace and span ids (traceFields of
// the send's ctx): present when the send is traced, absent otherwise.
func (s *Server) logSend(m *domain.Message, connID string, dup bool, took time.Duration, traced ...zap.Field) {
	f := [9]zap.Field{
		zap.String("conv", string(m.Conv)), zap.Uint64("seq", m.Seq), zap.String("msg_id", m.ID),
		zap.String("sender", string(m.Sender)), zap.String("conn", connID), zap.Bool("duplicate", dup),
		zap.Duration("took", took)}
	n := 7 + copy(f[7:], traced)
	s.log.Info("send", f[:n]...)
}
