package main

import (
	"net/http"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// TestTokenSecretFromTheSecretStore: with -secret-store and
// -jwt-secret-name, parley verifies tokens with the secret the Dapr secret
// store holds (components/local: daprd's environment, PARLEY_SECRET_*),
// which never appears on its command line; a token signed with any other
// secret is refused.
func TestTokenSecretFromTheSecretStore(t *testing.T) {
	m := modes("local")[1]
	requireMode(t, m)
	const secret = "a-secret-kept-in-the-secret-store-0123456789"
	t.Setenv("PARLEY_SECRET_JWT", secret) // daprd, launched by parley, inherits it
	n := startNode(t, m, "-secret-store", "secretstore", "-jwt-secret-name", "JWT")

	sign := func(key string) string {
		tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
			"sub": "alice", "exp": time.Now().Add(time.Hour).Unix(),
		}).SignedString([]byte(key))
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	for _, tc := range []struct {
		name string
		key  string
		want int
	}{
		{"secret_from_the_store", secret, http.StatusOK},
		{"other_secret", "another-secret-of-the-same-length-0123456789", http.StatusUnauthorized},
	} {
		req, _ := http.NewRequestWithContext(ctxT(t, 10*time.Second), http.MethodGet, n.base+"/v1/conversations", nil)
		req.Header.Set("Authorization", "Bearer "+sign(tc.key))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.want {
			t.Errorf("%s: %s, want %d", tc.name, resp.Status, tc.want)
		}
	}
}
