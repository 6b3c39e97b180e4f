package gateway

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/parley-im/parley/app/abuse"
	"github.com/parley-im/parley/app/delivery"
	"github.com/parley-im/parley/app/metrics"
	"github.com/parley-im/parley/domain"
	"github.com/parley-im/parley/infrastructure"
)

// eventBanned is the delivery event that tells every node holding a
// device of a suspended user to close it; Count carries the end of the
// suspension in Unix milliseconds. Devices never see it as a frame.
const eventBanned = "banned"

// admit is the door of the WebSocket and of the HTTP API: a suspended
// address is refused before its token is read, a refused token counts
// against the address, and a suspended user is refused. It answers the
// request itself when it refuses.
func (s *Server) admit(w http.ResponseWriter, r *http.Request, query bool) (domain.UserID, abuse.Subject, bool) {
	ip := s.clientIP(r)
	if s.guard != nil && ip.Kind != 0 {
		if err := s.guard.Check(r.Context(), ip); err != nil {
			s.refuse(w, r, err)
			return "", ip, false
		}
	}
	user, err := s.authenticate(r, query)
	if err != nil {
		if s.guard != nil && ip.Kind != 0 {
			if be := s.guard.Record(r.Context(), abuse.AuthFailure, ip); be != nil {
				err = be
			}
		}
		s.refuse(w, r, err)
		return "", ip, false
	}
	if s.guard != nil {
		if err := s.guard.Check(r.Context(), abuse.User(user)); err != nil {
			s.refuse(w, r, err)
			return "", ip, false
		}
	}
	return user, ip, true
}

// refuse answers a request that admit turned away, closing a connection
// whose body was not read: an unauthenticated client must not hold it by
// sending the body slowly.
func (s *Server) refuse(w http.ResponseWriter, r *http.Request, err error) {
	if r.ContentLength != 0 {
		w.Header().Set("Connection", "close")
	}
	ae := toAPIError(err)
	if ae.Code == CodeBanned {
		s.log.Info("refused: suspended", zap.String("reason", err.Error()))
		s.countBan(err)
	}
	s.writeError(w, ae)
}

// countBan counts a request refused because its user or address is
// suspended; err is the guard's answer.
func (s *Server) countBan(err error) {
	var be *abuse.BannedError
	if s.metrics == nil || !errors.As(err, &be) {
		return
	}
	switch be.Subject.Kind {
	case abuse.KindUser:
		s.metrics.BanHit(metrics.BanUser)
	case abuse.KindIP:
		s.metrics.BanHit(metrics.BanAddress)
	}
}

// clientIP is the request's source address as a guard subject; zero when
// it cannot be read.
func (s *Server) clientIP(r *http.Request) abuse.Subject {
	if s.cfg.TrustForwardedFor {
		if xff := r.Header.Values("X-Forwarded-For"); len(xff) > 0 {
			last := xff[len(xff)-1]
			if i := strings.LastIndexByte(last, ','); i >= 0 {
				last = last[i+1:]
			}
			if a, err := netip.ParseAddr(strings.TrimSpace(last)); err == nil {
				return abuse.IP(a)
			}
		}
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return abuse.Subject{}
	}
	return abuse.IP(a)
}

// rateLimited counts a refused request of user; when that suspends the
// user, their devices are closed on every node.
func (s *Server) rateLimited(ctx context.Context, user domain.UserID) {
	if s.guard == nil {
		return
	}
	var be *abuse.BannedError
	if errors.As(s.guard.Record(ctx, abuse.RateLimited, abuse.User(user)), &be) {
		s.log.Info("user suspended for abuse", zap.String("user", string(user)), zap.Time("until", be.Until), zap.String("reason", be.Reason))
		s.closeSuspended(ctx, be.Subject, be.Until)
	}
}

