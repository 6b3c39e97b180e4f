package memory

import (
	"errors"

	"github.com/parley-im/parley/infrastructure"
)

var (
	errETagMismatch = errors.New("etag mismatch")
	errExists       = errors.New("key exists")
	errEmptyKey     = errors.New("empty key")
)

func checkKey(op, key string) error {
	if key == "" {
		return &infrastructure.OpError{Op: op, Key: key, Kind: infrastructure.ErrInvalidArgument, Err: errEmptyKey}
	}
	return nil
}
