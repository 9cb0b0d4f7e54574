package resp

import (
	"bytes"
	"errors"
	"math"
	"math/big"
	"runtime"
	"strings"
	"unsafe"

	"github.com/tagcache/caddy-tagcache/store"
)

// str views an argument as a string without copying. The store copies
// what it keeps, so a key passed this way may alias the reader's buffer;
// anything the connection keeps itself (watched keys, queued commands) is
// copied.
func str(b []byte) string { return unsafe.String(unsafe.SliceData(b), len(b)) }

// replyError is an error to send to the client as it is.
type replyError string

func (e replyError) Error() string { return string(e) }

// fail replies with err: a replyError as it is, a store error worded for
// Redis clients.
func (c *conn) fail(st *store.Store, err error) {
	var re replyError
	if errors.As(err, &re) {
		c.w.errorReply(string(re))
		return
	}
	c.w.errorReply(storeError(st, err))
}

// edit is what a read-modify-write decides: store value with params, or
// (write false) leave the entry as it is.
type edit struct {
	value  []byte
	params store.Params
	write  bool
	// keepStale marks the entry stale again if it was: a change of
	// metadata only (expiry, tags) does not make a soft-purged entry
	// fresh, as a new value does.
	keepStale bool
}

// rewrite is the edit that changes an entry's metadata to p, keeping its
// value.
func rewrite(it store.Item, p store.Params) edit {
	return edit{value: it.Value, params: p, write: true, keepStale: true}
}

// modify reads the live entry under key, lets decide compute the new one
// and writes it only if the entry has not changed meanwhile (by its CAS
// unique, or its absence), retrying otherwise. This makes Redis's
// read-modify-write commands atomic against every writer, whichever front
// it comes through, without a lock around the store. decide may run more
// than once and must not keep anything but its last results.
func modify(st *store.Store, key string, decide func(old store.Item, exists bool) (edit, error)) error {
	for attempt := 0; ; attempt++ {
		old, exists := st.Get(key)
		e, err := decide(old, exists)
		if err != nil || !e.write {
			return err
		}
		if exists {
			_, err = st.CompareAndSwap(key, e.value, e.params, old.CAS)
		} else {
			_, err = st.Add(key, e.value, e.params)
		}
		if err == nil && e.keepStale && old.Stale {
			st.MarkStale(key)
		}
		if !errors.Is(err, store.ErrCASMismatch) && !errors.Is(err, store.ErrNotFound) && !errors.Is(err, store.ErrExists) {
			return err
		}
		if attempt >= 8 {
			runtime.Gosched() // let the writers we keep losing to finish
		}
	}
}

// kept is the metadata of an entry that a rewrite keeps: its flags (set by
// another front), expiry and tags.
func kept(it store.Item) store.Params {
	return store.Params{Flags: it.Flags, Expires: it.Expires, Tags: it.Tags}
}

// valueTooLarge checks a value the connection is about to build against
// the store's item size limit, before allocating it.
func valueTooLarge(st *store.Store, size int64) error {
	if max := int64(st.Config().MaxItemSize); size > max {
		return &store.LimitError{Err: store.ErrValueTooLarge, Size: size, Max: max}
	}
	return nil
}

func (c *conn) get(args [][]byte) {
	it, ok := c.db.Get(str(args[1]))
	if !ok {
		c.w.null()
		return
	}
	c.w.bulk(it.Value)
}

// expiry units and bases of SET's, GETEX's and SETEX's options.
const (
	expireSeconds = 1 << iota
	expireRelative
)

// expireArg parses an expiry argument as Redis's getExpireMillisecondsOrReply
// does and returns the absolute Unix ms. cmd names the command in the
// error.
func (c *conn) expireArg(arg []byte, unit int, cmd string) (int64, error) {
	ms, ok := store.ParseCanonicalInt(arg)
	if !ok {
		return 0, replyError(errNotInteger)
	}
	invalid := replyError("ERR invalid expire time in '" + cmd + "' command")
	if ms <= 0 || (unit&expireSeconds != 0 && ms > math.MaxInt64/1000) {
		return 0, invalid
	}
	if unit&expireSeconds != 0 {
		ms *= 1000
	}
	if unit&expireRelative != 0 {
		ms += c.db.Now()
	}
	if ms <= 0 {
		return 0, invalid
	}
	return ms, nil
}

