package auth_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"go.uber.org/goleak"

	"github.com/parley-im/parley/app/auth"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var b64 = base64.RawURLEncoding

// testKeys are generated once: RSA generation is slow under -race.
var testKeys = sync.OnceValue(func() (k struct {
	rsa, rsa2 *rsa.PrivateKey
	ec        *ecdsa.PrivateKey
	ed        ed25519.PrivateKey
}) {
	var err error
	if k.rsa, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
		panic(err)
	}
	if k.rsa2, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
		panic(err)
	}
	if k.ec, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
		panic(err)
	}
	if _, k.ed, err = ed25519.GenerateKey(rand.Reader); err != nil {
		panic(err)
	}
	return k
})

func jwkOf(kid string, pub any) map[string]string {
	switch p := pub.(type) {
	case *rsa.PublicKey:
		return map[string]string{"kty": "RSA", "kid": kid, "use": "sig", "alg": "RS256",
			"n": b64.EncodeToString(p.N.Bytes()), "e": b64.EncodeToString(big.NewInt(int64(p.E)).Bytes())}
	case *ecdsa.PublicKey:
		raw, err := p.Bytes()
		if err != nil {
			panic(err)
		}
		return map[string]string{"kty": "EC", "kid": kid, "crv": "P-256",
			"x": b64.EncodeToString(raw[1:33]), "y": b64.EncodeToString(raw[33:])}
	case ed25519.PublicKey:
		return map[string]string{"kty": "OKP", "kid": kid, "crv": "Ed25519", "x": b64.EncodeToString(p)}
	}
	panic(fmt.Sprintf("no JWK for %T", pub))
}

// jwksServer serves a key set that tests change, and counts fetches.
type jwksServer struct {
	*httptest.Server
	mu    sync.Mutex
	keys  []map[string]string
	fail  bool
	fetch atomic.Int64
}

func newJWKSServer(t *testing.T, keys ...map[string]string) *jwksServer {
	t.Helper()
	s := &jwksServer{keys: keys}
	s.Server = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.fetch.Add(1)
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.fail {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		_ = json.NewEncoder(w).Encode(map[string]any{"keys": s.keys})
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *jwksServer) set(fail bool, keys ...map[string]string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fail, s.keys = fail, keys
}

// clock is a settable time source, safe for concurrent use.
type clock struct{ ns atomic.Int64 }

func newClock() *clock {
	c := &clock{}
	c.ns.Store(time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC).UnixNano())
	return c
}
func (c *clock) Now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *clock) advance(d time.Duration) { c.ns.Add(int64(d)) }

func sign(t testing.TB, method jwt.SigningMethod, key any, kid string, claims jwt.MapClaims) string {
	t.Helper()
	tok := jwt.NewWithClaims(method, claims)
	if kid != "" {
		tok.Header["kid"] = kid
	}
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatalf("sign: %v", err)
	}
	return s
}

func validClaims(now time.Time) jwt.MapClaims {
	return jwt.MapClaims{"sub": "alice", "iat": now.Unix(), "exp": now.Add(time.Hour).Unix(),
		"iss": "https://idp.example", "aud": "parley"}
}

