package tabproto

import (
	"bufio"
	"bytes"
	"errors"
	"math"
	"strconv"
	"strings"
	"time"
	"unsafe"

	"github.com/tagcache/caddy-tagcache/auth"
	"github.com/tagcache/caddy-tagcache/listeners"
	"github.com/tagcache/caddy-tagcache/store"
)

// client is the state of one connection.
type client struct {
	s    *listeners.Session
	w    *bufio.Writer
	long []byte    // a line too long for the read buffer
	args [5][]byte // fields of the current command
	tags []string  // tags of the current command, aliasing the line
	num  [24]byte  // scratch for formatting numbers
	cmd  [16]byte  // the upper-cased command name
}

// command describes one command: the right it needs, its number of
// arguments and whether the last one is the rest of the line.
type command struct {
	perm     auth.Permission
	min, max int
	rest     bool
	run      func(c *client, args [][]byte)
}

var commands map[string]*command

func init() {
	commands = map[string]*command{
		"PUT":         {perm: auth.PermWrite, min: 4, max: 4, rest: true, run: (*client).put},
		"ADD":         {perm: auth.PermWrite, min: 4, max: 4, rest: true, run: (*client).add},
		"INCR":        {perm: auth.PermWrite, min: 1, max: 4, run: (*client).incr},
		"DECR":        {perm: auth.PermWrite, min: 1, max: 4, run: (*client).decr},
		"GET":         {perm: auth.PermRead, min: 1, max: 1, run: (*client).get},
		"DEL":         {perm: auth.PermWrite, min: 1, max: 1, run: (*client).del},
		"INV_TAG":     {perm: auth.PermPurge, min: 1, max: 1, run: (*client).invTag},
		"KEYS_BY_TAG": {perm: auth.PermRead, min: 1, max: 2, run: (*client).keysByTag},
		"KEYS":        {perm: auth.PermRead, min: 1, max: 2, run: (*client).keysByTag},
		"STATS":       {perm: auth.PermRead, run: (*client).stats},
		"AUTH":        {min: 2, max: 2, rest: true, run: (*client).auth},
		"PING":        {run: (*client).ping},
		"TOUCH":       {perm: auth.PermWrite, min: 2, max: 2, run: (*client).touch},
		"TTL":         {perm: auth.PermRead, min: 1, max: 1, run: (*client).ttl},
		"TAGS_OF":     {perm: auth.PermRead, min: 1, max: 1, run: (*client).tagsOf},
		"FLUSH":       {perm: auth.PermAdmin, run: (*client).flush},
		"SAVE":        {perm: auth.PermAdmin, run: (*client).save},
	}
}

// exec runs one command line; an empty line is ignored.
func (c *client) exec(line []byte) {
	if len(line) == 0 {
		return
	}
	name, rest, hasArgs := bytes.Cut(line, tab)
	cmd := c.lookup(name)
	if cmd == nil {
		c.fail("unknown command")
		return
	}
	if cmd.perm != 0 && !c.s.Can(cmd.perm) {
		if !c.s.Authenticated() {
			c.fail("auth required")
		} else {
			c.fail("permission denied")
		}
		return
	}
	args := c.args[:0]
	if hasArgs {
		limit := cmd.max + 1 // one more, to tell too many
		if cmd.rest {
			limit = cmd.max
		}
		for len(args) < limit-1 {
			field, tail, more := bytes.Cut(rest, tab)
			if !more {
				break
			}
			args = append(args, field)
			rest = tail
		}
		args = append(args, rest)
	}
	if len(args) < cmd.min || len(args) > cmd.max {
		c.fail("wrong number of arguments")
		return
	}
	cmd.run(c, args)
}

var tab = []byte{'\t'}

// lookup finds a command by its case-insensitive name.
func (c *client) lookup(name []byte) *command {
	if len(name) > len(c.cmd) {
		return nil
	}
	up := c.cmd[:len(name)]
	for i, b := range name {
		if 'a' <= b && b <= 'z' {
			b -= 'a' - 'A'
		}
		up[i] = b
	}
	return commands[string(up)]
}

func (c *client) put(args [][]byte) { c.store(args, false) }
func (c *client) add(args [][]byte) { c.store(args, true) }

