package memcached

import (
	"bytes"
	"errors"
	"strconv"
	"strings"
	"unsafe"

	"github.com/tagcache/caddy-tagcache/auth"
	"github.com/tagcache/caddy-tagcache/listeners"
	"github.com/tagcache/caddy-tagcache/store"
)

// The memcached text protocol (doc/protocol.txt): the classic commands are
// here, the meta commands in meta.go, stats in stats.go, the tag extension
// in tags.go and the text authentication convention in auth.go.

// defaultMaxLine bounds a command line when the listener sets no limit. It
// leaves room for multi-key gets of a few thousand keys.
const defaultMaxLine = 64 << 10

var (
	errLineTooLong = errors.New("memcached: command line too long")
	// errQuit ends the connection after the quit command.
	errQuit = errors.New("memcached: quit")
	errHTTP = errors.New("memcached: HTTP request on a memcached listener")
)

// Replies shared by several commands.
const (
	replyError      = "ERROR\r\n"
	replyBadFormat  = "CLIENT_ERROR bad command line format\r\n"
	replyBadExptime = "CLIENT_ERROR invalid exptime argument\r\n"
	replyDenied     = "CLIENT_ERROR permission denied\r\n"
	replyTooLarge   = "SERVER_ERROR object too large for cache\r\n"
	replyBadChunk   = "CLIENT_ERROR bad data chunk\r\n"
	replyNonNumeric = "CLIENT_ERROR cannot increment or decrement non-numeric value\r\n"
)

// answerText reads one text command and answers it.
func (c *conn) answerText() error {
	line, err := c.readLine()
	if err != nil {
		if errors.Is(err, errLineTooLong) {
			c.w.WriteString("CLIENT_ERROR line too long\r\n")
		}
		return err
	}
	c.tokenize(line)
	c.noreply = false
	if !c.s.Authenticated() {
		err = c.textAuth()
	} else {
		err = c.textCommand()
	}
	c.release()
	return err
}

// maxLineLength is the longest command line accepted.
func (c *conn) maxLineLength() int {
	if max := c.s.Limits.MaxLineLength; max > 0 {
		return max
	}
	return defaultMaxLine
}

// readLine returns the next command line without its \r\n. It stays valid
// until the next readLine. A line longer than the limit is refused as soon
// as that much has arrived, newline or not. Before waiting for input it
// flushes the replies so far, so a client never waits for a reply the
// server holds back.
func (c *conn) readLine() ([]byte, error) {
	max := c.maxLineLength()
	c.line = c.line[:0]
	for {
		buf, _ := c.r.Peek(c.r.Buffered())
		if i := bytes.IndexByte(buf, '\n'); i >= 0 {
			c.line = append(c.line, buf[:i+1]...)
			c.r.Discard(i + 1)
			break
		}
		if len(c.line)+len(buf) > max+1 {
			return nil, errLineTooLong
		}
		if len(buf) == c.r.Size() {
			c.line = append(c.line, buf...)
			c.r.Discard(len(buf))
			continue
		}
		if err := c.await(len(buf) + 1); err != nil {
			return nil, err
		}
		if _, err := c.r.Peek(len(buf) + 1); err != nil {
			return nil, err
		}
	}
	line, n := listeners.FrameLine(c.line, max)
	if n < 0 {
		return nil, errLineTooLong
	}
	return line, nil
}

// tokenize splits line at spaces, as memcached does (a tab is part of a
// token, which makes it an invalid key).
func (c *conn) tokenize(line []byte) {
	c.toks = c.toks[:0]
	for tok, rest := cutToken(line); len(tok) > 0; tok, rest = cutToken(rest) {
		c.toks = append(c.toks, tok)
	}
}

// cutToken returns the first space-separated token of line (empty if
// there is none) and the rest of the line after it.
func cutToken(line []byte) (tok, rest []byte) {
	for len(line) > 0 && line[0] == ' ' {
		line = line[1:]
	}
	if i := bytes.IndexByte(line, ' '); i >= 0 {
		return line[:i], line[i+1:]
	}
	return line, nil
}

