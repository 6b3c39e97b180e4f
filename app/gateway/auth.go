package gateway

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/parley-im/parley/domain"
)

// ErrUnauthorized means the token is missing, malformed, forged or expired.
var ErrUnauthorized = errors.New("unauthorized")

// MaxTokenLen bounds a token before it is parsed.
const MaxTokenLen = 4096

// Authenticator checks HS256 JWTs whose subject is the user id. The zero
// value is not usable; use NewAuthenticator. Safe for concurrent use.
type Authenticator struct {
	secret []byte
	parser *jwt.Parser
	now    func() time.Time
}

// NewAuthenticator returns an authenticator for secret, which must be at
// least 32 bytes: shorter HS256 secrets can be brute-forced.
func NewAuthenticator(secret []byte) (*Authenticator, error) {
	if len(secret) < 32 {
		return nil, fmt.Errorf("jwt secret is %d bytes; use at least 32 random bytes", len(secret))
	}
	return &Authenticator{
		secret: secret,
		parser: jwt.NewParser(jwt.WithValidMethods([]string{"HS256"}), jwt.WithExpirationRequired(), jwt.WithLeeway(30*time.Second)),
		now:    time.Now,
	}, nil
}

// Issue signs a token for user valid for ttl.
func (a *Authenticator) Issue(user domain.UserID, ttl time.Duration) (string, error) {
	now := a.now()
	t := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.RegisteredClaims{
		Subject:   string(user),
		IssuedAt:  jwt.NewNumericDate(now),
		ExpiresAt: jwt.NewNumericDate(now.Add(ttl)),
	})
	return t.SignedString(a.secret)
}

// Verify returns the user a token was issued to. exp must be a number of
// seconds: a token whose exp is a string (which some libraries read as a
// number) is refused.
func (a *Authenticator) Verify(token string) (domain.UserID, error) {
	if token == "" {
		return "", fmt.Errorf("%w: no token: send it as \"Authorization: Bearer <token>\" (or ?token= on the WebSocket)", ErrUnauthorized)
	}
	if len(token) > MaxTokenLen {
		return "", fmt.Errorf("%w: token longer than %d bytes", ErrUnauthorized, MaxTokenLen)
	}
	// MapClaims, not RegisteredClaims: its exp must be a JSON number.
	claims := jwt.MapClaims{}
	if _, err := a.parser.ParseWithClaims(token, claims, func(*jwt.Token) (any, error) { return a.secret, nil }); err != nil {
		return "", fmt.Errorf("%w: %v", ErrUnauthorized, err)
	}
	sub, err := claims.GetSubject()
	if err != nil {
		return "", fmt.Errorf("%w: token subject: %v", ErrUnauthorized, err)
	}
	u, err := domain.ParseUserID(sub)
	if err != nil {
		return "", fmt.Errorf("%w: token subject: %v", ErrUnauthorized, err)
	}
	return u, nil
}

// errNotBearer answers an Authorization header of another scheme.
var errNotBearer = fmt.Errorf("%w: the Authorization header must be \"Bearer <token>\"", ErrUnauthorized)

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
func (a *Authenticator) authenticate(r *http.Request, query bool) (domain.UserID, error) {
	tok, err := bearerToken(r, query)
	if err != nil {
		return "", err
	}
	return a.Verify(tok)
}
