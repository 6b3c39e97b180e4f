package auth_test

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/golang-jwt/jwt/v5"

	"github.com/parley-im/parley/app/auth"
	"github.com/parley-im/parley/domain"
)

// FuzzVerify feeds arbitrary strings to Verify: it must never panic, every
// refusal must be a *TokenError matching ErrUnauthorized, and whatever it
// accepts must carry a valid user id.
func FuzzVerify(f *testing.F) {
	k := testKeys()
	clk := newClock()
	secret := []byte(strings.Repeat("f", 32))
	file := filepath.Join(f.TempDir(), "jwks.json")
	doc, _ := json.Marshal(map[string]any{"keys": []any{jwkOf("ec1", &k.ec.PublicKey), jwkOf("ed1", k.ed.Public()), jwkOf("rsa1", &k.rsa.PublicKey)}})
	if err := os.WriteFile(file, doc, 0o600); err != nil {
		f.Fatal(err)
	}
	v, err := auth.New(f.Context(), auth.Config{KeyFile: file, HS256Secret: secret, Audience: []string{"parley"}, Now: clk.Now})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(v.Close)

	claims := validClaims(clk.Now())
	for _, s := range []string{
		sign(f, jwt.SigningMethodHS256, secret, "", claims),
		sign(f, jwt.SigningMethodES256, k.ec, "ec1", claims),
		sign(f, jwt.SigningMethodEdDSA, k.ed, "ed1", claims),
		sign(f, jwt.SigningMethodRS256, k.rsa, "rsa1", claims),
		sign(f, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, "ec1", claims),
		sign(f, jwt.SigningMethodHS256, secret, "", jwt.MapClaims{"sub": "a", "exp": "1e99", "aud": []any{"parley", 1}}),
		sign(f, jwt.SigningMethodHS256, secret, "", jwt.MapClaims{"sub": "a", "exp": 1e300, "nbf": -1e300, "aud": "parley"}),
		sign(f, jwt.SigningMethodHS256, secret, "", jwt.MapClaims{"sub": strings.Repeat("x", 100), "exp": 99999999999}),
		"eyJhbGciOiJIUzI1NiJ9.e30.",
		"eyJhbGciOiJFUzI1NiIsImtpZCI6WzFdfQ.e30.AA",
		"..", "a.b.c", "", "Bearer x",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, token string) {
		c, err := v.Verify(t.Context(), token)
		if err != nil {
			var te *auth.TokenError
			if !errors.As(err, &te) || !errors.Is(err, auth.ErrUnauthorized) {
				t.Fatalf("Verify returned %T %v; want a *TokenError", err, err)
			}
			return
		}
		if _, perr := domain.ParseUserID(string(c.User)); perr != nil {
			t.Fatalf("accepted a token for invalid user %q", c.User)
		}
		if c.ExpiresAt.IsZero() || !c.ExpiresAt.Add(auth.DefaultLeeway).After(clk.Now()) {
			t.Fatalf("accepted an expired token: exp %v", c.ExpiresAt)
		}
	})
}
