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

// Verify returns the user a token was issued to.
func (a *Authenticator) Verify(token string) (domain.UserID, error) {
	if token == "" {
		return "", fmt.Errorf("%w: no token: send it as \"Authorization: Bearer <token>\" or ?token=", ErrUnauthorized)
	}
	if len(token) > MaxTokenLen {
		return "", fmt.Errorf("%w: token longer than %d bytes", ErrUnauthorized, MaxTokenLen)
	}
	var claims jwt.RegisteredClaims
	if _, err := a.parser.ParseWithClaims(token, &claims, func(*jwt.Token) (any, error) { return a.secret, nil }); err != nil {
		return "", fmt.Errorf("%w: %v", ErrUnauthorized, err)
	}
	u, err := domain.ParseUserID(claims.Subject)
	if err != nil {
		return "", fmt.Errorf("%w: token subject: %v", ErrUnauthorized, err)
	}
	return u, nil
}

// tokenFrom takes the token from the Authorization header, else from the
// token query parameter (browsers cannot set headers on a WebSocket).
func tokenFrom(r *http.Request) string {
	if h := r.Header.Get("Authorization"); h != "" {
		if t, ok := strings.CutPrefix(h, "Bearer "); ok {
			return strings.TrimSpace(t)
		}
		return strings.TrimSpace(h)
	}
	return r.URL.Query().Get("token")
}