// setOptions are SET's and GETEX's options.
type setOptions struct {
	nx, xx, get, keepTTL, persist bool
	// expireArg and expireUnit are the expiry option's argument; it is
	// parsed after the options, as Redis does.
	expireArg  []byte
	expireUnit int
	tags       []string
}

// parseSetOptions parses the options of SET (forGetex false) or GETEX
// with Redis's rules: NX/XX exclude each other, the expiry options exclude
// each other and KEEPTTL/PERSIST, and a repeated option is allowed. SET
// also takes TAGS, which takes every argument after it as a tag.
func parseSetOptions(args [][]byte, forGetex bool) (setOptions, bool) {
	var o setOptions
	expire := ""
	for i := 0; i < len(args); i++ {
		opt := strings.ToUpper(string(args[i]))
		hasNext := i+1 < len(args)
		switch {
		case opt == "NX" && !forGetex && !o.xx:
			o.nx = true
		case opt == "XX" && !forGetex && !o.nx:
			o.xx = true
		case opt == "GET" && !forGetex:
			o.get = true
		case opt == "KEEPTTL" && !forGetex && expire == "":
			o.keepTTL = true
		case opt == "PERSIST" && forGetex && expire == "":
			o.persist = true
		case (opt == "EX" || opt == "PX" || opt == "EXAT" || opt == "PXAT") &&
			!o.keepTTL && !o.persist && (expire == "" || expire == opt) && hasNext:
			expire = opt
			o.expireArg = args[i+1]
			switch opt {
			case "EX":
				o.expireUnit = expireSeconds | expireRelative
			case "PX":
				o.expireUnit = expireRelative
			case "EXAT":
				o.expireUnit = expireSeconds
			default:
				o.expireUnit = 0
			}
			i++
		case opt == "TAGS" && !forGetex && hasNext:
			for _, t := range args[i+1:] {
				o.tags = append(o.tags, string(t))
			}
			return o, true
		default:
			return o, false
		}
	}
	return o, true
}

// set answers SET key value [NX|XX] [GET] [EX s|PX ms|EXAT ts|PXAT ms|KEEPTTL]
// [TAGS tag ...]. Without TAGS the entry has no tags: SET replaces an entry
// whole, as it replaces its expiry.
func (c *conn) set(args [][]byte) {
	o, ok := parseSetOptions(args[3:], false)
	if !ok {
		c.w.errorReply(errSyntax)
		return
	}
	p := store.Params{Tags: o.tags}
	if o.expireArg != nil {
		var err error
		if p.Expires, err = c.expireArg(o.expireArg, o.expireUnit, "set"); err != nil {
			c.fail(c.db, err)
			return
		}
	}
	key, value := str(args[1]), args[2]
	if !o.get && !o.keepTTL {
		var err error
		switch {
		case o.nx:
			_, err = c.db.Add(key, value, p)
		case o.xx:
			_, err = c.db.Replace(key, value, p)
		default:
			_, err = c.db.Set(key, value, p)
		}
		switch {
		case errors.Is(err, store.ErrExists), errors.Is(err, store.ErrNotFound):
			c.w.null()
		case err != nil:
			c.fail(c.db, err)
		default:
			c.w.simple("OK")
		}
		return
	}
	var old store.Item
	var existed, skipped bool
	err := modify(c.db, key, func(it store.Item, exists bool) (edit, error) {
		old, existed = it, exists
		if skipped = o.nx && exists || o.xx && !exists; skipped {
			return edit{}, nil
		}
		np := p
		if o.keepTTL && exists {
			np.Expires = it.Expires
		}
		return edit{value: value, params: np, write: true}, nil
	})
	switch {
	case err != nil:
		c.fail(c.db, err)
	case o.get && existed:
		c.w.bulk(old.Value)
	case o.get || skipped:
		c.w.null()
	default:
		c.w.simple("OK")
	}
}

func (c *conn) setnx(args [][]byte) {
	_, err := c.db.Add(str(args[1]), args[2], store.Params{})
	switch {
	case errors.Is(err, store.ErrExists):
		c.w.integer(0)
	case err != nil:
		c.fail(c.db, err)
	default:
		c.w.integer(1)
	}
}