// newJWKSVerifier starts a key server with an RSA, an EC and an Ed25519
// key and a Verifier on it.
func newJWKSVerifier(t *testing.T, mod func(*auth.Config)) (*auth.Verifier, *jwksServer, *clock) {
	t.Helper()
	k := testKeys()
	srv := newJWKSServer(t, jwkOf("rsa1", &k.rsa.PublicKey), jwkOf("ec1", &k.ec.PublicKey), jwkOf("ed1", k.ed.Public()))
	clk := newClock()
	cfg := auth.Config{JWKSURL: srv.URL + "/jwks.json", HTTPClient: srv.Client(), Issuer: "https://idp.example",
		Audience: []string{"parley"}, Now: clk.Now}
	if mod != nil {
		mod(&cfg)
	}
	v, err := auth.New(t.Context(), cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(v.Close)
	return v, srv, clk
}

func TestVerifyAcceptsEachAlgorithmFromJWKS(t *testing.T) {
	t.Parallel()
	v, _, clk := newJWKSVerifier(t, nil)
	k := testKeys()
	for _, tc := range []struct {
		name   string
		method jwt.SigningMethod
		key    any
		kid    string
	}{
		{"rs256", jwt.SigningMethodRS256, k.rsa, "rsa1"},
		{"es256", jwt.SigningMethodES256, k.ec, "ec1"},
		{"eddsa", jwt.SigningMethodEdDSA, k.ed, "ed1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c, err := v.Verify(t.Context(), sign(t, tc.method, tc.key, tc.kid, validClaims(clk.Now())))
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if c.User != "alice" || c.KeyID != tc.kid || c.Algorithm != tc.method.Alg() || c.Issuer != "https://idp.example" {
				t.Fatalf("claims = %+v", c)
			}
			if !c.ExpiresAt.Equal(clk.Now().Add(time.Hour).Truncate(time.Second)) {
				t.Fatalf("ExpiresAt = %v", c.ExpiresAt)
			}
		})
	}
}