func (c *client) store(args [][]byte, onlyNew bool) {
	p, ok := c.params(args[1], args[2])
	if !ok {
		return
	}
	value := args[3]
	if len(value) > c.s.Limits.MaxValueSize {
		c.fail("value too large")
		return
	}
	var err error
	if onlyNew {
		_, err = c.s.Store.Add(str(args[0]), value, p)
	} else {
		_, err = c.s.Store.Set(str(args[0]), value, p)
	}
	switch {
	case err == nil && onlyNew:
		c.reply("ADDED")
	case err == nil:
		c.reply("OK")
	case errors.Is(err, store.ErrExists):
		c.reply("EXISTS")
	default:
		c.fail(err.Error())
	}
}

func (c *client) incr(args [][]byte) { c.count(args, false) }
func (c *client) decr(args [][]byte) { c.count(args, true) }

// count runs INCR or DECR: <key> [<by>] [<ttl_ms|->] [<tags|->].
func (c *client) count(args [][]byte, negate bool) {
	by := int64(1)
	if len(args) > 1 && !isNone(args[1]) {
		n, ok := parseInt(args[1])
		if !ok {
			c.fail("invalid amount")
			return
		}
		by = n
	}
	if negate {
		if by == math.MinInt64 {
			c.fail(store.ErrOverflow.Error())
			return
		}
		by = -by
	}
	var ttl, tags []byte
	if len(args) > 2 {
		ttl = args[2]
	}
	if len(args) > 3 {
		tags = args[3]
	}
	p, ok := c.params(ttl, tags)
	if !ok {
		return
	}
	n, err := c.s.Store.IncrBy(str(args[0]), by, p)
	if err != nil {
		c.fail(err.Error())
		return
	}
	c.w.WriteString("VALUE ")
	c.w.Write(strconv.AppendInt(c.num[:0], n, 10))
	c.end(false)
}

func (c *client) get(args [][]byte) {
	it, ok := c.s.Store.Get(str(args[0]))
	if !ok {
		c.reply("NF")
		return
	}
	if bytes.IndexByte(it.Value, '\n') >= 0 {
		c.fail("value contains a newline; read it over another protocol")
		return
	}
	c.w.WriteString("VALUE ")
	c.w.Write(it.Value)
	c.end(false)
}

func (c *client) del(args [][]byte) {
	c.outcome(c.s.Store.Delete(str(args[0])), "DEL ok", "DEL nf")
}

func (c *client) invTag(args [][]byte) {
	n := c.s.Store.InvalidateTags(str(args[0]))
	c.w.WriteString("INV_TAG ")
	c.w.Write(strconv.AppendInt(c.num[:0], int64(n), 10))
	c.end(false)
}

// keysByTag lists the keys of a tag, up to an optional limit. Keys holding
// a newline cannot be listed on one line and are left out.
func (c *client) keysByTag(args [][]byte) {
	limit := 0
	if len(args) > 1 {
		n, ok := parseInt(args[1])
		if !ok || n < 0 || n > math.MaxInt32 {
			c.fail("invalid limit")
			return
		}
		limit = int(n)
	}
	c.w.WriteString("KEYS ")
	first := true
	for _, k := range c.s.Store.KeysByTag(str(args[0]), limit) {
		if strings.IndexByte(k, '\n') >= 0 {
			continue
		}
		if !first {
			c.w.WriteByte(',')
		}
		c.w.WriteString(k)
		first = false
	}
	c.end(false)
}

func (c *client) stats([][]byte) {
	st := c.s.Store.Stats()
	ratio := 0.0
	if total := st.Hits + st.Misses; total > 0 {
		ratio = float64(st.Hits) / float64(total)
	}
	c.w.WriteString("STATS ")
	for _, n := range []uint64{st.Hits, st.Misses, st.Sets, st.Invalidations} {
		c.w.Write(strconv.AppendUint(c.num[:0], n, 10))
		c.w.WriteByte(' ')
	}
	c.w.Write(strconv.AppendFloat(c.num[:0], ratio, 'f', 6, 64))
	c.end(false)
}

func (c *client) auth(args [][]byte) {
	if !c.s.App.Users().Enabled() {
		c.fail("auth is not enabled")
		return
	}
	if err := c.s.Authenticate(string(args[0]), string(args[1])); err != nil {
		c.fail(err.Error())
		return
	}
	c.reply("OK")
}

func (c *client) ping([][]byte) { c.reply("PONG") }

func (c *client) touch(args [][]byte) {
	expires, ok := c.expires(args[1])
	if !ok {
		return
	}
	c.outcome(c.s.Store.Touch(str(args[0]), expires), "OK", "NF")
}

