package resp

import (
	"errors"
	"math"
	"math/rand/v2"
	"strconv"
	"strings"

	"github.com/tagcache/caddy-tagcache/store"
)

// del answers DEL and UNLINK. Each removed key is an invalidation: the
// store reports it, and subscribers of the invalidation channels hear it.
func (c *conn) del(args [][]byte) {
	n := 0
	for _, k := range args[1:] {
		if c.db.Delete(str(k)) == nil {
			n++
		}
	}
	c.w.integer(int64(n))
}

// exists counts the keys that exist, a repeated key as often as given. It
// does not count as an access.
func (c *conn) exists(args [][]byte) {
	n := 0
	for _, k := range args[1:] {
		if _, ok := c.db.TagsOf(str(k)); ok {
			n++
		}
	}
	c.w.integer(int64(n))
}

// expiry conditions of EXPIRE's options.
const (
	expireNX = 1 << iota
	expireXX
	expireGT
	expireLT
)

func (c *conn) expire(args [][]byte)    { c.expireGeneric(args, expireSeconds|expireRelative) }
func (c *conn) pexpire(args [][]byte)   { c.expireGeneric(args, expireRelative) }
func (c *conn) expireat(args [][]byte)  { c.expireGeneric(args, expireSeconds) }
func (c *conn) pexpireat(args [][]byte) { c.expireGeneric(args, 0) }

// expireGeneric answers EXPIRE, PEXPIRE, EXPIREAT and PEXPIREAT key time
// [NX|XX|GT|LT], in Redis's order: options first, then the number, then
// overflow. A time already past removes the key (and answers 1).
//
// A new expiry rewrites the entry with its value, flags and tags, under a
// compare-and-swap: the options' conditions hold at the moment of the
// write, and the entry's CAS unique changes, so a WATCH on the key sees
// the EXPIRE as Redis's does. (The store's Touch, which memcached's touch
// uses, keeps the CAS unique: a WATCH does not see those.)
func (c *conn) expireGeneric(args [][]byte, unit int) {
	flags := 0
	for _, a := range args[3:] {
		switch strings.ToUpper(string(a)) {
		case "NX":
			flags |= expireNX
		case "XX":
			flags |= expireXX
		case "GT":
			flags |= expireGT
		case "LT":
			flags |= expireLT
		default:
			c.w.errorReply("ERR Unsupported option " + cString(a, math.MaxInt))
			return
		}
	}
	switch {
	case flags&expireNX != 0 && flags&(expireXX|expireGT|expireLT) != 0:
		c.w.errorReply("ERR NX and XX, GT or LT options at the same time are not compatible")
		return
	case flags&expireGT != 0 && flags&expireLT != 0:
		c.w.errorReply("ERR GT and LT options at the same time are not compatible")
		return
	}
	when, ok := store.ParseCanonicalInt(args[2])
	if !ok {
		c.w.errorReply(errNotInteger)
		return
	}
	invalid := "ERR invalid expire time in '" + strings.ToLower(string(args[0])) + "' command"
	if unit&expireSeconds != 0 {
		if when > math.MaxInt64/1000 || when < math.MinInt64/1000 {
			c.w.errorReply(invalid)
			return
		}
		when *= 1000
	}
	if unit&expireRelative != 0 {
		now := c.db.Now()
		if when > math.MaxInt64-now {
			c.w.errorReply(invalid)
			return
		}
		when += now
	}
	if when <= 0 {
		when = -1 // past; 0 would mean "never" to the store
	}
	changed := false
	err := modify(c.db, str(args[1]), func(it store.Item, exists bool) (edit, error) {
		changed = false
		cur := it.Expires
		switch {
		case !exists,
			flags&expireNX != 0 && cur != 0,
			flags&expireXX != 0 && cur == 0,
			flags&expireGT != 0 && (cur == 0 || when <= cur),
			flags&expireLT != 0 && cur != 0 && when >= cur:
			return edit{}, nil
		}
		changed = true
		p := kept(it)
		p.Expires = when
		return rewrite(it, p), nil
	})
	if err != nil {
		c.fail(c.db, err)
		return
	}
	c.w.integer(boolInt(changed))
}

func boolInt(b bool) int64 {
	if b {
		return 1
	}
	return 0
}