func TestVerifyRefuses(t *testing.T) {
	t.Parallel()
	v, _, clk := newJWKSVerifier(t, func(c *auth.Config) { c.HS256Secret = []byte(strings.Repeat("s", 32)) })
	k := testKeys()
	now := clk.Now()
	with := func(mod func(jwt.MapClaims)) jwt.MapClaims {
		c := validClaims(now)
		mod(c)
		return c
	}
	rs := func(c jwt.MapClaims) string { return sign(t, jwt.SigningMethodRS256, k.rsa, "rsa1", c) }
	good := rs(validClaims(now))
	parts := strings.Split(good, ".")
	pubDER, _ := x509.MarshalPKIXPublicKey(&k.rsa.PublicKey)
	pubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER})

	for _, tc := range []struct {
		name  string
		token string
		want  error
	}{
		{"empty", "", auth.ErrNoToken},
		{"garbage", "not-a-jwt", auth.ErrMalformed},
		{"too_long", strings.Repeat("a", auth.MaxTokenLen+1), auth.ErrMalformed},
		{"expired", rs(with(func(c jwt.MapClaims) { c["exp"] = now.Add(-time.Minute).Unix() })), auth.ErrExpired},
		{"expired_just_past_leeway", rs(with(func(c jwt.MapClaims) { c["exp"] = now.Add(-31 * time.Second).Unix() })), auth.ErrExpired},
		{"not_yet_valid", rs(with(func(c jwt.MapClaims) { c["nbf"] = now.Add(time.Minute).Unix() })), auth.ErrNotYetValid},
		{"issued_in_future", rs(with(func(c jwt.MapClaims) { c["iat"] = now.Add(time.Minute).Unix() })), auth.ErrIssuedAt},
		{"wrong_audience", rs(with(func(c jwt.MapClaims) { c["aud"] = []string{"other", "more"} })), auth.ErrAudience},
		{"missing_audience", rs(with(func(c jwt.MapClaims) { delete(c, "aud") })), auth.ErrAudience},
		{"wrong_issuer", rs(with(func(c jwt.MapClaims) { c["iss"] = "https://evil.example" })), auth.ErrIssuer},
		{"string_exp", rs(with(func(c jwt.MapClaims) { c["exp"] = fmt.Sprint(now.Add(time.Hour).Unix()) })), auth.ErrMalformed},
		{"missing_exp", rs(with(func(c jwt.MapClaims) { delete(c, "exp") })), auth.ErrMissingClaim},
		{"missing_sub", rs(with(func(c jwt.MapClaims) { delete(c, "sub") })), auth.ErrMissingClaim},
		{"invalid_user", rs(with(func(c jwt.MapClaims) { c["sub"] = "al ice" })), auth.ErrInvalidUser},
		{"numeric_user", rs(with(func(c jwt.MapClaims) { c["sub"] = 42 })), auth.ErrInvalidUser},
		{"missing_kid", sign(t, jwt.SigningMethodRS256, k.rsa, "", validClaims(now)), auth.ErrMissingKeyID},
		{"unknown_kid", sign(t, jwt.SigningMethodRS256, k.rsa, "nope", validClaims(now)), auth.ErrUnknownKey},
		{"signed_by_other_key", sign(t, jwt.SigningMethodRS256, k.rsa2, "rsa1", validClaims(now)), auth.ErrSignature},
		{"tampered_signature", parts[0] + "." + parts[1] + "." + b64.EncodeToString(make([]byte, 256)), auth.ErrSignature},
		{"tampered_claims", parts[0] + "." + b64.EncodeToString([]byte(`{"sub":"mallory","exp":9999999999,"aud":"parley","iss":"https://idp.example"}`)) + "." + parts[2], auth.ErrSignature},
		{"alg_none", sign(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, "rsa1", validClaims(now)), auth.ErrAlgorithm},
		{"alg_none_no_kid", sign(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, "", validClaims(now)), auth.ErrAlgorithm},
		{"hs256_with_public_key_as_secret", sign(t, jwt.SigningMethodHS256, pubPEM, "rsa1", validClaims(now)), auth.ErrSignature},
		{"es256_against_rsa_key", sign(t, jwt.SigningMethodES256, k.ec, "rsa1", validClaims(now)), auth.ErrAlgorithm},
		{"rs384_not_accepted", sign(t, jwt.SigningMethodRS384, k.rsa, "rsa1", validClaims(now)), auth.ErrAlgorithm},
		{"unknown_alg", b64.EncodeToString([]byte(`{"alg":"XX999","kid":"rsa1"}`)) + "." + parts[1] + "." + parts[2], auth.ErrAlgorithm},
		{"crit_header", b64.EncodeToString([]byte(`{"alg":"RS256","kid":"rsa1","crit":["x"]}`)) + "." + parts[1] + "." + parts[2], auth.ErrMalformed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := v.Verify(t.Context(), tc.token)
			if !errors.Is(err, tc.want) || !errors.Is(err, auth.ErrUnauthorized) {
				t.Fatalf("Verify = %v; want %v and %v", err, tc.want, auth.ErrUnauthorized)
			}
			var te *auth.TokenError
			if !errors.As(err, &te) || te.Kind != tc.want {
				t.Fatalf("Verify = %#v; want a *TokenError of kind %v", err, tc.want)
			}
			if tc.token != "" && len(tc.token) > 40 && strings.Contains(err.Error(), tc.token[len(tc.token)-40:]) {
				t.Fatalf("the error repeats the token: %v", err)
			}
		})
	}
}

func TestVerifyLeewayAbsorbsClockSkew(t *testing.T) {
	t.Parallel()
	v, _, clk := newJWKSVerifier(t, nil)
	k := testKeys()
	c := validClaims(clk.Now())
	c["exp"] = clk.Now().Add(-20 * time.Second).Unix()
	c["nbf"] = clk.Now().Add(20 * time.Second).Unix()
	if _, err := v.Verify(t.Context(), sign(t, jwt.SigningMethodES256, k.ec, "ec1", c)); err != nil {
		t.Fatalf("a token 20 s off within a 30 s leeway: %v", err)
	}
}