// closeSuspended closes the connections of a subject just suspended: a
// user's on every node, an address's on this node (other nodes refuse it
// at its next connect).
func (s *Server) closeSuspended(ctx context.Context, subj abuse.Subject, until time.Time) {
	switch subj.Kind {
	case abuse.KindUser:
		s.notify(ctx, domain.UserID(subj.ID), delivery.Event{Type: eventBanned, Count: uint64(until.UnixMilli())})
	case abuse.KindIP:
		for _, sess := range s.hub.All() {
			if c, ok := sess.(*conn); ok && c.ip == subj {
				c.closeBanned(until.UnixMilli())
			}
		}
	}
}

// closeBanned closes the connection with CloseBanned, saying until when.
func (c *conn) closeBanned(untilMs int64) {
	c.logger().Info("closing a suspended connection")
	c.closeWith(CloseBanned, "suspended until "+time.UnixMilli(untilMs).UTC().Format(time.RFC3339))
}

// adminAuthed serves h to callers with the operator token. With no token
// configured the operator API does not exist.
func (s *Server) adminAuthed(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if s.cfg.AdminToken == "" || s.guard == nil {
			s.writeError(w, apiError{http.StatusNotFound, CodeNotFound, "the operator API is off (set -admin-token)", false, 0})
			return
		}
		tok, err := bearerToken(r, false)
		if err != nil || tok == "" || subtle.ConstantTimeCompare([]byte(tok), []byte(s.cfg.AdminToken)) != 1 {
			if r.ContentLength != 0 {
				w.Header().Set("Connection", "close")
			}
			s.writeError(w, apiError{http.StatusUnauthorized, CodeUnauthorized, "unauthorized: the operator API needs the admin token", false, 0})
			return
		}
		h(w, r)
	}
}

// banRequest is the body of POST /v1/admin/bans and of v1/admin/ban.
type banRequest struct {
	Subject string `json:"subject"`
	// Until is the end in Unix milliseconds; ForS a length in seconds
	// instead.
	Until  int64  `json:"until"`
	ForS   int64  `json:"for_s"`
	Reason string `json:"reason"`
}

// banView is a suspension as the operator API shows it.
type banView struct {
	Subject  string `json:"subject"`
	Until    int64  `json:"until"`
	Reason   string `json:"reason"`
	Offences int    `json:"offences,omitempty"`
	Manual   bool   `json:"manual,omitempty"`
}

// errBadBan answers a ban request of the wrong shape.
var errBadBan = errors.New("bad ban request")

// maxBanSeconds bounds a ban's length: a year.
const maxBanSeconds = 365 * 24 * 3600

func (s *Server) ban(ctx context.Context, req banRequest) (banView, error) {
	subj, err := abuse.ParseSubject(req.Subject)
	if err != nil {
		return banView{}, fmt.Errorf("%w: %v", errBadBan, err)
	}
	now := time.Now()
	var until time.Time
	switch {
	case req.Until != 0 && req.ForS != 0:
		return banView{}, fmt.Errorf(`%w: give "until" or "for_s", not both`, errBadBan)
	case req.ForS > 0 && req.ForS <= maxBanSeconds:
		until = now.Add(time.Duration(req.ForS) * time.Second)
	case req.Until > now.UnixMilli() && req.Until <= now.Add(maxBanSeconds*time.Second).UnixMilli():
		until = time.UnixMilli(req.Until)
	default:
		return banView{}, fmt.Errorf(`%w: "until" (Unix ms) must be in the future, or "for_s" from 1 to %d`, errBadBan, maxBanSeconds)
	}
	if len(req.Reason) > 200 {
		return banView{}, fmt.Errorf("%w: reason longer than 200 bytes", errBadBan)
	}
	if err := s.guard.Ban(ctx, subj, until, req.Reason); err != nil {
		return banView{}, err
	}
	s.log.Info("suspended by an operator", zap.Stringer("subject", subj), zap.Time("until", until))
	s.closeSuspended(ctx, subj, until)
	reason := req.Reason
	if reason == "" {
		reason = "suspended by an operator"
	}
	return banView{Subject: subj.String(), Until: until.UnixMilli(), Reason: reason, Manual: true}, nil
}