// reply writes s unless the command asked for noreply.
func (c *conn) reply(s string) {
	if strings.HasPrefix(s, "ERROR") || strings.HasPrefix(s, "CLIENT_ERROR") || strings.HasPrefix(s, "SERVER_ERROR") {
		c.failed = true
	}
	if !c.noreply {
		c.w.WriteString(s)
	}
}

// permit reports whether the client has the rights p, replying with an
// error if not.
func (c *conn) permit(p auth.Permission) bool {
	if c.s.Can(p) {
		return true
	}
	c.reply(replyDenied)
	return false
}

// setNoreply honours a trailing noreply token, as memcached does: only the
// last token of the line counts.
func (c *conn) setNoreply() {
	c.noreply = string(c.toks[len(c.toks)-1]) == "noreply"
}

// textCommand answers the command in c.toks.
func (c *conn) textCommand() error {
	t := c.toks
	if len(t) == 0 || len(t[0]) < 2 {
		c.reply(replyError)
		return nil
	}
	switch string(t[0]) {
	case "get", "gets", "gat", "gats":
		if len(t) < 2 {
			c.reply(replyError)
			return nil
		}
		c.retrieve(len(t[0]) == 4, t[0][1] == 'a')
	case "set":
		return c.storage(store.ModeSet, false)
	case "add":
		return c.storage(store.ModeAdd, false)
	case "replace":
		return c.storage(store.ModeReplace, false)
	case "append":
		return c.storage(store.ModeAppend, false)
	case "prepend":
		return c.storage(store.ModePrepend, false)
	case "cas":
		return c.storage(store.ModeSet, true)
	case "delete":
		c.delete()
	case "incr", "decr":
		c.arithmetic(t[0][0] == 'd')
	case "touch":
		c.touch()
	case "mg":
		c.metaGet()
	case "ms":
		return c.metaSet()
	case "md":
		c.metaDelete()
	case "ma":
		c.metaArithmetic()
	case "me":
		c.metaDebug()
	case "mn":
		c.w.WriteString("MN\r\n")
	case "flush_all":
		c.flushAll()
	case "version":
		c.w.WriteString("VERSION " + Version + "\r\n")
	case "verbosity":
		c.verbosity()
	case "stats":
		c.textStats()
	case "quit":
		return errQuit
	case "tag_keys":
		c.tagKeys()
	case "tag_invalidate":
		c.tagPurge(false)
	case "tag_stale":
		c.tagPurge(true)
	default:
		if bytes.HasPrefix(t[len(t)-1], []byte("HTTP/")) {
			return errHTTP // as memcached: an HTTP client on the wrong port
		}
		c.reply(replyError)
	}
	return nil
}

// retrieve answers get, gets, gat and gats.
func (c *conn) retrieve(withCAS, touch bool) {
	keys := c.toks[1:]
	var expires int64
	perm := auth.PermRead
	if touch {
		exptime, ok := parseInt32(keys[0])
		if !ok {
			c.reply(replyBadExptime)
			return
		}
		expires, keys, perm = c.expires(exptime), keys[1:], perm|auth.PermWrite
	}
	if !c.permit(perm) {
		return
	}
	for _, k := range keys {
		if !c.textKeyOK(k) {
			c.reply(replyBadFormat)
			return
		}
	}
	cnt := &c.m.shared.counters
	for _, k := range keys {
		var it store.Item
		var ok bool
		if touch {
			it, ok = c.st.GetAndTouch(alias(k), expires)
			cnt.cmdTouch.Add(1)
			cnt.touchHits.count(ok, &cnt.touchMisses)
		} else {
			it, ok = c.st.Get(alias(k))
			cnt.cmdGet.Add(1)
		}
		if ok {
			c.writeValue(k, it, withCAS)
		}
	}
	c.w.WriteString("END\r\n")
}

