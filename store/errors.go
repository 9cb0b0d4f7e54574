package store

import (
	"errors"
	"fmt"
)

// Errors returned by the store. Limit violations are returned as *LimitError,
// which matches the corresponding sentinel with errors.Is.
var (
	ErrNotFound      = errors.New("not found")
	ErrExists        = errors.New("key exists")
	ErrCASMismatch   = errors.New("cas mismatch")
	ErrNotNumeric    = errors.New("value is not an integer")
	ErrOverflow      = errors.New("integer overflow")
	ErrEmptyKey      = errors.New("empty key")
	ErrKeyTooLong    = errors.New("key too long")
	ErrValueTooLarge = errors.New("value too large")
	ErrEmptyTag      = errors.New("empty tag")
	ErrTagTooLong    = errors.New("tag too long")
	ErrTooManyTags   = errors.New("too many tags")
)

// LimitError reports a key, value or tag list that breaks a configured limit.
type LimitError struct {
	// Err is the sentinel for the limit (ErrKeyTooLong, ErrValueTooLarge,
	// ErrTagTooLong or ErrTooManyTags).
	Err error
	// Size is what was offered; Max is the limit.
	Size, Max int64
}

func (e *LimitError) Error() string {
	return fmt.Sprintf("%v: %d > %d", e.Err, e.Size, e.Max)
}

func (e *LimitError) Unwrap() error { return e.Err }