func (c *client) ttl(args [][]byte) {
	it, ok := c.s.Store.Get(str(args[0]))
	switch {
	case !ok:
		c.reply("NF")
	case it.Expires == 0:
		c.reply("TTL -")
	default:
		c.w.WriteString("TTL ")
		c.w.Write(strconv.AppendInt(c.num[:0], max(it.Expires-c.s.Store.Now(), 0), 10))
		c.end(false)
	}
}

func (c *client) tagsOf(args [][]byte) {
	tags, ok := c.s.Store.TagsOf(str(args[0]))
	switch {
	case !ok:
		c.reply("NF")
	case len(tags) == 0:
		c.reply("TAGS -")
	default:
		c.w.WriteString("TAGS ")
		for i, t := range tags {
			if i > 0 {
				c.w.WriteByte(',')
			}
			c.w.WriteString(t)
		}
		c.end(false)
	}
}

func (c *client) flush([][]byte) {
	c.s.Store.Flush(0)
	c.reply("OK")
}

// save writes the store's snapshot now (as SSache's SAVE) and answers
// SAVE <entries>.
func (c *client) save([][]byte) {
	st, err := c.s.App.SaveSnapshot(c.s.StoreName)
	if err != nil {
		c.fail(err.Error())
		return
	}
	c.w.WriteString("SAVE ")
	c.w.Write(strconv.AppendInt(c.num[:0], st.Entries, 10))
	c.end(false)
}

// params parses the TTL and tags fields of a write.
func (c *client) params(ttl, tags []byte) (store.Params, bool) {
	expires, ok := c.expires(ttl)
	if !ok {
		return store.Params{}, false
	}
	c.tags = c.tags[:0]
	if !isNone(tags) {
		for len(tags) > 0 {
			var tag []byte
			tag, tags, _ = bytes.Cut(tags, comma)
			if len(tag) > 0 {
				c.tags = append(c.tags, str(tag))
			}
		}
	}
	return store.Params{Expires: expires, Tags: c.tags}, true
}

var comma = []byte{','}

// maxTTL is the longest TTL in milliseconds that time.Duration holds.
const maxTTL = math.MaxInt64 / int64(time.Millisecond)

// expires parses a TTL field in milliseconds; `-`, empty and 0 mean none.
func (c *client) expires(ttl []byte) (int64, bool) {
	if isNone(ttl) {
		return 0, true
	}
	ms, ok := parseInt(ttl)
	if !ok || ms < 0 || ms > maxTTL {
		c.fail("invalid ttl")
		return 0, false
	}
	return c.s.Store.ExpiresIn(time.Duration(ms) * time.Millisecond), true
}

// outcome answers a command on one entry: ok if it succeeded, notFound if
// there was no entry, else the error.
func (c *client) outcome(err error, ok, notFound string) {
	switch {
	case err == nil:
		c.reply(ok)
	case errors.Is(err, store.ErrNotFound):
		c.reply(notFound)
	default:
		c.fail(err.Error())
	}
}

// reply writes a whole reply line.
func (c *client) reply(line string) {
	c.w.WriteString(line)
	c.end(false)
}

// fail writes an error reply.
func (c *client) fail(msg string) {
	c.w.WriteString("ERR ")
	c.w.WriteString(msg)
	c.end(true)
}

// end ends a reply line and counts the command.
func (c *client) end(failed bool) {
	c.w.WriteByte('\n')
	c.s.CountCommand(failed)
}

// isNone reports whether a TTL or tags field says "none".
func isNone(b []byte) bool { return len(b) == 0 || (len(b) == 1 && b[0] == '-') }

// parseInt parses a signed decimal integer without allocating.
func parseInt(b []byte) (int64, bool) {
	neg := false
	if len(b) > 0 && (b[0] == '-' || b[0] == '+') {
		neg = b[0] == '-'
		b = b[1:]
	}
	if len(b) == 0 || len(b) > 19 {
		return 0, false
	}
	var n uint64
	for _, d := range b {
		if d < '0' || d > '9' {
			return 0, false
		}
		n = n*10 + uint64(d-'0')
	}
	switch {
	case neg && n <= 1<<63:
		return -int64(n), true
	case !neg && n < 1<<63:
		return int64(n), true
	}
	return 0, false
}

// str views b as a string without copying. The store copies every key,
// value and tag it keeps, so passing it views of the line buffer is safe.
func str(b []byte) string { return unsafe.String(unsafe.SliceData(b), len(b)) }
