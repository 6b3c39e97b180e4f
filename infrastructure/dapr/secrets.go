package dapr

import (
	"context"
	"errors"
	"fmt"
)

// SecretStore reads secrets from one Dapr secret store component, for
// values that must not sit in flags or the environment (a JWT secret, a
// JWKS URL with an access key). The zero value is not usable; use
// Client.SecretStore. Safe for concurrent use.
type SecretStore struct {
	c     *Client
	store string
}

// SecretStore returns the reader of the secret store component named store.
func (c *Client) SecretStore(store string) *SecretStore {
	return &SecretStore{c: c, store: store}
}

// errNoSecret means the store holds no secret of that name.
var errNoSecret = errors.New("no such secret")

// Secret returns the value of the secret name. A store that keeps a secret
// as several keys (Kubernetes secrets) must hold one named like the secret,
// or only one.
func (s *SecretStore) Secret(ctx context.Context, name string) (string, error) {
	m, err := s.c.sdk.GetSecret(ctx, s.store, name, nil)
	if err != nil {
		return "", fmt.Errorf("read secret %q from secret store %q: %w", name, s.store, err)
	}
	if v, ok := m[name]; ok {
		return v, nil
	}
	if len(m) == 1 {
		for _, v := range m {
			return v, nil
		}
	}
	return "", fmt.Errorf("secret %q in secret store %q: %w", name, s.store, errNoSecret)
}
