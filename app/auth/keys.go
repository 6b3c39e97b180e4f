package auth

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
)

// Algorithms accepted for public keys, and the one for a shared secret.
const (
	AlgRS256 = "RS256"
	AlgES256 = "ES256"
	AlgEdDSA = "EdDSA"
	AlgHS256 = "HS256"
)

// minRSABits refuses RSA keys that are too weak to trust.
const minRSABits = 2048

// publicKey is one verification key with the algorithm its type allows.
type publicKey struct {
	kid string
	alg string // the one algorithm this key verifies: from its type, checked against the JWK alg
	key any    // *rsa.PublicKey, *ecdsa.PublicKey (P-256) or ed25519.PublicKey
}

// keySet is an immutable set of keys, swapped whole on refresh.
type keySet struct {
	byKid map[string]publicKey
	// anonymous holds PEM keys without a kid; a token may then omit its kid
	// and every key of the right algorithm is tried.
	anonymous []publicKey
	// kidRequired is true for a JWKS: every key has a kid and tokens must name one.
	kidRequired bool
}

func (s *keySet) size() int { return len(s.byKid) + len(s.anonymous) }

// algFor returns the algorithm a public key verifies.
func algFor(k any) (string, error) {
	switch k := k.(type) {
	case *rsa.PublicKey:
		if k.N.BitLen() < minRSABits {
			return "", fmt.Errorf("RSA key of %d bits: at least %d are needed", k.N.BitLen(), minRSABits)
		}
		return AlgRS256, nil
	case *ecdsa.PublicKey:
		if k.Curve != elliptic.P256() {
			return "", fmt.Errorf("ECDSA key on %s: only P-256 (ES256) is accepted", k.Curve.Params().Name)
		}
		return AlgES256, nil
	case ed25519.PublicKey:
		if len(k) != ed25519.PublicKeySize {
			return "", fmt.Errorf("Ed25519 key of %d bytes", len(k))
		}
		return AlgEdDSA, nil
	default:
		return "", fmt.Errorf("unsupported key type %T", k)
	}
}

// parseKeyFile reads a file of PEM public keys or certificates, or a JWKS
// document; a JWKS starts with '{'.
func parseKeyFile(data []byte) (*keySet, error) {
	if t := bytes.TrimSpace(data); len(t) > 0 && t[0] == '{' {
		return parseJWKS(t)
	}
	return parsePEM(data)
}

// parsePEM reads PUBLIC KEY, RSA PUBLIC KEY and CERTIFICATE blocks. A block
// may carry a "kid" header to name its key.
func parsePEM(data []byte) (*keySet, error) {
	set := &keySet{byKid: map[string]publicKey{}}
	for n := 1; ; n++ {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			break
		}
		var k any
		var err error
		switch b.Type {
		case "PUBLIC KEY":
			k, err = x509.ParsePKIXPublicKey(b.Bytes)
		case "RSA PUBLIC KEY":
			k, err = x509.ParsePKCS1PublicKey(b.Bytes)
		case "CERTIFICATE":
			var c *x509.Certificate
			if c, err = x509.ParseCertificate(b.Bytes); err == nil {
				k = c.PublicKey
			}
		default:
			return nil, fmt.Errorf("PEM block %d is %q: want PUBLIC KEY, RSA PUBLIC KEY or CERTIFICATE (never a private key)", n, b.Type)
		}
		if err != nil {
			return nil, fmt.Errorf("PEM block %d: %w", n, err)
		}
		alg, err := algFor(k)
		if err != nil {
			return nil, fmt.Errorf("PEM block %d: %w", n, err)
		}
		pk := publicKey{kid: b.Headers["kid"], alg: alg, key: k}
		if pk.kid == "" {
			set.anonymous = append(set.anonymous, pk)
			continue
		}
		if _, dup := set.byKid[pk.kid]; dup {
			return nil, fmt.Errorf("PEM block %d: kid %q used twice", n, pk.kid)
		}
		set.byKid[pk.kid] = pk
	}
	if set.size() == 0 {
		return nil, errors.New("no PEM public key found")
	}
	return set, nil
}