func (s *Server) unban(ctx context.Context, subject string) error {
	subj, err := abuse.ParseSubject(subject)
	if err != nil {
		return fmt.Errorf("%w: %v", errBadBan, err)
	}
	if err := s.guard.Unban(ctx, subj); err != nil {
		return err
	}
	s.log.Info("suspension lifted by an operator", zap.Stringer("subject", subj))
	return nil
}

func (s *Server) listBans(ctx context.Context) ([]banView, error) {
	bans, err := s.guard.List(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]banView, len(bans))
	for i, b := range bans {
		out[i] = banView{Subject: b.Subject.String(), Until: b.Until.UnixMilli(), Reason: b.Reason, Offences: b.Offences, Manual: b.Manual}
	}
	return out, nil
}

// banError sorts the operator API's own errors; the rest go to toAPIError.
func banError(err error) apiError {
	if errors.Is(err, errBadBan) {
		return apiError{http.StatusBadRequest, CodeBadFrame, err.Error(), false, 0}
	}
	return toAPIError(err)
}

func (s *Server) postBan(w http.ResponseWriter, r *http.Request) {
	var req banRequest
	if !s.readJSON(w, r, &req) {
		return
	}
	v, err := s.ban(r.Context(), req)
	if err != nil {
		s.writeError(w, banError(err))
		return
	}
	writeJSON(w, http.StatusOK, v)
}

func (s *Server) deleteBan(w http.ResponseWriter, r *http.Request) {
	if err := s.unban(r.Context(), r.PathValue("subject")); err != nil {
		s.writeError(w, banError(err))
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"subject": r.PathValue("subject"), "lifted": true})
}

func (s *Server) getBans(w http.ResponseWriter, r *http.Request) {
	bans, err := s.listBans(r.Context())
	if err != nil {
		s.writeError(w, banError(err))
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"bans": bans})
}

// Methods an operator's service invokes through Dapr, with the same bodies
// as the operator HTTP API. Dapr access control decides who may call them.
const (
	InvokeBanMethod   = "v1/admin/ban"
	InvokeUnbanMethod = "v1/admin/unban"
	InvokeBansMethod  = "v1/admin/bans"
)

func (s *Server) invokeBan(ctx context.Context, data []byte) ([]byte, error) {
	var req banRequest
	if err := json.Unmarshal(data, &req); err != nil {
		return nil, fmt.Errorf("%w: body is not JSON of the documented shape: %s", infrastructure.ErrInvalidArgument, trimErr(err))
	}
	v, err := s.ban(ctx, req)
	if err != nil {
		return replyError(banError(err))
	}
	return json.Marshal(v)
}

func (s *Server) invokeUnban(ctx context.Context, data []byte) ([]byte, error) {
	var req struct {
		Subject string `json:"subject"`
	}
	if err := json.Unmarshal(data, &req); err != nil {
		return nil, fmt.Errorf("%w: body is not JSON of the documented shape: %s", infrastructure.ErrInvalidArgument, trimErr(err))
	}
	if err := s.unban(ctx, req.Subject); err != nil {
		return replyError(banError(err))
	}
	return json.Marshal(map[string]any{"subject": req.Subject, "lifted": true})
}

func (s *Server) invokeBans(ctx context.Context, _ []byte) ([]byte, error) {
	bans, err := s.listBans(ctx)
	if err != nil {
		return replyError(banError(err))
	}
	return json.Marshal(map[string]any{"bans": bans})
}

// retryAfter is the Retry-After header of a suspension ending at untilMs.
func retryAfter(untilMs int64) string {
	secs := (untilMs - time.Now().UnixMilli() + 999) / 1000
	return strconv.FormatInt(max(secs, 1), 10)
}
