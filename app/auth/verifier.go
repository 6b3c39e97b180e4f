// Package auth verifies the JWTs that clients present to parley: HS256 with
// a shared secret, or RS256, ES256 and EdDSA with public keys from a PEM or
// JWKS file or from an identity provider's JWKS endpoint, which is cached
// and refreshed. It also issues HS256 tokens for development.
//
// Every refusal is a *TokenError that matches ErrUnauthorized and one
// precise reason (ErrExpired, ErrAudience, ...) with errors.Is.
package auth

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"go.uber.org/zap"

	"github.com/parley-im/parley/domain"
)

// ErrNoSigningKey means Issue was called on a Verifier without an HS256 secret.
var ErrNoSigningKey = errors.New("no HS256 secret to sign tokens with")

// Claims is what a verified token says.
type Claims struct {
	// User is the user id from Config.UserClaim.
	User domain.UserID
	// Issuer is the iss claim, empty if absent.
	Issuer string
	// Audience is the aud claim, empty if absent.
	Audience []string
	// ExpiresAt is the exp claim.
	ExpiresAt time.Time
	// IssuedAt is the iat claim, zero if absent.
	IssuedAt time.Time
	// KeyID is the kid header, empty if absent.
	KeyID string
	// Algorithm is the alg header: RS256, ES256, EdDSA or HS256.
	Algorithm string
}

// Verifier checks tokens. The zero value is not usable; call New. Safe for
// concurrent use. A Verifier with public keys runs one goroutine that
// refreshes them; it stops when the context given to New ends or on Close.
type Verifier struct {
	cfg    Config
	secret []byte
	parser *jwt.Parser

	// fetch loads the public key set; nil when only HS256 is configured.
	fetch func(ctx context.Context) (*keySet, error)
	keys  atomic.Pointer[keySet]

	ctx    context.Context // lifetime of the refresher and of fetches
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu        sync.Mutex
	closed    bool
	inflight  *fetchCall // the running fetch, joined by every caller
	lastFetch time.Time  // when the last fetch started
}

// fetchCall is one fetch; err is set before done is closed.
type fetchCall struct {
	done chan struct{}
	err  error
}

// New checks cfg, reads its secrets, and loads the public keys once: a key
// source that cannot be read fails New, so that a wrong URL or file is
// found at start rather than at the first login. Afterwards a failed
// refresh keeps the last good key set. The refresher lives until ctx ends
// or Close is called.
func New(ctx context.Context, cfg Config) (*Verifier, error) {
	cfg.withDefaults()
	if err := resolveSecrets(ctx, &cfg); err != nil {
		return nil, err
	}
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	v := &Verifier{cfg: cfg}
	if len(cfg.HS256Secret) > 0 {
		v.secret = append([]byte(nil), cfg.HS256Secret...)
	}
	v.parser = jwt.NewParser(
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
		jwt.WithLeeway(cfg.Leeway),
		jwt.WithTimeFunc(cfg.Now),
		jwt.WithStrictDecoding(),
	)
	switch {
	case cfg.KeyFile != "":
		path := cfg.KeyFile
		v.fetch = func(context.Context) (*keySet, error) {
			data, err := os.ReadFile(path)
			if err != nil {
				return nil, fmt.Errorf("read key file: %w", err)
			}
			set, err := parseKeyFile(data)
			if err != nil {
				return nil, fmt.Errorf("key file %s: %w", path, err)
			}
			return set, nil
		}
	case cfg.JWKSURL != "":
		client := cfg.HTTPClient
		if client == nil {
			client = &http.Client{Timeout: cfg.FetchTimeout}
		}
		u := cfg.JWKSURL
		v.fetch = func(ctx context.Context) (*keySet, error) { return fetchJWKS(ctx, client, u) }
	}
	v.ctx, v.cancel = context.WithCancel(ctx)
	if v.fetch == nil {
		return v, nil
	}
	if err := v.refresh(ctx, true); err != nil {
		v.Close()
		return nil, fmt.Errorf("load public keys: %w", err)
	}
	v.wg.Add(1)
	go v.refreshLoop()
	return v, nil
}

