package gateway

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/parley-im/parley/app/auth"
	"github.com/parley-im/parley/domain"
)

// ErrUnauthorized means the token is missing, malformed, forged or
// expired. It is auth.ErrUnauthorized, which every refusal of a Verifier
// matches.
var ErrUnauthorized = auth.ErrUnauthorized

// Verifier checks a bearer token and says whose it is. *auth.Verifier is
// the one parley runs; its errors match auth.ErrUnauthorized and say why.
type Verifier interface {
	Verify(ctx context.Context, token string) (auth.Claims, error)
}

// Issuer signs development tokens (POST /v1/dev/token). A Verifier that is
// also an Issuer serves them when Config.DevTokens is set.
type Issuer interface {
	Issue(user domain.UserID, ttl time.Duration) (string, error)
}

// errNotBearer answers an Authorization header of another scheme.
var errNotBearer = &auth.TokenError{Kind: auth.ErrMalformed, Detail: `the Authorization header must be "Bearer <token>"`}

// bearerToken takes the token from "Authorization: Bearer <token>". With
// query, a request with no Authorization header may give it as ?token=:
// only the WebSocket upgrade, as browsers cannot set headers on it. The
// HTTP API never does, so that tokens stay out of URLs and their logs.
func bearerToken(r *http.Request, query bool) (string, error) {
	h := r.Header.Get("Authorization")
	if h == "" {
		if query {
			return r.URL.Query().Get("token"), nil
		}
		return "", nil
	}
	scheme, tok, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", errNotBearer
	}
	return strings.TrimSpace(tok), nil
}

// authenticate verifies the request's token; see bearerToken for query.
func (s *Server) authenticate(r *http.Request, query bool) (domain.UserID, error) {
	tok, err := bearerToken(r, query)
	if err != nil {
		return "", err
	}
	claims, err := s.verifier.Verify(r.Context(), tok)
	if err != nil {
		return "", err
	}
	if claims.User == "" {
		// A Verifier must name the user; one that does not is refused
		// rather than let in as nobody.
		return "", fmt.Errorf("%w: the token names no user", auth.ErrUnauthorized)
	}
	return claims.User, nil
}