// jwk is the subset of RFC 7517/7518/8037 fields parley reads.
type jwk struct {
	Kty string `json:"kty"`
	Kid string `json:"kid"`
	Alg string `json:"alg"`
	Use string `json:"use"`
	Crv string `json:"crv"`
	N   string `json:"n"`
	E   string `json:"e"`
	X   string `json:"x"`
	Y   string `json:"y"`
	// D is present only in private keys: such a JWKS is refused, since
	// publishing it means the key has leaked.
	D string `json:"d"`
}

// parseJWKS reads a JWKS. Keys parley cannot use (encryption keys, other
// curves, symmetric keys) are skipped, so that an identity provider adding
// one does not break login; a key that claims to be usable but is broken
// fails the whole set, so that the last good set stays in force.
func parseJWKS(data []byte) (*keySet, error) {
	var doc struct {
		Keys []jwk `json:"keys"`
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("JWKS: %w", err)
	}
	set := &keySet{byKid: map[string]publicKey{}, kidRequired: true}
	for i, j := range doc.Keys {
		if j.D != "" {
			return nil, fmt.Errorf("JWKS key %d (kid %q) is a private key: publish public keys only", i, j.Kid)
		}
		if j.Use != "" && j.Use != "sig" {
			continue
		}
		k, err := j.publicKey()
		if errors.Is(err, errSkipKey) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("JWKS key %d (kid %q): %w", i, j.Kid, err)
		}
		alg, err := algFor(k)
		if err != nil {
			return nil, fmt.Errorf("JWKS key %d (kid %q): %w", i, j.Kid, err)
		}
		if j.Alg != "" && j.Alg != alg {
			continue // e.g. an RSA key meant for PS256 or RSA-OAEP
		}
		if j.Kid == "" {
			return nil, fmt.Errorf("JWKS key %d has no kid: every key of a JWKS must have one", i)
		}
		if _, dup := set.byKid[j.Kid]; dup {
			return nil, fmt.Errorf("JWKS kid %q used twice", j.Kid)
		}
		set.byKid[j.Kid] = publicKey{kid: j.Kid, alg: alg, key: k}
	}
	if set.size() == 0 {
		return nil, errors.New("JWKS holds no RS256, ES256 or EdDSA signing key")
	}
	return set, nil
}

var errSkipKey = errors.New("key type not used")

func (j jwk) publicKey() (any, error) {
	switch j.Kty {
	case "RSA":
		n, err := b64int(j.N, "n")
		if err != nil {
			return nil, err
		}
		e, err := b64int(j.E, "e")
		if err != nil {
			return nil, err
		}
		if !e.IsInt64() || e.Int64() < 3 || e.Int64() > 1<<31-1 || e.Bit(0) == 0 {
			return nil, errors.New("RSA exponent out of range")
		}
		return &rsa.PublicKey{N: n, E: int(e.Int64())}, nil
	case "EC":
		if j.Crv != "P-256" {
			return nil, errSkipKey
		}
		x, err := b64fixed(j.X, "x", 32)
		if err != nil {
			return nil, err
		}
		y, err := b64fixed(j.Y, "y", 32)
		if err != nil {
			return nil, err
		}
		// ParseUncompressedPublicKey checks that the point is on the curve:
		// an off-curve point is a known attack on ECDSA verifiers.
		k, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), append(append([]byte{4}, x...), y...))
		if err != nil {
			return nil, fmt.Errorf("EC point: %w", err)
		}
		return k, nil
	case "OKP":
		if j.Crv != "Ed25519" {
			return nil, errSkipKey
		}
		x, err := b64fixed(j.X, "x", ed25519.PublicKeySize)
		if err != nil {
			return nil, err
		}
		return ed25519.PublicKey(x), nil
	default:
		// "oct" keys are shared secrets and never belong in a published set.
		return nil, errSkipKey
	}
}

func b64int(s, field string) (*big.Int, error) {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil || len(b) == 0 {
		return nil, fmt.Errorf("field %s is not base64url", field)
	}
	return new(big.Int).SetBytes(b), nil
}

func b64fixed(s, field string, size int) ([]byte, error) {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("field %s is not base64url", field)
	}
	if len(b) != size {
		return nil, fmt.Errorf("field %s is %d bytes, want %d", field, len(b), size)
	}
	return b, nil
}