func resolveSecrets(ctx context.Context, cfg *Config) error {
	if (cfg.HS256SecretName != "" || cfg.JWKSURLSecretName != "") && cfg.Secrets == nil {
		return errors.New("auth config: a secret name is set but no secret source")
	}
	if cfg.HS256SecretName != "" && len(cfg.HS256Secret) == 0 {
		s, err := cfg.Secrets.Secret(ctx, cfg.HS256SecretName)
		if err != nil {
			return fmt.Errorf("read HS256 secret %q: %w", cfg.HS256SecretName, err)
		}
		cfg.HS256Secret = []byte(s)
	}
	if cfg.JWKSURLSecretName != "" && cfg.JWKSURL == "" {
		s, err := cfg.Secrets.Secret(ctx, cfg.JWKSURLSecretName)
		if err != nil {
			return fmt.Errorf("read JWKS URL secret %q: %w", cfg.JWKSURLSecretName, err)
		}
		cfg.JWKSURL = strings.TrimSpace(s)
	}
	return nil
}

func (c *Config) validate() error {
	if len(c.HS256Secret) > 0 && len(c.HS256Secret) < minSecretLen {
		return fmt.Errorf("auth config: HS256 secret is %d bytes; use at least %d random bytes", len(c.HS256Secret), minSecretLen)
	}
	if c.KeyFile != "" && c.JWKSURL != "" {
		return errors.New("auth config: set a key file or a JWKS URL, not both")
	}
	if len(c.HS256Secret) == 0 && c.KeyFile == "" && c.JWKSURL == "" {
		return errors.New("auth config: no key: set an HS256 secret, a key file or a JWKS URL")
	}
	if c.JWKSURL != "" {
		u, err := url.Parse(c.JWKSURL)
		if err != nil || u.Host == "" {
			return errors.New("auth config: the JWKS URL is not an absolute URL")
		}
		if u.Scheme != "https" && !(u.Scheme == "http" && c.AllowHTTP) {
			return fmt.Errorf("auth config: the JWKS URL must be https, not %q (AllowHTTP permits http)", u.Scheme)
		}
	}
	for _, a := range c.Audience {
		if a == "" {
			return errors.New("auth config: an empty audience")
		}
	}
	if c.RefreshInterval < 0 || c.MinRefetchInterval < 0 || c.FetchTimeout < 0 || c.MaxAge < 0 {
		return errors.New("auth config: negative interval")
	}
	return nil
}

// Close stops the refresher and waits for it. Verify keeps working with the
// last keys. Safe to call more than once.
func (v *Verifier) Close() {
	v.mu.Lock()
	v.closed = true
	v.mu.Unlock()
	v.cancel()
	v.wg.Wait()
}

// Issue signs an HS256 token for user that expires after ttl, with the
// configured issuer and audience, so that Verify accepts it. It is for the
// development token endpoint; production tokens come from an identity
// provider.
func (v *Verifier) Issue(user domain.UserID, ttl time.Duration) (string, error) {
	if v.secret == nil {
		return "", ErrNoSigningKey
	}
	if ttl <= 0 {
		return "", fmt.Errorf("issue token: ttl %v is not positive", ttl)
	}
	now := v.cfg.Now()
	claims := jwt.MapClaims{
		v.cfg.UserClaim: string(user),
		"iat":           now.Unix(),
		"exp":           now.Add(ttl).Unix(),
	}
	if v.cfg.Issuer != "" {
		claims["iss"] = v.cfg.Issuer
	}
	if len(v.cfg.Audience) > 0 {
		claims["aud"] = v.cfg.Audience
	}
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString(v.secret)
	if err != nil {
		return "", fmt.Errorf("sign token: %w", err)
	}
	return s, nil
}