func (c *conn) setex(args [][]byte)  { c.setWithExpiry(args, expireSeconds|expireRelative, "setex") }
func (c *conn) psetex(args [][]byte) { c.setWithExpiry(args, expireRelative, "psetex") }

// setWithExpiry answers SETEX and PSETEX: key, expiry, value.
func (c *conn) setWithExpiry(args [][]byte, unit int, cmd string) {
	expires, err := c.expireArg(args[2], unit, cmd)
	if err == nil {
		_, err = c.db.Set(str(args[1]), args[3], store.Params{Expires: expires})
	}
	if err != nil {
		c.fail(c.db, err)
		return
	}
	c.w.simple("OK")
}

func (c *conn) mget(args [][]byte) {
	c.w.array(len(args) - 1)
	for _, k := range args[1:] {
		if it, ok := c.db.Get(str(k)); ok {
			c.w.bulk(it.Value)
		} else {
			c.w.null()
		}
	}
}

// checkPairs validates MSET's keys and values against the store's limits
// first, so that a bad pair does not leave the ones before it written.
func (c *conn) checkPairs(args [][]byte) bool {
	if len(args)%2 == 0 {
		c.w.errorReply("ERR wrong number of arguments for '" + strings.ToLower(string(args[0])) + "' command")
		return false
	}
	cfg := c.db.Config()
	for i := 1; i < len(args); i += 2 {
		var err error
		switch k, v := args[i], args[i+1]; {
		case len(k) == 0:
			err = store.ErrEmptyKey
		case len(k) > cfg.MaxKeyLength:
			err = &store.LimitError{Err: store.ErrKeyTooLong, Size: int64(len(k)), Max: int64(cfg.MaxKeyLength)}
		case len(v) > cfg.MaxItemSize:
			err = &store.LimitError{Err: store.ErrValueTooLarge, Size: int64(len(v)), Max: int64(cfg.MaxItemSize)}
		}
		if err != nil {
			c.fail(c.db, err)
			return false
		}
	}
	return true
}

// mset writes every pair. The keys are written one by one: another client
// may see some of them before the others.
func (c *conn) mset(args [][]byte) {
	if !c.checkPairs(args) {
		return
	}
	for i := 1; i < len(args); i += 2 {
		if _, err := c.db.Set(str(args[i]), args[i+1], store.Params{}); err != nil {
			c.fail(c.db, err)
			return
		}
	}
	c.w.simple("OK")
}

// msetnx writes the pairs only if none of the keys exists. Each key is
// added only if absent, but the set as a whole is not isolated: a key that
// another client creates during the call stops it there, with the keys
// before it written.
func (c *conn) msetnx(args [][]byte) {
	if !c.checkPairs(args) {
		return
	}
	for i := 1; i < len(args); i += 2 {
		if _, ok := c.db.TagsOf(str(args[i])); ok {
			c.w.integer(0)
			return
		}
	}
	for i := 1; i < len(args); i += 2 {
		_, err := c.db.Add(str(args[i]), args[i+1], store.Params{})
		if errors.Is(err, store.ErrExists) {
			c.w.integer(0)
			return
		}
		if err != nil {
			c.fail(c.db, err)
			return
		}
	}
	c.w.integer(1)
}

func (c *conn) getset(args [][]byte) {
	var old store.Item
	var existed bool
	err := modify(c.db, str(args[1]), func(it store.Item, exists bool) (edit, error) {
		old, existed = it, exists
		return edit{value: args[2], write: true}, nil
	})
	c.replyOld(err, old, existed)
}

// replyOld answers with the value an entry had before a write (null if it
// did not exist), or with the write's error.
func (c *conn) replyOld(err error, old store.Item, existed bool) {
	switch {
	case err != nil:
		c.fail(c.db, err)
	case existed:
		c.w.bulk(old.Value)
	default:
		c.w.null()
	}
}

func (c *conn) getdel(args [][]byte) {
	it, ok := c.db.GetAndDelete(str(args[1]))
	if !ok {
		c.w.null()
		return
	}
	c.w.bulk(it.Value)
}

