package store

import (
	"fmt"
	"math/bits"
	"time"
)

// Defaults and hard limits of the store configuration.
const (
	DefaultMaxMemory     = 512 << 20
	DefaultShards        = 256
	DefaultMaxKeyLength  = 250
	DefaultMaxItemSize   = 1 << 20
	DefaultMaxTagsPerKey = 64
	DefaultSweepInterval = time.Second

	MaxKeyLengthLimit = 64 << 10
	MaxItemSizeLimit  = 512 << 20
	MaxTagLength      = 1024
	MaxShards         = 1 << 16
)

// Config configures a Store. The zero value of every field means its default.
type Config struct {
	// MaxMemory is the memory budget in bytes. Default: 512 MiB.
	MaxMemory int64
	// Shards is the number of shards, a power of two. Default: 256.
	Shards int
	// MaxKeyLength is the longest key in bytes, at most 64 KiB. Default: 250.
	MaxKeyLength int
	// MaxItemSize is the largest value in bytes, at most 512 MiB. Default: 1 MiB.
	MaxItemSize int
	// MaxTagsPerKey is the most tags one entry may carry. Default: 64.
	MaxTagsPerKey int
	// SweepInterval is how often the background sweep reclaims expired
	// entries. Default: 1s. A negative value disables the sweep.
	SweepInterval time.Duration
	// Now returns the current time in Unix milliseconds. Default: the wall
	// clock. Tests set it to control expiry.
	Now func() int64
}

// withDefaults returns c with zero fields set to their defaults, or an error
// if a field is out of range.
func (c Config) withDefaults() (Config, error) {
	if c.MaxMemory == 0 {
		c.MaxMemory = DefaultMaxMemory
	}
	if c.Shards == 0 {
		c.Shards = DefaultShards
	}
	if c.MaxKeyLength == 0 {
		c.MaxKeyLength = DefaultMaxKeyLength
	}
	if c.MaxItemSize == 0 {
		c.MaxItemSize = DefaultMaxItemSize
	}
	if c.MaxTagsPerKey == 0 {
		c.MaxTagsPerKey = DefaultMaxTagsPerKey
	}
	if c.SweepInterval == 0 {
		c.SweepInterval = DefaultSweepInterval
	}
	switch {
	case c.MaxMemory < 0:
		return c, fmt.Errorf("max_memory must be positive, got %d", c.MaxMemory)
	case c.Shards < 0 || c.Shards > MaxShards || bits.OnesCount(uint(c.Shards)) != 1:
		return c, fmt.Errorf("shards must be a power of two between 1 and %d, got %d", MaxShards, c.Shards)
	case c.MaxKeyLength < 0 || c.MaxKeyLength > MaxKeyLengthLimit:
		return c, fmt.Errorf("max_key_length must be between 1 and %d, got %d", MaxKeyLengthLimit, c.MaxKeyLength)
	case c.MaxItemSize < 0 || c.MaxItemSize > MaxItemSizeLimit:
		return c, fmt.Errorf("max_item_size must be between 1 and %d, got %d", MaxItemSizeLimit, c.MaxItemSize)
	case c.MaxTagsPerKey < 0:
		return c, fmt.Errorf("max_tags_per_key must be positive, got %d", c.MaxTagsPerKey)
	}
	return c, nil
}