// Verify checks token and returns its claims, or a *TokenError. ctx bounds
// the wait for a key set fetch that an unknown kid may start.
func (v *Verifier) Verify(ctx context.Context, token string) (Claims, error) {
	if token == "" {
		return Claims{}, refuse(ErrNoToken, `send it as "Authorization: Bearer <token>" or ?token=`)
	}
	if len(token) > MaxTokenLen {
		return Claims{}, refuse(ErrMalformed, "token longer than %d bytes", MaxTokenLen)
	}
	claims := jwt.MapClaims{}
	tok, err := v.parser.ParseWithClaims(token, claims, func(t *jwt.Token) (any, error) { return v.keyFor(ctx, t) })
	if err != nil {
		return Claims{}, v.classify(err, claims)
	}
	return v.checkClaims(tok, claims)
}

// keyFor picks the key a token's header names, refusing any algorithm that
// does not fit the key: the key decides the algorithm, never the token.
func (v *Verifier) keyFor(ctx context.Context, t *jwt.Token) (any, error) {
	if _, ok := t.Header["crit"]; ok {
		return nil, refuse(ErrMalformed, "the crit header names extensions parley does not support")
	}
	kid := ""
	if raw, ok := t.Header["kid"]; ok {
		s, ok := raw.(string)
		if !ok {
			return nil, refuse(ErrMalformed, "the kid header is not a string")
		}
		kid = s
	}
	alg := t.Method.Alg()
	switch alg {
	case AlgHS256:
		if v.secret == nil {
			return nil, refuse(ErrAlgorithm, "HS256 tokens are not accepted here")
		}
		return v.secret, nil
	case AlgRS256, AlgES256, AlgEdDSA:
	default:
		return nil, refuse(ErrAlgorithm, "alg %q is not accepted; parley accepts RS256, ES256, EdDSA and HS256", clip(alg))
	}
	set := v.keys.Load()
	if set == nil {
		return nil, refuse(ErrAlgorithm, "%s tokens are not accepted here: no public keys are configured", alg)
	}
	if kid == "" {
		if set.kidRequired {
			return nil, refuse(ErrMissingKeyID, "a token signed with a JWKS key must name it in the kid header")
		}
		return set.keysFor(alg)
	}
	k, ok := set.byKid[kid]
	if !ok {
		if v.refetch(ctx) {
			set = v.keys.Load()
			k, ok = set.byKid[kid]
		}
		if !ok {
			if !set.kidRequired {
				return set.keysFor(alg)
			}
			return nil, refuse(ErrUnknownKey, "no key has kid %q", clip(kid))
		}
	}
	if k.alg != alg {
		return nil, refuse(ErrAlgorithm, "key %q verifies %s, not %s", clip(kid), k.alg, alg)
	}
	return k.key, nil
}

// keysFor returns the PEM keys without a kid that verify alg.
func (s *keySet) keysFor(alg string) (any, error) {
	var set jwt.VerificationKeySet
	for _, k := range s.anonymous {
		if k.alg == alg {
			set.Keys = append(set.Keys, k.key)
		}
	}
	if len(set.Keys) == 0 {
		return nil, refuse(ErrAlgorithm, "no %s key is configured", alg)
	}
	return set, nil
}