func TestRotationNewKidAcceptedAfterRefetch(t *testing.T) {
	t.Parallel()
	v, srv, clk := newJWKSVerifier(t, nil)
	k := testKeys()
	token := sign(t, jwt.SigningMethodRS256, k.rsa2, "rsa2", validClaims(clk.Now()))
	fetches := srv.fetch.Load()

	// The provider has not published rsa2 yet, and the last fetch is too
	// recent to fetch again: refused without a fetch.
	if _, err := v.Verify(t.Context(), token); !errors.Is(err, auth.ErrUnknownKey) {
		t.Fatalf("Verify before rotation = %v; want ErrUnknownKey", err)
	}
	if got := srv.fetch.Load(); got != fetches {
		t.Fatalf("%d fetches for an unknown kid within MinRefetchInterval; want none", got-fetches)
	}

	srv.set(false, jwkOf("rsa1", &k.rsa.PublicKey), jwkOf("rsa2", &k.rsa2.PublicKey))
	clk.advance(auth.DefaultMinRefetchInterval)
	c, err := v.Verify(t.Context(), token)
	if err != nil {
		t.Fatalf("Verify after rotation: %v", err)
	}
	if c.KeyID != "rsa2" {
		t.Fatalf("KeyID = %q", c.KeyID)
	}
	if got := srv.fetch.Load(); got != fetches+1 {
		t.Fatalf("%d fetches for the new kid; want 1", got-fetches)
	}
}

func TestUnknownKidsDoNotCauseAFetchStorm(t *testing.T) {
	t.Parallel()
	v, srv, clk := newJWKSVerifier(t, nil)
	k := testKeys()
	clk.advance(auth.DefaultMinRefetchInterval)
	fetches := srv.fetch.Load()
	var wg sync.WaitGroup
	for i := range 200 {
		wg.Go(func() {
			token := sign(t, jwt.SigningMethodES256, k.ec, fmt.Sprintf("made-up-%d", i), validClaims(clk.Now()))
			if _, err := v.Verify(t.Context(), token); !errors.Is(err, auth.ErrUnknownKey) {
				t.Errorf("Verify = %v; want ErrUnknownKey", err)
			}
		})
	}
	wg.Wait()
	if got := srv.fetch.Load() - fetches; got != 1 {
		t.Fatalf("200 tokens with unknown kids caused %d fetches; want 1", got)
	}
	// And a known key still works throughout.
	if _, err := v.Verify(t.Context(), sign(t, jwt.SigningMethodES256, k.ec, "ec1", validClaims(clk.Now()))); err != nil {
		t.Fatal(err)
	}
}

func TestFetchFailureKeepsLastGoodKeys(t *testing.T) {
	t.Parallel()
	v, srv, clk := newJWKSVerifier(t, nil)
	k := testKeys()
	srv.set(true)
	clk.advance(auth.DefaultMinRefetchInterval)
	fetches := srv.fetch.Load()
	if _, err := v.Verify(t.Context(), sign(t, jwt.SigningMethodRS256, k.rsa, "gone", validClaims(clk.Now()))); !errors.Is(err, auth.ErrUnknownKey) {
		t.Fatalf("Verify = %v; want ErrUnknownKey", err)
	}
	if srv.fetch.Load() != fetches+1 {
		t.Fatal("the unknown kid did not try a fetch")
	}
	if _, err := v.Verify(t.Context(), sign(t, jwt.SigningMethodRS256, k.rsa, "rsa1", validClaims(clk.Now()))); err != nil {
		t.Fatalf("a known key after a failed fetch: %v", err)
	}
}

func TestPeriodicRefreshPicksUpNewKeys(t *testing.T) {
	t.Parallel()
	v, srv, clk := newJWKSVerifier(t, func(c *auth.Config) { c.RefreshInterval = 10 * time.Millisecond })
	k := testKeys()
	// The clock stands still, so an unknown kid never fetches: only the
	// periodic refresh can bring rsa2 in. A failing provider in between
	// must not drop the keys.
	srv.set(true)
	for start := srv.fetch.Load(); srv.fetch.Load() < start+2; {
		waitTick(t)
	}
	if _, err := v.Verify(t.Context(), sign(t, jwt.SigningMethodRS256, k.rsa, "rsa1", validClaims(clk.Now()))); err != nil {
		t.Fatalf("known key while the provider fails: %v", err)
	}
	srv.set(false, jwkOf("rsa2", &k.rsa2.PublicKey))
	token := sign(t, jwt.SigningMethodRS256, k.rsa2, "rsa2", validClaims(clk.Now()))
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err := v.Verify(t.Context(), token)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("rsa2 never accepted: %v", err)
		}
		waitTick(t)
	}
}