// writeValue writes one VALUE line and its data block. The value is the
// store's own, immutable buffer: it is written without a copy.
func (c *conn) writeValue(key []byte, it store.Item, withCAS bool) {
	c.w.WriteString("VALUE ")
	c.w.Write(key)
	b := c.room(64)
	b = append(b, ' ')
	b = strconv.AppendUint(b, uint64(it.Flags), 10)
	b = append(b, ' ')
	b = strconv.AppendInt(b, int64(len(it.Value)), 10)
	if withCAS {
		b = append(b, ' ')
		b = strconv.AppendUint(b, it.CAS, 10)
	}
	b = append(b, '\r', '\n')
	c.w.Write(b)
	c.w.Write(it.Value)
	c.w.WriteString("\r\n")
}

// room returns w's free buffer, empty, with room for n bytes to be
// appended and written back, flushing if needed.
func (c *conn) room(n int) []byte {
	if c.w.Available() < n {
		c.w.Flush()
	}
	return c.w.AvailableBuffer()
}

// writeUint writes n in decimal.
func (c *conn) writeUint(n uint64) {
	c.w.Write(strconv.AppendUint(c.room(20), n, 10))
}

// writeInt writes n in decimal.
func (c *conn) writeInt(n int64) {
	c.w.Write(strconv.AppendInt(c.room(20), n, 10))
}

// tagsPrefix starts the optional tags token of the classic storage
// commands: set <key> <flags> <exptime> <bytes> [tags=<t1,t2>] [noreply].
var tagsPrefix = []byte("tags=")

// storage answers set, add, replace, append, prepend and cas. Once the
// data block's length is known, every refusal swallows the block so that
// the connection stays in step.
func (c *conn) storage(mode store.Mode, withCAS bool) error {
	t := c.toks
	args := 5
	if withCAS {
		args = 6
	}
	if len(t) < args || len(t) > args+2 {
		c.reply(replyError)
		return nil
	}
	vlen, ok := parseInt32(t[4])
	if !ok || vlen < 0 {
		c.reply(replyBadFormat)
		return nil
	}
	n := int(vlen) + 2
	var tagList []byte
	hasTags := false
	for _, x := range t[args:] {
		switch {
		case string(x) == "noreply":
			c.noreply = true
		case bytes.HasPrefix(x, tagsPrefix):
			tagList, hasTags = x[len(tagsPrefix):], true
		case len(t) == args+2:
			return c.refuse(n, replyBadFormat)
		}
	}
	key := t[1]
	flags, okFlags := parseUint32(t[2])
	exptime, okExp := parseInt32(t[3])
	var cas uint64
	okCAS := true
	if withCAS {
		cas, okCAS = parseUint64(t[5])
	}
	if !c.textKeyOK(key) || !okFlags || !okExp || !okCAS {
		return c.refuse(n, replyBadFormat)
	}
	if !c.s.Can(auth.PermWrite) {
		return c.refuse(n, replyDenied)
	}
	c.m.shared.counters.cmdSet.Add(1)
	if int(vlen) > c.maxValueSize() {
		c.m.shared.counters.storeTooLarge.Add(1)
		if mode == store.ModeSet {
			// As memcached: a failed set must not leave the old value.
			c.st.Delete(alias(key))
		}
		return c.refuse(n, replyTooLarge)
	}
	var tags []string
	if hasTags {
		var err error
		if tags, err = c.parseTags(tagList, false); err != nil {
			return c.refuse(n, "CLIENT_ERROR "+err.Error()+"\r\n")
		}
	}
	data, err := c.readData(n)
	if err != nil {
		return err
	}
	if !chunkOK(data) {
		c.reply(replyBadChunk)
		return nil
	}
	if withCAS && cas == 0 {
		// No entry has CAS unique 0: memcached answers as for a mismatch.
		c.reply(c.casZero(key, "EXISTS\r\n", "NOT_FOUND\r\n"))
		return nil
	}
	p := store.Params{Flags: flags, Expires: c.expires(exptime), Tags: tags}
	_, _, err = c.st.Write(alias(key), data[:vlen], p, store.WriteOptions{Mode: mode, CAS: cas})
	if withCAS {
		c.m.shared.counters.countCAS(err)
	}
	c.reply(storageReply(err, mode, withCAS))
	return nil
}