// classify turns a parse error into a TokenError that says what went wrong.
func (v *Verifier) classify(err error, claims jwt.MapClaims) error {
	var te *TokenError
	switch {
	case errors.As(err, &te):
		return te
	case errors.Is(err, jwt.ErrTokenMalformed):
		return refuse(ErrMalformed, "%v", err)
	case errors.Is(err, jwt.ErrTokenSignatureInvalid):
		return refuse(ErrSignature, "the signature does not match: the token was altered or signed with another key")
	case errors.Is(err, jwt.ErrInvalidType):
		for _, c := range []string{"exp", "nbf", "iat"} {
			if x, ok := claims[c]; ok {
				if _, num := x.(float64); !num {
					return refuse(ErrMalformed, "claim %s must be a number of seconds", c)
				}
			}
		}
		return refuse(ErrMalformed, "a registered claim has the wrong type")
	case errors.Is(err, jwt.ErrTokenExpired):
		exp, _ := claims.GetExpirationTime()
		if exp != nil {
			return refuse(ErrExpired, "expired at %s; get a new token", exp.UTC().Format(time.RFC3339))
		}
		return refuse(ErrExpired, "get a new token")
	case errors.Is(err, jwt.ErrTokenNotValidYet):
		nbf, _ := claims.GetNotBefore()
		if nbf != nil {
			return refuse(ErrNotYetValid, "valid from %s", nbf.UTC().Format(time.RFC3339))
		}
		return refuse(ErrNotYetValid, "")
	case errors.Is(err, jwt.ErrTokenUsedBeforeIssued):
		return refuse(ErrIssuedAt, "issued in the future: check the issuer's clock")
	case errors.Is(err, jwt.ErrTokenRequiredClaimMissing):
		return refuse(ErrMissingClaim, "exp is required")
	case errors.Is(err, jwt.ErrTokenUnverifiable):
		return refuse(ErrAlgorithm, "the alg header names no known signing method")
	default:
		return refuse(ErrMalformed, "%v", err)
	}
}

// checkClaims checks what the jwt parser does not: issuer, audience, age
// and the user id.
func (v *Verifier) checkClaims(tok *jwt.Token, claims jwt.MapClaims) (Claims, error) {
	out := Claims{Algorithm: tok.Method.Alg()}
	out.KeyID, _ = tok.Header["kid"].(string)
	iss, err := claims.GetIssuer()
	if err != nil {
		return Claims{}, refuse(ErrMalformed, "claim iss is not a string")
	}
	if v.cfg.Issuer != "" && iss != v.cfg.Issuer {
		return Claims{}, refuse(ErrIssuer, "issuer %q is not %q", clip(iss), v.cfg.Issuer)
	}
	out.Issuer = iss
	aud, err := claims.GetAudience()
	if err != nil {
		return Claims{}, refuse(ErrMalformed, "claim aud is not a string or a list of strings")
	}
	if len(v.cfg.Audience) > 0 && !anyIn(aud, v.cfg.Audience) {
		if len(aud) == 0 {
			return Claims{}, refuse(ErrAudience, "the token has no aud; want one of %q", v.cfg.Audience)
		}
		return Claims{}, refuse(ErrAudience, "aud does not name one of %q", v.cfg.Audience)
	}
	out.Audience = aud
	exp, _ := claims.GetExpirationTime() // present and numeric: the parser checked it
	out.ExpiresAt = exp.Time
	iat, _ := claims.GetIssuedAt()
	if iat != nil {
		out.IssuedAt = iat.Time
	}
	if v.cfg.MaxAge > 0 {
		if iat == nil {
			return Claims{}, refuse(ErrMissingClaim, "iat is required")
		}
		if age := v.cfg.Now().Sub(iat.Time); age > v.cfg.MaxAge+v.cfg.Leeway {
			return Claims{}, refuse(ErrIssuedAt, "issued %s ago; tokens older than %s are refused", age.Round(time.Second), v.cfg.MaxAge)
		}
	}
	raw, ok := claims[v.cfg.UserClaim]
	if !ok {
		return Claims{}, refuse(ErrMissingClaim, "the user id claim %q is absent", v.cfg.UserClaim)
	}
	s, ok := raw.(string)
	if !ok {
		return Claims{}, refuse(ErrInvalidUser, "claim %q is not a string", v.cfg.UserClaim)
	}
	u, err := domain.ParseUserID(s)
	if err != nil {
		return Claims{}, refuse(ErrInvalidUser, "claim %q: %v", v.cfg.UserClaim, err)
	}
	out.User = u
	return out, nil
}