// ttlOf returns the entry's remaining time in ms, -1 without expiry, -2 if
// there is no entry.
func (c *conn) ttlOf(key []byte) (ttl, expires int64) {
	it, ok := c.db.Get(str(key))
	switch {
	case !ok:
		return -2, -2
	case it.Expires == 0:
		return -1, -1
	}
	return max(it.Expires-c.db.Now(), 0), it.Expires
}

func (c *conn) ttl(args [][]byte) {
	ttl, _ := c.ttlOf(args[1])
	if ttl >= 0 {
		ttl = (ttl + 500) / 1000
	}
	c.w.integer(ttl)
}

func (c *conn) pttl(args [][]byte) {
	ttl, _ := c.ttlOf(args[1])
	c.w.integer(ttl)
}

func (c *conn) expiretime(args [][]byte) {
	_, at := c.ttlOf(args[1])
	if at >= 0 {
		at = (at + 500) / 1000
	}
	c.w.integer(at)
}

func (c *conn) pexpiretime(args [][]byte) {
	_, at := c.ttlOf(args[1])
	c.w.integer(at)
}

// persist removes the expiry; like EXPIRE it rewrites the entry.
func (c *conn) persist(args [][]byte) {
	changed := false
	err := modify(c.db, str(args[1]), func(it store.Item, exists bool) (edit, error) {
		if changed = exists && it.Expires != 0; !changed {
			return edit{}, nil
		}
		p := kept(it)
		p.Expires = 0
		return rewrite(it, p), nil
	})
	if err != nil {
		c.fail(c.db, err)
		return
	}
	c.w.integer(boolInt(changed))
}

func (c *conn) typeCmd(args [][]byte) {
	if _, ok := c.db.TagsOf(str(args[1])); ok {
		c.w.simple("string")
		return
	}
	c.w.simple("none")
}

func (c *conn) rename(args [][]byte)   { c.renameGeneric(args, false) }
func (c *conn) renamenx(args [][]byte) { c.renameGeneric(args, true) }

// renameGeneric answers RENAME and RENAMENX. The entry moves with its
// expiry, flags and tags. It is taken out of the source first, then
// written to the destination; if that fails the source is put back. In
// between, other clients see neither key. Removing the source is a delete:
// the invalidation channel reports it.
func (c *conn) renameGeneric(args [][]byte, nx bool) {
	src, dst := str(args[1]), str(args[2])
	if src == dst {
		if _, ok := c.db.TagsOf(src); !ok {
			c.w.errorReply(errNoSuchKey)
		} else if nx {
			c.w.integer(0)
		} else {
			c.w.simple("OK")
		}
		return
	}
	if nx {
		if _, ok := c.db.TagsOf(dst); ok {
			if _, ok := c.db.TagsOf(src); !ok {
				c.w.errorReply(errNoSuchKey)
			} else {
				c.w.integer(0)
			}
			return
		}
	}
	it, ok := c.db.GetAndDelete(src)
	if !ok {
		c.w.errorReply(errNoSuchKey)
		return
	}
	var err error
	if nx {
		_, err = c.db.Add(dst, it.Value, kept(it))
	} else {
		_, err = c.db.Set(dst, it.Value, kept(it))
	}
	if err != nil {
		c.db.Add(src, it.Value, kept(it)) // put it back, unless written meanwhile
		if errors.Is(err, store.ErrExists) {
			c.w.integer(0)
			return
		}
		c.fail(c.db, err)
		return
	}
	if nx {
		c.w.integer(1)
		return
	}
	c.w.simple("OK")
}

// copyCmd answers COPY source destination [DB index|name] [REPLACE].
func (c *conn) copyCmd(args [][]byte) {
	dst := c.db
	replace := false
	for i := 3; i < len(args); i++ {
		switch opt := strings.ToUpper(string(args[i])); {
		case opt == "REPLACE":
			replace = true
		case opt == "DB" && i+1 < len(args):
			st, _, errMsg := c.storeByArg(args[i+1])
			if errMsg != "" {
				c.w.errorReply(errMsg)
				return
			}
			dst = st
			i++
		default:
			c.w.errorReply(errSyntax)
			return
		}
	}
	if dst == c.db && string(args[1]) == string(args[2]) {
		c.w.errorReply("ERR source and destination objects are the same")
		return
	}
	it, ok := c.db.Get(str(args[1]))
	if !ok {
		c.w.integer(0)
		return
	}
	var err error
	if replace {
		_, err = dst.Set(str(args[2]), it.Value, kept(it))
	} else {
		_, err = dst.Add(str(args[2]), it.Value, kept(it))
	}
	switch {
	case errors.Is(err, store.ErrExists):
		c.w.integer(0)
	case err != nil:
		c.fail(dst, err)
	default:
		c.w.integer(1)
	}
}

