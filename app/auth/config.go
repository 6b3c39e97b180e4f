package auth

import (
	"context"
	"net/http"
	"time"

	"go.uber.org/zap"
)

// SecretSource reads a named secret, such as a Dapr secret store does. The
// adapter lives with the wiring in app/cmd, so that this package stays free
// of any sidecar client.
type SecretSource interface {
	// Secret returns the value of the secret name. A missing secret is an error.
	Secret(ctx context.Context, name string) (string, error)
}

// Config says which tokens a Verifier accepts. At least one key source must
// be set: HS256Secret (or HS256SecretName), KeyFile, or JWKSURL (or
// JWKSURLSecretName). KeyFile and JWKSURL exclude each other; either may be
// combined with an HS256 secret, which then only verifies HS256 tokens.
type Config struct {
	// HS256Secret verifies (and Issue signs) HS256 tokens. At least 32
	// bytes. Empty: HS256 tokens are refused unless HS256SecretName is set.
	HS256Secret []byte
	// HS256SecretName names the HS256 secret in Secrets; it is read once, in
	// New. Empty: not used.
	HS256SecretName string
	// KeyFile is a file of PEM public keys (PUBLIC KEY, RSA PUBLIC KEY or
	// CERTIFICATE blocks, each with an optional "kid" header) or a JWKS JSON
	// document. It is read again every RefreshInterval, so keys can rotate
	// without a restart. Empty: none.
	KeyFile string
	// JWKSURL is an identity provider's JWKS endpoint, fetched in New,
	// every RefreshInterval, and when a token names an unknown kid. It must
	// be https unless AllowHTTP. Empty: none, unless JWKSURLSecretName is set.
	JWKSURL string
	// JWKSURLSecretName names the JWKS URL in Secrets (an URL may carry an
	// access key). Empty: not used.
	JWKSURLSecretName string
	// Secrets supplies the values named by the *SecretName fields. Nil: those
	// fields must be empty.
	Secrets SecretSource
	// AllowHTTP lets JWKSURL be plain http, for tests and loopback setups.
	// Zero value: https only.
	AllowHTTP bool
	// HTTPClient fetches the JWKS. Nil: http.DefaultTransport (which honours
	// HTTPS_PROXY) with requests bounded by FetchTimeout.
	HTTPClient *http.Client

	// RefreshInterval is how often the key set is fetched again. Zero value
	// means 10 minutes; at least 1 second.
	RefreshInterval time.Duration
	// MinRefetchInterval is the least time between two fetches, so that
	// tokens with made-up kids cannot make parley fetch on every request.
	// A new key is therefore accepted at most this long after the first
	// token that names it, if the provider publishes it before issuing.
	// Zero value means 30 seconds.
	MinRefetchInterval time.Duration
	// FetchTimeout bounds one fetch. Zero value means 5 seconds.
	FetchTimeout time.Duration

	// Audience, when not empty, requires the token's aud to contain one of
	// these. Empty: aud is not checked.
	Audience []string
	// Issuer, when set, requires the token's iss to equal it. Empty: iss is
	// not checked.
	Issuer string
	// UserClaim names the claim holding the user id, which must pass
	// domain.ParseUserID. Zero value means "sub".
	UserClaim string
	// Leeway absorbs clock skew in exp, nbf and iat. Zero value means 30
	// seconds; a negative value means none.
	Leeway time.Duration
	// MaxAge, when positive, requires iat and refuses tokens issued longer
	// ago than this. Zero: iat is only checked not to be in the future.
	MaxAge time.Duration

	// Logger reports refreshes and their failures, never tokens. Nil: no logs.
	Logger *zap.Logger
	// Now is the clock. Nil: time.Now.
	Now func() time.Time
}

// Defaults applied by New for zero values.
const (
	DefaultRefreshInterval    = 10 * time.Minute
	DefaultMinRefetchInterval = 30 * time.Second
	DefaultFetchTimeout       = 5 * time.Second
	DefaultLeeway             = 30 * time.Second
	DefaultUserClaim          = "sub"
	// MaxTokenLen bounds a token before it is parsed.
	MaxTokenLen = 8192
	// maxJWKSBytes bounds a fetched key set.
	maxJWKSBytes = 1 << 20
	// minSecretLen: shorter HS256 secrets can be brute-forced offline.
	minSecretLen = 32
)

func (c *Config) withDefaults() {
	if c.RefreshInterval == 0 {
		c.RefreshInterval = DefaultRefreshInterval
	}
	if c.MinRefetchInterval == 0 {
		c.MinRefetchInterval = DefaultMinRefetchInterval
	}
	if c.FetchTimeout == 0 {
		c.FetchTimeout = DefaultFetchTimeout
	}
	if c.UserClaim == "" {
		c.UserClaim = DefaultUserClaim
	}
	switch {
	case c.Leeway == 0:
		c.Leeway = DefaultLeeway
	case c.Leeway < 0:
		c.Leeway = 0
	}
	if c.Logger == nil {
		c.Logger = zap.NewNop()
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}
