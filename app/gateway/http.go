package gateway

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strconv"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/parley-im/parley/app/chat"
	"github.com/parley-im/parley/app/metrics"
	"github.com/parley-im/parley/domain"
	pb "github.com/parley-im/parley/proto/parley/v1"
)

// maxRequestBytes bounds an HTTP request body.
const maxRequestBytes = 1 << 20

func (s *Server) routes() {
	m := http.NewServeMux()
	m.HandleFunc("GET /v1/ws", s.handleWS)
	m.HandleFunc("POST /v1/messages", s.authed(s.postMessage))
	m.HandleFunc("GET /v1/conversations", s.authed(s.getConversations))
	m.HandleFunc("GET /v1/conversations/{id}/messages", s.authed(s.getMessages))
	m.HandleFunc("POST /v1/conversations/{id}/read", s.authed(s.postRead))
	m.HandleFunc("GET /v1/users/online", s.authed(s.getOnline))
	m.HandleFunc("POST /v1/messages/recall", s.authed(s.postRecall))
	m.HandleFunc("POST /v1/messages/edit", s.authed(s.postEdit))
	m.HandleFunc("POST /v1/typing", s.authed(s.postTyping))
	m.HandleFunc("POST /v1/groups", s.authed(s.postGroup))
	m.HandleFunc("POST /v1/groups/{conv}", s.authed(s.postGroupChange))
	m.HandleFunc("GET /v1/groups/{conv}/requests", s.authed(s.getJoinRequests))
	m.HandleFunc("POST /v1/admin/bans", s.adminAuthed(s.postBan))
	m.HandleFunc("GET /v1/admin/bans", s.adminAuthed(s.getBans))
	m.HandleFunc("DELETE /v1/admin/bans/{subject}", s.adminAuthed(s.deleteBan))
	s.unitRoutes(m)
	m.HandleFunc("POST /v1/dev/token", s.postDevToken)
	m.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok", "node": s.cfg.NodeID})
	})
	m.HandleFunc("GET /readyz", s.getReady)
	m.HandleFunc("GET /v1/route", s.getRoute)
	m.HandleFunc("GET /{$}", s.getPage)
	m.HandleFunc("GET /sdk/{file}", s.getSDK)
	m.HandleFunc("/", func(w http.ResponseWriter, _ *http.Request) {
		s.writeError(w, apiError{http.StatusNotFound, CodeNotFound, "no such endpoint or method; see the HTTP API section of the README", false, 0})
	})
	s.mux = m
}

type authedHandler func(w http.ResponseWriter, r *http.Request, user domain.UserID)