// refuse swallows the n-byte data block of a refused storage command,
// then replies msg. As an event loop answers only whole commands, a
// refusal is answered once the whole command has come, so that a client
// that goes away in the middle of one gets the same answer either way.
func (c *conn) refuse(n int, msg string) error {
	if err := c.swallow(n); err != nil {
		return err
	}
	c.reply(msg)
	return nil
}

// chunkOK reports whether a data block ends with its \r\n.
func chunkOK(data []byte) bool {
	n := len(data)
	return data[n-2] == '\r' && data[n-1] == '\n'
}

// casZero answers a compare-and-swap with CAS unique 0, which no entry has:
// exists if key has a live entry, else missing.
func (c *conn) casZero(key []byte, exists, missing string) string {
	if _, ok := c.st.TagsOf(alias(key)); ok {
		c.m.shared.counters.casBadval.Add(1)
		return exists
	}
	c.m.shared.counters.casMisses.Add(1)
	return missing
}

// storageReply maps a store write result to memcached's reply.
func storageReply(err error, mode store.Mode, withCAS bool) string {
	switch {
	case err == nil:
		return "STORED\r\n"
	case errors.Is(err, store.ErrExists):
		return "NOT_STORED\r\n"
	case errors.Is(err, store.ErrNotFound):
		if withCAS {
			return "NOT_FOUND\r\n"
		}
		return "NOT_STORED\r\n"
	case errors.Is(err, store.ErrCASMismatch):
		return "EXISTS\r\n"
	case errors.Is(err, store.ErrValueTooLarge):
		if mode == store.ModeAppend || mode == store.ModePrepend {
			return "NOT_STORED\r\n" // memcached cannot allocate the joined item either
		}
		return "SERVER_ERROR out of memory storing object\r\n"
	}
	return writeError(err)
}

// writeError is the reply to a refused write that is not memcached's own
// case: a bad tag list.
func writeError(err error) string {
	var lim *store.LimitError
	if errors.As(err, &lim) || errors.Is(err, store.ErrEmptyTag) {
		return "CLIENT_ERROR " + err.Error() + "\r\n"
	}
	return "SERVER_ERROR " + err.Error() + "\r\n"
}

// delete answers delete <key> [0] [noreply].
func (c *conn) delete() {
	t := c.toks
	if len(t) < 2 || len(t) > 4 {
		c.reply(replyError)
		return
	}
	if len(t) > 2 {
		holdZero := string(t[2]) == "0"
		c.setNoreply()
		if !(len(t) == 3 && (holdZero || c.noreply)) && !(len(t) == 4 && holdZero && c.noreply) {
			c.reply("CLIENT_ERROR bad command line format.  Usage: delete <key> [noreply]\r\n")
			return
		}
	}
	if !c.textKeyOK(t[1]) {
		c.reply(replyBadFormat)
		return
	}
	if !c.permit(auth.PermWrite) {
		return
	}
	err := c.st.Delete(alias(t[1]))
	c.m.shared.counters.deleteHits.count(err == nil, &c.m.shared.counters.deleteMisses)
	if err != nil {
		c.reply("NOT_FOUND\r\n")
		return
	}
	c.reply("DELETED\r\n")
}

// keyCommand checks a "<command> <key> <argument> [noreply]" line,
// answering the error if it is malformed.
func (c *conn) keyCommand() bool {
	t := c.toks
	if len(t) != 3 && len(t) != 4 {
		c.reply(replyError)
		return false
	}
	c.setNoreply()
	if !c.textKeyOK(t[1]) {
		c.reply(replyBadFormat)
		return false
	}
	return true
}

// arithmetic answers incr and decr <key> <delta> [noreply].
func (c *conn) arithmetic(decr bool) {
	if !c.keyCommand() {
		return
	}
	t := c.toks
	delta, ok := parseUint64(t[2])
	if !ok {
		c.reply("CLIENT_ERROR invalid numeric delta argument\r\n")
		return
	}
	if !c.permit(auth.PermWrite) {
		return
	}
	r, err := c.st.Arith(alias(t[1]), store.ArithOptions{Delta: delta, Decr: decr})
	hits, misses := &c.m.shared.counters.incrHits, &c.m.shared.counters.incrMisses
	if decr {
		hits, misses = &c.m.shared.counters.decrHits, &c.m.shared.counters.decrMisses
	}
	hits.count(!errors.Is(err, store.ErrNotFound), misses)
	switch {
	case err == nil:
		if !c.noreply {
			c.writeUint(r.Value)
			c.w.WriteString("\r\n")
		}
	case errors.Is(err, store.ErrNotFound):
		c.reply("NOT_FOUND\r\n")
	case errors.Is(err, store.ErrNotNumeric):
		c.reply(replyNonNumeric)
	default:
		c.reply(writeError(err))
	}
}

