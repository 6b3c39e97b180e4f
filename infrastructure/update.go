package infrastructure

import (
	"context"
	"errors"
)

// Change is what an UpdateFunc decides for a key.
type Change int

const (
	// Keep writes nothing.
	Keep Change = iota
	// Put writes the returned value.
	Put
	// Remove deletes the key.
	Remove
)

// UpdateFunc computes the next value of a key from its current item.
type UpdateFunc func(cur Item) (next []byte, change Change, err error)

// Update is an optimistic read-modify-write: it reads key, applies fn, and
// writes the result with compare-and-set (insert-if-absent for a new key),
// reading and applying again when another writer won the race. opts are
// added to the write (a TTL, say). fn may run several times.
func Update(ctx context.Context, s StateStore, key string, fn UpdateFunc, opts ...WriteOption) error {
	for {
		cur, err := s.Get(ctx, key)
		if err != nil {
			return err
		}
		next, change, err := fn(cur)
		if err != nil {
			return err
		}
		check := IfAbsent()
		if cur.Found {
			check = IfMatch(cur.ETag)
		}
		switch change {
		case Keep:
			return nil
		case Remove:
			if !cur.Found {
				return nil
			}
			err = s.Delete(ctx, key, check)
		default:
			err = s.Set(ctx, key, next, append([]WriteOption{check}, opts...)...)
		}
		if !errors.Is(err, ErrConflict) {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
	}
}
