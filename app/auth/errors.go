package auth

import (
	"errors"
	"fmt"
)

// ErrUnauthorized is matched by every error Verify returns: the gateway maps
// it to 401 and the protocol code unauthorized. The more precise sentinels
// below say why, for logs and for the message shown to the client.
var ErrUnauthorized = errors.New("unauthorized")

// Reasons a token is refused. Each Verify error matches ErrUnauthorized and
// exactly one of these with errors.Is.
var (
	// ErrNoToken means no token was presented.
	ErrNoToken = errors.New("no token")
	// ErrMalformed means the token is not a well-formed JWT, or a claim has
	// the wrong type (a string exp, say).
	ErrMalformed = errors.New("malformed token")
	// ErrAlgorithm means the alg header is none, unknown, not accepted, or
	// does not fit the key it names (an HS256 token against an RSA key).
	ErrAlgorithm = errors.New("signing algorithm not accepted")
	// ErrMissingKeyID means a token meant for a JWKS key has no kid header.
	ErrMissingKeyID = errors.New("missing key id")
	// ErrUnknownKey means no key with the token's kid is known, even after
	// the key set was fetched again.
	ErrUnknownKey = errors.New("unknown key id")
	// ErrSignature means the signature does not match the token.
	ErrSignature = errors.New("bad signature")
	// ErrExpired means the token's exp is past, beyond the leeway.
	ErrExpired = errors.New("token expired")
	// ErrNotYetValid means the token's nbf is in the future, beyond the leeway.
	ErrNotYetValid = errors.New("token not valid yet")
	// ErrIssuedAt means the token's iat is in the future, or older than
	// Config.MaxAge.
	ErrIssuedAt = errors.New("token issue time not acceptable")
	// ErrAudience means the token is not meant for this server's audience.
	ErrAudience = errors.New("wrong audience")
	// ErrIssuer means the token was not issued by the configured issuer.
	ErrIssuer = errors.New("wrong issuer")
	// ErrMissingClaim means a required claim (exp, the user id) is absent.
	ErrMissingClaim = errors.New("missing claim")
	// ErrInvalidUser means the user-id claim is not a valid parley user id.
	ErrInvalidUser = errors.New("invalid user id in token")
)

// TokenError is why Verify refused a token. Kind is one of the sentinels
// above; Detail explains, and never contains the token or a secret, so
// Error() is safe to show to the client and to log.
type TokenError struct {
	Kind   error
	Detail string
}

func (e *TokenError) Error() string {
	if e.Detail == "" {
		return fmt.Sprintf("%v: %v", ErrUnauthorized, e.Kind)
	}
	return fmt.Sprintf("%v: %v: %s", ErrUnauthorized, e.Kind, e.Detail)
}

// Unwrap lets errors.Is match both the reason and ErrUnauthorized.
func (e *TokenError) Unwrap() []error { return []error{e.Kind, ErrUnauthorized} }

func refuse(kind error, format string, args ...any) *TokenError {
	return &TokenError{Kind: kind, Detail: fmt.Sprintf(format, args...)}
}