// getex answers GETEX key [EX s|PX ms|EXAT ts|PXAT ms|PERSIST]. A new
// expiry rewrites the entry, which changes its CAS unique: WATCH sees it.
func (c *conn) getex(args [][]byte) {
	o, ok := parseSetOptions(args[2:], true)
	if !ok {
		c.w.errorReply(errSyntax)
		return
	}
	var expires int64
	if o.expireArg != nil {
		var err error
		if expires, err = c.expireArg(o.expireArg, o.expireUnit, "getex"); err != nil {
			c.fail(c.db, err)
			return
		}
	}
	if o.expireArg == nil && !o.persist {
		c.get(args)
		return
	}
	var old store.Item
	var existed bool
	err := modify(c.db, str(args[1]), func(it store.Item, exists bool) (edit, error) {
		old, existed = it, exists
		if !exists || (o.persist && it.Expires == 0) {
			return edit{}, nil
		}
		p := kept(it)
		p.Expires = expires
		return rewrite(it, p), nil
	})
	c.replyOld(err, old, existed)
}

// appendCmd answers APPEND, which creates a missing key.
func (c *conn) appendCmd(args [][]byte) {
	_, n, err := c.db.Write(str(args[1]), args[2], store.Params{}, store.WriteOptions{Mode: store.ModeAppend, Create: true})
	if err != nil {
		c.fail(c.db, err)
		return
	}
	c.w.integer(int64(n))
}

func (c *conn) strlen(args [][]byte) {
	it, _ := c.db.Get(str(args[1]))
	c.w.integer(int64(len(it.Value)))
}

// getrange answers GETRANGE and SUBSTR with Redis's index rules.
func (c *conn) getrange(args [][]byte) {
	start, ok1 := store.ParseCanonicalInt(args[2])
	end, ok2 := store.ParseCanonicalInt(args[3])
	if !ok1 || !ok2 {
		c.w.errorReply(errNotInteger)
		return
	}
	it, _ := c.db.Get(str(args[1]))
	n := int64(len(it.Value))
	if start < 0 && end < 0 && start > end {
		c.w.bulk(nil)
		return
	}
	if start < 0 {
		start += n
	}
	if end < 0 {
		end += n
	}
	start, end = max(start, 0), max(end, 0)
	if end >= n {
		end = n - 1
	}
	if start > end || n == 0 {
		c.w.bulk(nil)
		return
	}
	c.w.bulk(it.Value[start : end+1])
}

// setrange answers SETRANGE, which zero-pads and creates a missing key
// unless the value is empty.
func (c *conn) setrange(args [][]byte) {
	offset, ok := store.ParseCanonicalInt(args[2])
	if !ok {
		c.w.errorReply(errNotInteger)
		return
	}
	if offset < 0 {
		c.w.errorReply("ERR offset is out of range")
		return
	}
	value := args[3]
	var n int
	err := modify(c.db, str(args[1]), func(it store.Item, exists bool) (edit, error) {
		n = len(it.Value)
		if len(value) == 0 {
			return edit{}, nil
		}
		end := offset + int64(len(value))
		if end > 512<<20 {
			return edit{}, replyError("ERR string exceeds maximum allowed size (proto-max-bulk-len)")
		}
		if err := valueTooLarge(c.db, max(end, int64(n))); err != nil {
			return edit{}, err
		}
		v := make([]byte, max(int(end), n))
		copy(v, it.Value)
		copy(v[offset:], value)
		n = len(v)
		p := store.Params{}
		if exists {
			p = kept(it)
		}
		return edit{value: v, params: p, write: true}, nil
	})
	if err != nil {
		c.fail(c.db, err)
		return
	}
	c.w.integer(int64(n))
}

func (c *conn) incr(args [][]byte) { c.incrBy(args[1], 1) }
func (c *conn) decr(args [][]byte) { c.incrBy(args[1], -1) }

func (c *conn) incrby(args [][]byte) {
	delta, ok := store.ParseCanonicalInt(args[2])
	if !ok {
		c.w.errorReply(errNotInteger)
		return
	}
	c.incrBy(args[1], delta)
}

