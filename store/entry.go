package store

import (
	"sync/atomic"
	"unsafe"
)

// entry is one stored item. It is 48 bytes so that a million small items cost
// little beyond their keys and values. All fields but atime change only under
// the shard's write lock.
type entry struct {
	// data points at one allocation holding the key followed by the value.
	// The bytes are never modified after the entry is published; a write
	// that changes the value installs a new allocation.
	data    unsafe.Pointer
	keyLen  uint32
	valLen  uint32
	cas     uint64
	expires int64 // Unix ms; 0 = never
	flags   uint32
	// atime is written by readers under the read lock, hence atomic. Bit 31
	// says the entry was read since it was last written (memcached meta
	// "hit before"); the low 31 bits are the last access in ticks since the
	// store's epoch.
	atime atomic.Uint32
	ext   *entryExt // nil unless the entry has tags or is stale
}

// entryExt holds the parts most entries do not have.
type entryExt struct {
	// key is a copy of the key that lives as long as the entry (across
	// overwrites); the tag index refers to it, so an overwrite does not have
	// to touch the index unless the tags change.
	key   string
	tags  []string // canonical names shared with the tag index; immutable
	stale bool
	// won records that a client was told it won the right to recache the
	// entry (memcached meta "win token"), so that others are not; see
	// meta.go. A write clears it.
	won bool
}

const (
	fetchedBit = 1 << 31
	tickMask   = fetchedBit - 1
	// tickShift makes one atime tick 16 ms, so 31 bits span over a year.
	tickShift = 4
)

// Approximate Go heap costs, used by the memory budget. They were checked
// against runtime heap figures (see BenchmarkHeapPerItem): the entry struct,
// the map slot at a typical load factor and allocation rounding.
const (
	entryOverhead  = 96
	extOverhead    = 64 // entryExt plus its tag slice header
	tagRefOverhead = 48 // one tag in an entry: slice element + index set slot
	tagSetOverhead = 96 // a tag's set in the index
)

var emptyValue = []byte{}

func newData(key string, value []byte) unsafe.Pointer {
	buf := make([]byte, len(key)+len(value))
	copy(buf, key)
	copy(buf[len(key):], value)
	return unsafe.Pointer(&buf[0])
}

// key returns the entry's key; the string aliases the immutable data.
func (e *entry) key() string {
	return unsafe.String((*byte)(e.data), e.keyLen)
}

// value returns the entry's value, aliasing the immutable data.
func (e *entry) value() []byte {
	if e.valLen == 0 {
		return emptyValue
	}
	return unsafe.Slice((*byte)(unsafe.Add(e.data, e.keyLen)), e.valLen)
}

func (e *entry) tags() []string {
	if e.ext == nil {
		return nil
	}
	return e.ext.tags
}

func (e *entry) stale() bool { return e.ext != nil && e.ext.stale }

func (e *entry) won() bool { return e.ext != nil && e.ext.won }

func (e *entry) expired(now int64) bool {
	return e.expires != 0 && e.expires <= now
}

// size is what the entry counts against the memory budget.
func (e *entry) size() int64 {
	n := int64(entryOverhead) + int64(e.keyLen) + int64(e.valLen)
	if e.ext != nil {
		n += extOverhead + int64(e.keyLen) + int64(len(e.ext.tags))*tagRefOverhead
	}
	return n
}

func (e *entry) hasTag(tag string) bool {
	for _, t := range e.tags() {
		if t == tag {
			return true
		}
	}
	return false
}