// waitTick yields briefly while a test polls for a condition.
func waitTick(t *testing.T) {
	t.Helper()
	select {
	case <-t.Context().Done():
		t.Fatal("test ended while waiting")
	case <-time.After(5 * time.Millisecond):
	}
}

func TestHS256IssueAndVerify(t *testing.T) {
	t.Parallel()
	clk := newClock()
	v, err := auth.New(t.Context(), auth.Config{HS256Secret: []byte(strings.Repeat("k", 32)), Issuer: "parley-dev", Audience: []string{"parley"}, Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	token, err := v.Issue("bob", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	c, err := v.Verify(t.Context(), token)
	if err != nil {
		t.Fatalf("Verify(Issue()) = %v", err)
	}
	if c.User != "bob" || c.Algorithm != "HS256" || !c.IssuedAt.Equal(clk.Now()) {
		t.Fatalf("claims = %+v", c)
	}
	clk.advance(time.Hour + time.Minute)
	if _, err := v.Verify(t.Context(), token); !errors.Is(err, auth.ErrExpired) {
		t.Fatalf("Verify after expiry = %v", err)
	}
	k := testKeys()
	if _, err := v.Verify(t.Context(), sign(t, jwt.SigningMethodRS256, k.rsa, "rsa1", validClaims(clk.Now()))); !errors.Is(err, auth.ErrAlgorithm) {
		t.Fatalf("RS256 token on an HS256-only verifier = %v; want ErrAlgorithm", err)
	}
	other := sign(t, jwt.SigningMethodHS256, []byte(strings.Repeat("x", 32)), "", jwt.MapClaims{"sub": "bob", "exp": clk.Now().Add(time.Hour).Unix(), "iss": "parley-dev", "aud": "parley"})
	if _, err := v.Verify(t.Context(), other); !errors.Is(err, auth.ErrSignature) {
		t.Fatalf("token of another secret = %v; want ErrSignature", err)
	}
}

func TestHS256RefusedWithoutSecret(t *testing.T) {
	t.Parallel()
	v, _, clk := newJWKSVerifier(t, nil)
	token := sign(t, jwt.SigningMethodHS256, []byte(strings.Repeat("k", 32)), "", validClaims(clk.Now()))
	if _, err := v.Verify(t.Context(), token); !errors.Is(err, auth.ErrAlgorithm) {
		t.Fatalf("Verify = %v; want ErrAlgorithm", err)
	}
	if _, err := v.Issue("bob", time.Hour); !errors.Is(err, auth.ErrNoSigningKey) {
		t.Fatalf("Issue = %v; want ErrNoSigningKey", err)
	}
}

func TestCustomUserClaimAndMaxAge(t *testing.T) {
	t.Parallel()
	v, _, clk := newJWKSVerifier(t, func(c *auth.Config) { c.UserClaim = "uid"; c.MaxAge = time.Hour })
	k := testKeys()
	c := validClaims(clk.Now())
	c["uid"] = "carol@example.org"
	token := sign(t, jwt.SigningMethodEdDSA, k.ed, "ed1", c)
	got, err := v.Verify(t.Context(), token)
	if err != nil || got.User != "carol@example.org" {
		t.Fatalf("Verify = %+v, %v", got, err)
	}
	c["iat"] = clk.Now().Add(-2 * time.Hour).Unix()
	if _, err := v.Verify(t.Context(), sign(t, jwt.SigningMethodEdDSA, k.ed, "ed1", c)); !errors.Is(err, auth.ErrIssuedAt) {
		t.Fatalf("old token = %v; want ErrIssuedAt", err)
	}
	delete(c, "iat")
	if _, err := v.Verify(t.Context(), sign(t, jwt.SigningMethodEdDSA, k.ed, "ed1", c)); !errors.Is(err, auth.ErrMissingClaim) {
		t.Fatalf("token without iat = %v; want ErrMissingClaim", err)
	}
}

func TestKeyFile(t *testing.T) {
	t.Parallel()
	k := testKeys()
	dir := t.TempDir()
	rsaDER, _ := x509.MarshalPKIXPublicKey(&k.rsa.PublicKey)
	ecDER, _ := x509.MarshalPKIXPublicKey(&k.ec.PublicKey)
	pemFile := filepath.Join(dir, "keys.pem")
	data := append(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: rsaDER}),
		pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Headers: map[string]string{"kid": "ec-file"}, Bytes: ecDER})...)
	if err := os.WriteFile(pemFile, data, 0o600); err != nil {
		t.Fatal(err)
	}
	jwksFile := filepath.Join(dir, "jwks.json")
	doc, _ := json.Marshal(map[string]any{"keys": []any{jwkOf("ed-file", k.ed.Public())}})
	if err := os.WriteFile(jwksFile, doc, 0o600); err != nil {
		t.Fatal(err)
	}
	clk := newClock()
	claims := jwt.MapClaims{"sub": "dave", "exp": clk.Now().Add(time.Hour).Unix()}

	for _, tc := range []struct {
		name  string
		file  string
		token string
		want  error
	}{
		{"pem_rsa_without_kid", pemFile, sign(t, jwt.SigningMethodRS256, k.rsa, "", claims), nil},
		{"pem_ec_by_kid", pemFile, sign(t, jwt.SigningMethodES256, k.ec, "ec-file", claims), nil},
		{"pem_ec_without_kid", pemFile, sign(t, jwt.SigningMethodES256, k.ec, "", claims), auth.ErrAlgorithm},
		{"pem_no_ed25519_key", pemFile, sign(t, jwt.SigningMethodEdDSA, k.ed, "", claims), auth.ErrAlgorithm},
		{"jwks_file_by_kid", jwksFile, sign(t, jwt.SigningMethodEdDSA, k.ed, "ed-file", claims), nil},
		{"jwks_file_needs_kid", jwksFile, sign(t, jwt.SigningMethodEdDSA, k.ed, "", claims), auth.ErrMissingKeyID},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			v, err := auth.New(t.Context(), auth.Config{KeyFile: tc.file, Now: clk.Now})
			if err != nil {
				t.Fatal(err)
			}
			defer v.Close()
			_, err = v.Verify(t.Context(), tc.token)
			if tc.want == nil && err != nil || tc.want != nil && !errors.Is(err, tc.want) {
				t.Fatalf("Verify = %v; want %v", err, tc.want)
			}
		})
	}
}