func (c *conn) decrby(args [][]byte) {
	delta, ok := store.ParseCanonicalInt(args[2])
	switch {
	case !ok:
		c.w.errorReply(errNotInteger)
	case delta == math.MinInt64:
		c.w.errorReply("ERR decrement would overflow")
	default:
		c.incrBy(args[1], -delta)
	}
}

// incrBy adds delta to the integer under key (0 if missing), keeping the
// entry's expiry and tags. The value must be an integer as Redis reads it
// (no sign but '-', no leading zeros or spaces), which is the store's rule
// too, and the sum must not overflow.
func (c *conn) incrBy(key []byte, delta int64) {
	n, err := c.db.IncrBy(str(key), delta, store.Params{})
	switch {
	case errors.Is(err, store.ErrNotNumeric):
		c.w.errorReply(errNotInteger)
	case errors.Is(err, store.ErrOverflow):
		c.w.errorReply(errOverflow)
	case err != nil:
		c.fail(c.db, err)
	default:
		c.w.integer(n)
	}
}

// longDoubleBits is the mantissa of the x87 long double that Redis does
// INCRBYFLOAT's arithmetic in; big.Float at this precision rounds as it
// does, so the results, printed with 17 decimals, are Redis's.
const (
	longDoubleBits   = 64
	longDoubleMaxExp = 16384
	longDoubleMinExp = -16445
)

// parseLongDouble parses a float as Redis's string2ld does (strtold, no
// leading space, the whole string, no NaN, no overflow or underflow to
// zero). inf reports an infinity, which Redis accepts and then refuses as
// a result.
func parseLongDouble(b []byte) (f *big.Float, inf, ok bool) {
	if len(b) == 0 || len(b) >= 5<<10 || isSpace(b[0]) || bytes.IndexByte(b, '_') >= 0 {
		return nil, false, false
	}
	s := string(b)
	unsigned := strings.TrimLeft(s, "+-")
	if len(s)-len(unsigned) > 1 {
		return nil, false, false
	}
	switch strings.ToLower(unsigned) {
	case "inf", "infinity":
		return nil, true, true
	}
	base := 10
	if len(unsigned) > 1 && unsigned[0] == '0' && (unsigned[1] == 'x' || unsigned[1] == 'X') {
		base = 0 // strtold's hexadecimal floats
	}
	f, _, err := new(big.Float).SetPrec(longDoubleBits).Parse(s, base)
	if err != nil || f.IsInf() {
		return nil, false, false
	}
	if f.Sign() != 0 {
		if exp := f.MantExp(nil); exp > longDoubleMaxExp || exp < longDoubleMinExp {
			return nil, false, false
		}
	}
	return f, false, true
}

// formatLongDouble prints f as Redis's ld2string in its human mode: 17
// decimals, trailing zeros and point removed, "-0" as "0".
func formatLongDouble(f *big.Float) string {
	s := f.Text('f', 17)
	if strings.IndexByte(s, '.') >= 0 {
		s = strings.TrimRight(strings.TrimRight(s, "0"), ".")
	}
	if s == "-0" {
		s = "0"
	}
	return s
}

func (c *conn) incrbyfloat(args [][]byte) {
	incr, incrInf, ok := parseLongDouble(args[2])
	if !ok {
		c.w.errorReply(errNotFloat)
		return
	}
	var result string
	err := modify(c.db, str(args[1]), func(it store.Item, exists bool) (edit, error) {
		value := new(big.Float).SetPrec(longDoubleBits)
		valueInf := false
		if exists {
			var ok bool
			if value, valueInf, ok = parseLongDouble(it.Value); !ok {
				return edit{}, replyError(errNotFloat)
			}
		}
		if incrInf || valueInf {
			return edit{}, replyError("ERR increment would produce NaN or Infinity")
		}
		sum := new(big.Float).SetPrec(longDoubleBits).Add(value, incr)
		if sum.Sign() != 0 && sum.MantExp(nil) > longDoubleMaxExp {
			return edit{}, replyError("ERR increment would produce NaN or Infinity")
		}
		result = formatLongDouble(sum)
		p := store.Params{}
		if exists {
			p = kept(it)
		}
		return edit{value: []byte(result), params: p, write: true}, nil
	})
	if err != nil {
		c.fail(c.db, err)
		return
	}
	c.w.bulkString(result)
}