// keysCmd answers KEYS pattern, walking the whole store as Redis does.
func (c *conn) keysCmd(args [][]byte) {
	pattern := string(args[1])
	all := pattern == "*"
	var keys []string
	for cursor := uint64(0); ; {
		var batch []string
		batch, cursor = c.db.Scan(cursor, 1024, nil)
		for _, k := range batch {
			if all || globMatch(pattern, k, false) {
				keys = append(keys, k)
			}
		}
		if cursor == 0 {
			break
		}
	}
	c.w.stringArray(keys)
}

// scan answers SCAN cursor [MATCH pattern] [COUNT count] [TYPE type]. The
// cursor is the store's: the index of the next shard to visit, so a key
// that exists for the whole walk is returned exactly once, whatever
// happens to others. COUNT is how many keys to visit, at the least (whole
// shards are visited); MATCH filters those, so a call may return none.
func (c *conn) scan(args [][]byte) {
	cursor, ok := parseCursor(args[1])
	if !ok {
		c.w.errorReply("ERR invalid cursor")
		return
	}
	count := int64(10)
	pattern, typ := "", ""
	for i := 2; i < len(args); i += 2 {
		if i+1 >= len(args) {
			c.w.errorReply(errSyntax)
			return
		}
		switch strings.ToUpper(string(args[i])) {
		case "COUNT":
			var ok bool
			if count, ok = store.ParseCanonicalInt(args[i+1]); !ok {
				c.w.errorReply(errNotInteger)
				return
			}
			if count < 1 {
				c.w.errorReply(errSyntax)
				return
			}
		case "MATCH":
			pattern = string(args[i+1])
		case "TYPE":
			typ = strings.ToLower(string(args[i+1]))
		default:
			c.w.errorReply(errSyntax)
			return
		}
	}
	var keys []string
	next := uint64(0)
	if typ == "" || typ == "string" {
		var batch []string
		batch, next = c.db.Scan(cursor, int(min(count, math.MaxInt32)), nil)
		for _, k := range batch {
			if pattern == "" || globMatch(pattern, k, false) {
				keys = append(keys, k)
			}
		}
	}
	c.w.array(2)
	c.w.bulkString(strconv.FormatUint(next, 10))
	c.w.stringArray(keys)
}

// randomkey starts a walk at a random shard and returns a random key of
// the first non-empty one.
func (c *conn) randomkey(args [][]byte) {
	start := uint64(rand.IntN(c.db.Shards()))
	keys, _ := c.db.Scan(start, 1, nil)
	if len(keys) == 0 && start > 0 {
		keys, _ = c.db.Scan(0, 1, nil)
	}
	if len(keys) == 0 {
		c.w.null()
		return
	}
	c.w.bulkString(keys[rand.IntN(len(keys))])
}

// touch counts the keys that exist, recording an access to each.
func (c *conn) touch(args [][]byte) {
	n := 0
	for _, k := range args[1:] {
		if _, ok := c.db.Get(str(k)); ok {
			n++
		}
	}
	c.w.integer(int64(n))
}

// parseCursor parses a SCAN cursor as C's strtoul does for Redis: an
// optional sign (a negative number wraps around), then decimal digits.
func parseCursor(b []byte) (uint64, bool) {
	neg := len(b) > 0 && b[0] == '-'
	if len(b) > 0 && (b[0] == '-' || b[0] == '+') {
		b = b[1:]
	}
	n, err := strconv.ParseUint(string(b), 10, 64)
	if err != nil || len(b) == 0 || b[0] < '0' || b[0] > '9' {
		return 0, false
	}
	if neg {
		n = -n
	}
	return n, true
}