// secrets is a SecretSource over a map.
type secrets map[string]string

func (s secrets) Secret(_ context.Context, name string) (string, error) {
	v, ok := s[name]
	if !ok {
		return "", fmt.Errorf("secret %q not found", name)
	}
	return v, nil
}

func TestSecretsFromSecretSource(t *testing.T) {
	t.Parallel()
	k := testKeys()
	srv := newJWKSServer(t, jwkOf("ec1", &k.ec.PublicKey))
	clk := newClock()
	v, err := auth.New(t.Context(), auth.Config{
		Secrets:         secrets{"jwt-hs256": strings.Repeat("z", 40), "jwks-url": srv.URL},
		HS256SecretName: "jwt-hs256", JWKSURLSecretName: "jwks-url",
		HTTPClient: srv.Client(), Now: clk.Now,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	if _, err := v.Verify(t.Context(), sign(t, jwt.SigningMethodES256, k.ec, "ec1", jwt.MapClaims{"sub": "erin", "exp": clk.Now().Add(time.Minute).Unix()})); err != nil {
		t.Fatalf("JWKS token: %v", err)
	}
	token, err := v.Issue("erin", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify(t.Context(), token); err != nil {
		t.Fatalf("HS256 token: %v", err)
	}
}

func TestNewRefusesBadConfig(t *testing.T) {
	t.Parallel()
	k := testKeys()
	priv := newJWKSServer(t, map[string]string{"kty": "OKP", "kid": "p", "crv": "Ed25519", "x": b64.EncodeToString(k.ed.Public().(ed25519.PublicKey)), "d": "secret"})
	empty := newJWKSServer(t, map[string]string{"kty": "RSA", "kid": "enc", "use": "enc", "n": "AQAB", "e": "AQAB"})
	noKid := newJWKSServer(t, jwkOf("", &k.ec.PublicKey))
	offCurve := newJWKSServer(t, map[string]string{"kty": "EC", "kid": "bad", "crv": "P-256", "x": b64.EncodeToString(make([]byte, 32)), "y": b64.EncodeToString(make([]byte, 32))})
	down := newJWKSServer(t)
	down.set(true)
	for _, tc := range []struct {
		name string
		cfg  auth.Config
	}{
		{"no_key", auth.Config{}},
		{"short_secret", auth.Config{HS256Secret: []byte("short")}},
		{"plain_http", auth.Config{JWKSURL: "http://idp.example/jwks"}},
		{"file_and_url", auth.Config{KeyFile: "x", JWKSURL: "https://idp.example/jwks"}},
		{"missing_file", auth.Config{KeyFile: filepath.Join(t.TempDir(), "none.pem")}},
		{"secret_name_without_source", auth.Config{HS256SecretName: "x"}},
		{"missing_secret", auth.Config{HS256SecretName: "x", Secrets: secrets{}}},
		{"provider_down", auth.Config{JWKSURL: down.URL, HTTPClient: down.Client()}},
		{"private_key_published", auth.Config{JWKSURL: priv.URL, HTTPClient: priv.Client()}},
		{"no_signing_key", auth.Config{JWKSURL: empty.URL, HTTPClient: empty.Client()}},
		{"jwks_key_without_kid", auth.Config{JWKSURL: noKid.URL, HTTPClient: noKid.Client()}},
		{"ec_point_off_curve", auth.Config{JWKSURL: offCurve.URL, HTTPClient: offCurve.Client()}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if v, err := auth.New(t.Context(), tc.cfg); err == nil {
				v.Close()
				t.Fatal("New accepted the config")
			}
		})
	}
}

func TestRefresherStopsWithContext(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(t.Context())
	k := testKeys()
	srv := newJWKSServer(t, jwkOf("ec1", &k.ec.PublicKey))
	v, err := auth.New(ctx, auth.Config{JWKSURL: srv.URL, HTTPClient: srv.Client(), RefreshInterval: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	v.Close() // returns only once the refresher has stopped; goleak checks the rest
	token := sign(t, jwt.SigningMethodES256, k.ec, "ec1", jwt.MapClaims{"sub": "f", "exp": time.Now().Add(time.Minute).Unix()})
	if _, err := v.Verify(t.Context(), token); err != nil {
		t.Fatalf("Verify after Close: %v", err)
	}
}

func TestTokenFromRequest(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, header, query, want string
	}{
		{"bearer", "Bearer abc", "", "abc"},
		{"bare_header", "abc", "", "abc"},
		{"query", "", "token=xyz", "xyz"},
		{"header_wins", "Bearer abc", "token=xyz", "abc"},
		{"none", "", "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := httptest.NewRequest(http.MethodGet, "/v1/ws?"+tc.query, nil)
			if tc.header != "" {
				r.Header.Set("Authorization", tc.header)
			}
			if got := auth.TokenFromRequest(r); got != tc.want {
				t.Fatalf("got %q want %q", got, tc.want)
			}
		})
	}
}