func (s *Server) authed(h authedHandler) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		// Before the body is read: an unauthenticated client must not be
		// able to hold the connection by sending it slowly.
		user, _, ok := s.admit(w, r, false)
		if !ok {
			return
		}
		h(w, r, user)
	}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	data, err := json.Marshal(v)
	if err != nil {
		status, data = http.StatusInternalServerError, []byte(`{"error":{"code":"internal","message":"encode response"}}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write(append(data, '\n'))
}

// errorReply is an error as HTTP and invocation replies carry it.
type errorReply struct {
	Code      string `json:"code"`
	Message   string `json:"message"`
	Retryable bool   `json:"retryable"`
	// Until is when a mute or a suspension ends, in Unix milliseconds.
	Until int64 `json:"until,omitempty"`
}

type errorBody struct {
	Error errorReply `json:"error"`
}

func toErrorReply(e apiError) *errorReply {
	return &errorReply{Code: e.Code, Message: e.Message, Retryable: e.Retryable, Until: e.Until}
}

// writeError answers a request with e and counts it.
func (s *Server) writeError(w http.ResponseWriter, e apiError) {
	s.metrics.Error(e.Code)
	writeAPIError(w, e)
}

// writeAPIError answers a request with e.
func writeAPIError(w http.ResponseWriter, e apiError) {
	if e.Status == http.StatusUnauthorized {
		// RFC 6750: the client presented no usable token.
		w.Header().Set("WWW-Authenticate", `Bearer realm="parley", error="invalid_token"`)
	}
	if e.Code == CodeBanned && e.Until > 0 {
		w.Header().Set("Retry-After", retryAfter(e.Until))
	}
	writeJSON(w, e.Status, errorBody{Error: *toErrorReply(e)})
}

// readJSON decodes a bounded JSON body into v.
func (s *Server) readJSON(w http.ResponseWriter, r *http.Request, v any) bool {
	data, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxRequestBytes))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			s.writeError(w, apiError{http.StatusRequestEntityTooLarge, CodeRequestTooLarge, "request body over 1 MiB", false, 0})
		} else {
			s.writeError(w, apiError{http.StatusBadRequest, CodeBadFrame, "could not read the request body", false, 0})
		}
		return false
	}
	if err := json.Unmarshal(data, v); err != nil {
		s.writeError(w, apiError{http.StatusBadRequest, CodeBadFrame, "request body is not JSON of the documented shape: " + trimErr(err), false, 0})
		return false
	}
	return true
}

type sendRequest struct {
	Conv     string   `json:"conv"`
	To       string   `json:"to"`
	Cmid     string   `json:"cmid"`
	Ctype    string   `json:"ctype"`
	Body     string   `json:"body"`
	ReplyTo  uint64   `json:"reply_to"`
	Mentions []string `json:"mentions"`
}

type sendResponse struct {
	*pb.Message
	Duplicate bool `json:"duplicate,omitempty"`
}

func (s *Server) postMessage(w http.ResponseWriter, r *http.Request, user domain.UserID) {
	var req sendRequest
	if !s.readJSON(w, r, &req) {
		return
	}
	if err := checkMentions(req.Mentions); err != nil {
		s.writeError(w, toAPIError(err))
		return
	}
	start := time.Now()
	// A client's traceparent makes the send part of its trace.
	ctx := otel.GetTextMapPropagator().Extract(r.Context(), propagation.HeaderCarrier(r.Header))
	ctx, span := tracer.Start(ctx, "send", trace.WithSpanKind(trace.SpanKindServer))
	defer span.End()
	res, err := s.send.Handle(ctx, chat.SendMessage{
		Sender: user, Conv: req.Conv, To: req.To, ClientMsgID: req.Cmid, ContentType: req.Ctype, Body: req.Body,
		ReplyTo: req.ReplyTo, Mentions: req.Mentions,
	})
	traceSend(span, &res, err)
	if err != nil {
		if errors.Is(err, chat.ErrRateLimited) {
			s.metrics.RateLimited(metrics.LimitSend)
			s.rateLimited(r.Context(), user)
		}
		s.writeError(w, toAPIError(err))
		return
	}
	if !res.Duplicate {
		s.metrics.MessageStored()
	}
	s.logSend(&res.Message, "http", res.Duplicate, time.Since(start), traceFields(ctx)...)
	writeJSON(w, http.StatusOK, sendResponse{Message: toPB(&res.Message), Duplicate: res.Duplicate})
}

func (s *Server) getConversations(w http.ResponseWriter, r *http.Request, user domain.UserID) {
	views, err := s.list.Handle(r.Context(), user)
	if err != nil {
		s.writeError(w, toAPIError(err))
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"conversations": toPBConvs(views)})
}

func (s *Server) getMessages(w http.ResponseWriter, r *http.Request, user domain.UserID) {
	q := r.URL.Query()
	after, err := parseUint(q.Get("after"))
	if err != nil {
		s.writeError(w, apiError{http.StatusBadRequest, CodeBadFrame, "after must be a whole number (a seq)", false, 0})
		return
	}
	limit, err := parseUint(q.Get("limit"))
	if err != nil || limit > 200 {
		s.writeError(w, toAPIError(domain.ErrInvalidLimit))
		return
	}
	page, err := s.history.Handle(r.Context(), chat.History{Reader: user, Conv: r.PathValue("id"), After: after, Limit: int(limit)})
	if err != nil {
		s.writeError(w, toAPIError(err))
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"conv": page.Conv, "messages": toPBList(page.Messages), "more": page.More})
}

func parseUint(s string) (uint64, error) {
	if s == "" {
		return 0, nil
	}
	return strconv.ParseUint(s, 10, 64)
}

func (s *Server) postRead(w http.ResponseWriter, r *http.Request, user domain.UserID) {
	var req struct {
		Seq uint64 `json:"seq"`
	}
	if !s.readJSON(w, r, &req) {
		return
	}
	seq, err := s.markRead.Handle(r.Context(), chat.MarkRead{Reader: user, Conv: r.PathValue("id"), Seq: req.Seq})
	if err != nil {
		s.writeError(w, toAPIError(err))
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"conv": r.PathValue("id"), "read_seq": seq})
}

func (s *Server) getOnline(w http.ResponseWriter, r *http.Request, user domain.UserID) {
	users, err := s.online.Handle(r.Context(), chat.ListOnlineUsers{Viewer: user})
	if err != nil {
		s.writeError(w, toAPIError(err))
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"users": users})
}

// devTokenTTL is how long a development token lasts.
const devTokenTTL = 24 * time.Hour

func (s *Server) postDevToken(w http.ResponseWriter, r *http.Request) {
	if !s.cfg.DevTokens {
		s.writeError(w, apiError{http.StatusNotFound, CodeNotFound, "development tokens are only enabled in the local profile (flag -dev-tokens)", false, 0})
		return
	}
	var req struct {
		User string `json:"user"`
	}
	if !s.readJSON(w, r, &req) {
		return
	}
	u, err := domain.ParseUserID(req.User)
	if err != nil {
		s.writeError(w, toAPIError(err))
		return
	}
	iss, ok := s.verifier.(Issuer)
	if !ok {
		s.writeError(w, apiError{http.StatusNotFound, CodeNotFound, "development tokens need an HS256 secret (-jwt-secret)", false, 0})
		return
	}
	tok, err := iss.Issue(u, devTokenTTL)
	if err != nil {
		s.writeError(w, toAPIError(err))
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"user": u, "token": tok, "expires_in": int(devTokenTTL.Seconds())})
}

func (s *Server) getReady(w http.ResponseWriter, r *http.Request) {
	if s.draining.Load() {
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "draining"})
		return
	}
	if s.cfg.Ready != nil {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		if err := s.cfg.Ready(ctx); err != nil {
			writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "unavailable", "error": "sidecar not answering: " + err.Error()})
			return
		}
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ready", "node": s.cfg.NodeID})
}

type routeNode struct {
	Node  string `json:"node"`
	URL   string `json:"url"`
	Conns int    `json:"conns"`
}

// getRoute tells a client which node to connect to: the live node with the
// fewest connections first. Any node still accepts any client.
func (s *Server) getRoute(w http.ResponseWriter, _ *http.Request) {
	nodes := []routeNode{}
	if s.presence != nil {
		for _, l := range s.presence.LiveNodes() {
			nodes = append(nodes, routeNode{Node: l.Node, URL: l.URL, Conns: l.Conns})
		}
	}
	if len(nodes) == 0 {
		nodes = append(nodes, routeNode{Node: s.cfg.NodeID, URL: s.cfg.PublicURL, Conns: s.hub.Count()})
	}
	writeJSON(w, http.StatusOK, map[string]any{"node": nodes[0], "nodes": nodes})
}