// touch answers touch <key> <exptime> [noreply].
func (c *conn) touch() {
	if !c.keyCommand() {
		return
	}
	t := c.toks
	exptime, ok := parseInt32(t[2])
	if !ok {
		c.reply(replyBadExptime)
		return
	}
	if !c.permit(auth.PermWrite) {
		return
	}
	err := c.st.Touch(alias(t[1]), c.expires(exptime))
	c.m.shared.counters.cmdTouch.Add(1)
	c.m.shared.counters.touchHits.count(err == nil, &c.m.shared.counters.touchMisses)
	if err != nil {
		c.reply("NOT_FOUND\r\n")
		return
	}
	c.reply("TOUCHED\r\n")
}

// flushAll answers flush_all [delay] [noreply].
func (c *conn) flushAll() {
	t := c.toks
	if len(t) > 3 {
		c.reply(replyError)
		return
	}
	if len(t) > 1 {
		c.setNoreply()
	}
	c.m.shared.counters.cmdFlush.Add(1)
	if c.m.DisableFlush {
		c.reply("CLIENT_ERROR flush_all not allowed\r\n")
		return
	}
	var delay int64
	args := 1
	if c.noreply {
		args = 2
	}
	if len(t) != args {
		var ok bool
		if delay, ok = parseInt32(t[1]); !ok {
			c.reply(replyBadExptime)
			return
		}
	}
	if !c.permit(auth.PermAdmin) {
		return
	}
	c.st.Flush(c.flushDelay(delay))
	c.reply("OK\r\n")
}

// verbosity answers verbosity <level> [noreply]. Levels have no effect
// here (Caddy's logging is configured in Caddy) but are remembered for
// stats settings.
func (c *conn) verbosity() {
	t := c.toks
	if len(t) != 2 && len(t) != 3 {
		c.reply(replyError)
		return
	}
	c.setNoreply()
	level, ok := parseUint32(t[1])
	if !ok {
		c.reply(replyBadFormat)
		return
	}
	c.m.shared.verbosity.Store(level)
	c.reply("OK\r\n")
}

// textKeyOK reports whether k is a valid text protocol key: not empty, not
// longer than the limit, and one token.
func (c *conn) textKeyOK(k []byte) bool {
	return len(k) > 0 && len(k) <= c.maxKeyLength() && textToken(k)
}

// textToken reports whether b can be one text protocol token: it has no
// space or newline, which end a token, and no NUL, where memcached's
// parser ends the command. Other control characters are key bytes to
// memcached, and stock tools send them (memcaslap's keys start with
// 0x10 bytes), although protocol.txt asks clients not to.
func textToken[T ~string | ~[]byte](b T) bool {
	for i := range len(b) {
		if ch := b[i]; ch == ' ' || ch == '\n' || ch == 0 {
			return false
		}
	}
	return true
}

// alias views b as a string without copying. The store copies every key
// and tag it keeps, so views of the connection's buffers are safe to pass.
func alias(b []byte) string {
	return unsafe.String(unsafe.SliceData(b), len(b))
}

func parseUint32(b []byte) (uint32, bool) {
	n, err := strconv.ParseUint(alias(b), 10, 32)
	return uint32(n), err == nil
}

func parseUint64(b []byte) (uint64, bool) {
	n, err := strconv.ParseUint(alias(b), 10, 64)
	return n, err == nil
}

func parseInt32(b []byte) (int64, bool) {
	n, err := strconv.ParseInt(alias(b), 10, 32)
	return n, err == nil
}
