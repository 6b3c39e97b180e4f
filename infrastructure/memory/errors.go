package memory

import (
	"errors"

	"github.com/parley-im/parley/infrastructure"
)

var (
	errETagMismatch = errors.New("etag mismatch")
	errExists       = errors.New("key exists")
	errEmptyKey     = errors.New("empty key")
	errTooLarge     = errors.New("key or value of 4 GiB or more")
)

func checkKey(op, key string) error {
	if key == "" {
		return &infrastructure.OpError{Op: op, Key: key, Kind: infrastructure.ErrInvalidArgument, Err: errEmptyKey}
	}
	return nil
}