func anyIn(have, want []string) bool {
	for _, h := range have {
		for _, w := range want {
			if h == w {
				return true
			}
		}
	}
	return false
}

// clip bounds a value taken from a token before it goes into a message.
func clip(s string) string {
	const n = 64
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}

// refetch fetches the key set again for an unknown kid, unless a fetch
// started less than MinRefetchInterval ago; a fetch already running is
// joined. It reports whether a fetch ended while it waited.
func (v *Verifier) refetch(ctx context.Context) bool {
	call := v.startFetch(false)
	if call == nil {
		return false
	}
	select {
	case <-call.done:
		return call.err == nil
	case <-ctx.Done():
		return false
	}
}

// refresh fetches now (or joins the running fetch) and waits for it.
func (v *Verifier) refresh(ctx context.Context, first bool) error {
	call := v.startFetch(true)
	if call == nil {
		return errors.New("verifier closed")
	}
	select {
	case <-call.done:
		return call.err
	case <-ctx.Done():
		if first {
			return ctx.Err()
		}
		return nil
	}
}

// startFetch returns the running fetch, or starts one when forced or when
// the last one started at least MinRefetchInterval ago. It returns nil when
// no fetch runs or the Verifier is closed.
func (v *Verifier) startFetch(force bool) *fetchCall {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.inflight != nil {
		return v.inflight
	}
	now := v.cfg.Now()
	if v.closed || (!force && now.Sub(v.lastFetch) < v.cfg.MinRefetchInterval) {
		return nil
	}
	call := &fetchCall{done: make(chan struct{})}
	v.inflight, v.lastFetch = call, now
	// The fetch runs under the Verifier's context, not the caller's: many
	// requests share it, and one giving up must not cancel it for the rest.
	v.wg.Add(1)
	go func() {
		defer v.wg.Done()
		call.err = v.load()
		v.mu.Lock()
		v.inflight = nil
		v.mu.Unlock()
		close(call.done)
	}()
	return call
}

// load fetches the key set and installs it; on failure the last good set stays.
func (v *Verifier) load() error {
	ctx, cancel := context.WithTimeout(v.ctx, v.cfg.FetchTimeout)
	defer cancel()
	set, err := v.fetch(ctx)
	if err != nil {
		if v.keys.Load() != nil {
			v.cfg.Logger.Warn("public key refresh failed; keeping the last good keys", zap.Error(err))
		}
		return err
	}
	old := v.keys.Swap(set)
	if old == nil || old.size() != set.size() {
		v.cfg.Logger.Info("public keys loaded", zap.Int("keys", set.size()))
	}
	return nil
}

// refreshLoop fetches every RefreshInterval; after a failure it retries
// sooner, from MinRefetchInterval doubling up to RefreshInterval.
func (v *Verifier) refreshLoop() {
	defer v.wg.Done()
	t := time.NewTimer(v.cfg.RefreshInterval)
	defer t.Stop()
	fails := 0
	for {
		select {
		case <-v.ctx.Done():
			return
		case <-t.C:
		}
		next := v.cfg.RefreshInterval
		if err := v.refresh(v.ctx, false); err != nil {
			fails++
			next = min(v.cfg.MinRefetchInterval<<min(fails, 16), v.cfg.RefreshInterval)
		} else {
			fails = 0
		}
		t.Reset(next)
	}
}

// TokenFromRequest takes the token from the Authorization header, else from
// the token query parameter (browsers cannot set headers on a WebSocket).
func TokenFromRequest(r *http.Request) string {
	if h := r.Header.Get("Authorization"); h != "" {
		if t, ok := strings.CutPrefix(h, "Bearer "); ok {
			return strings.TrimSpace(t)
		}
		return strings.TrimSpace(h)
	}
	return r.URL.Query().Get("token")
}
