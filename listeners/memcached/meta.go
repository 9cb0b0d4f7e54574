package memcached

import (
	"encoding/base64"
	"errors"
	"net/url"

	"github.com/tagcache/caddy-tagcache/auth"
	"github.com/tagcache/caddy-tagcache/store"
)

// The meta commands mg, ms, md, ma, me and mn (doc/protocol.txt, "Meta
// Commands"). Their flags follow memcached 1.6; G on ms sets an entry's
// tags and g on mg returns them (the tag extension, see the README).

// maxOpaque is the longest opaque token (O flag, flag letter included).
const maxOpaque = 32

// metaFlags are the parsed flags of a meta command.
type metaFlags struct {
	// toks are the flag tokens in request order; replies echo the
	// requested ones in that order.
	toks [][]byte
	// key is the command's key, base64-decoded with the b flag.
	key []byte

	b, q, v, u, invalidate, clearValue bool
	// bAt is the index of the b flag; longOpaque records an O token over
	// maxOpaque.
	bAt        int
	longOpaque bool

	hasC, hasT, hasN, hasR, hasG bool
	cas, newCAS                  uint64 // C, E
	ttl, vivifyTTL, recacheTTL   int64  // T, N, R
	flags                        uint32 // F
	mode                         byte   // M
	delta, initial               uint64 // D, J
	tagList                      []byte // G
}

// maxMetaTokens bounds a meta command's tokens, command and key included,
// as memcached's MFLAG_MAX_OPT_LENGTH does.
const maxMetaTokens = 20

// parseMeta parses a meta command's key and flag tokens into f. It returns
// the error reply (without \r\n) if they are invalid; flagErr tells an
// error of memcached's flag pass (a bad flag, or with b a key that is not
// base64) from a bad key or opaque.
func (c *conn) parseMeta(key []byte, toks [][]byte, f *metaFlags) (msg string, flagErr bool) {
	if len(key) > c.maxKeyLength() {
		return "CLIENT_ERROR bad command line format", false
	}
	if len(c.toks) > maxMetaTokens {
		return "CLIENT_ERROR options flags are too long", true
	}
	msg, at, immediate := f.parse(toks)
	if immediate {
		return msg, true
	}
	var keyMsg string
	f.key, keyMsg = c.metaKey(key, f.b)
	switch {
	case keyMsg != "" && f.b && f.bAt > at:
		// memcached decodes the key at the b flag: the last error wins.
		return keyMsg, true
	case msg != "":
		return msg, true
	case keyMsg != "":
		return keyMsg, false
	case f.longOpaque:
		return "CLIENT_ERROR opaque token too long", false
	}
	return "", false
}

// parse parses the flag tokens into f. As memcached does, it stops at a
// duplicate or unknown flag (immediate), and otherwise goes on to the end,
// so that the error is the last bad flag argument's, at index at. A bad F
// gives memcached's default message unless another error follows: its at
// is -1, as when there is no error.
func (f *metaFlags) parse(toks [][]byte) (msg string, at int, immediate bool) {
	*f = metaFlags{toks: toks, delta: 1}
	at = -1
	var seen [2]uint64
	for i, tok := range toks {
		o, arg := tok[0], tok[1:]
		if o >= 127 || seen[o>>6]&(1<<(o&63)) != 0 {
			return "CLIENT_ERROR duplicate flag", -1, true
		}
		seen[o>>6] |= 1 << (o & 63)
		ok, bad := true, "CLIENT_ERROR bad token in command line format"
		switch o {
		case 'b':
			f.b, f.bAt = true, i
		case 'q':
			f.q = true
		case 'v':
			f.v = true
		case 'u':
			f.u = true
		case 'I':
			f.invalidate = true
		case 'x':
			f.clearValue = true
		case 'k', 's', 't', 'c', 'f', 'h', 'l', 'g', 'P', 'L':
			// Reply flags, or proxy hints memcached ignores.
		case 'O':
			// Checked once the flags are good, as memcached does.
			f.longOpaque = f.longOpaque || len(tok) > maxOpaque
		case 'N':
			f.hasN = true
			f.vivifyTTL, ok = parseInt32(arg)
		case 'T':
			f.hasT = true
			f.ttl, ok = parseInt32(arg)
		case 'R':
			f.hasR = true
			f.recacheTTL, ok = parseInt32(arg)
		case 'C':
			f.hasC = true
			f.cas, ok = parseUint64(arg)
		case 'E':
			f.newCAS, ok = parseUint64(arg)
		case 'F':
			var okFlags bool
			if f.flags, okFlags = parseUint32(arg); !okFlags && msg == "" {
				msg = "CLIENT_ERROR bad command line format"
			}
		case 'M':
			if ok = len(arg) == 1; ok {
				f.mode = arg[0]
			}
			bad = "CLIENT_ERROR incorrect length for M token"
		case 'J':
			f.initial, ok = parseUint64(arg)
			bad = "CLIENT_ERROR invalid numeric initial value"
		case 'D':
			f.delta, ok = parseUint64(arg)
			bad = "CLIENT_ERROR invalid numeric delta value"
		case 'G':
			f.hasG, f.tagList = true, arg
		default:
			return "CLIENT_ERROR invalid flag", -1, true
		}
		if !ok {
			msg, at = bad, i
		}
	}
	return msg, at, false
}

// metaKey validates a meta command's key, decoding it with b64.
func (c *conn) metaKey(key []byte, b64 bool) ([]byte, string) {
	if !b64 {
		if !c.textKeyOK(key) {
			return nil, "CLIENT_ERROR bad command line format"
		}
		return key, ""
	}
	// Padded, as memcached's decoder wants it.
	var err error
	c.keyBuf, err = base64.StdEncoding.AppendDecode(c.keyBuf[:0], key)
	if err != nil || len(c.keyBuf) == 0 {
		return nil, "CLIENT_ERROR error decoding key"
	}
	return c.keyBuf, ""
}

// parseCommand parses the key and flags of a meta command without a data
// block (mg, md, ma), answering the error if they are bad. md and ma give
// one error for any bad flag, as memcached does: genericFlagError.
func (c *conn) parseCommand(f *metaFlags, genericFlagError bool) bool {
	t := c.toks
	if len(t) < 2 {
		c.reply(replyError)
		return false
	}
	msg, flagErr := c.parseMeta(t[1], t[2:], f)
	switch {
	case msg == "":
		return true
	case flagErr && genericFlagError:
		msg = "CLIENT_ERROR invalid or duplicate flag"
	}
	c.metaError(msg)
	return false
}

// metaError writes a meta error reply; errors ignore the q flag.
func (c *conn) metaError(msg string) {
	c.failed = true
	c.w.WriteString(msg)
	c.w.WriteString("\r\n")
}

// writeKeyFlag writes the k flag of a reply: the key, base64-encoded and
// followed by the b flag if the command used b.
func (c *conn) writeKeyFlag(f *metaFlags) {
	c.w.WriteString(" k")
	if !f.b {
		c.w.Write(f.key)
		return
	}
	c.out = base64.StdEncoding.AppendEncode(c.out[:0], f.key)
	c.w.Write(c.out)
	c.w.WriteString(" b")
}

// writeEcho writes the O and k flags, which every meta reply echoes.
func (c *conn) writeEcho(f *metaFlags, tok []byte) {
	switch tok[0] {
	case 'O':
		c.w.WriteByte(' ')
		c.w.Write(tok)
	case 'k':
		c.writeKeyFlag(f)
	}
}

// writeStatus writes a reply line made of a status code and the echoed
// flags.
func (c *conn) writeStatus(code string, f *metaFlags) {
	c.w.WriteString(code)
	for _, tok := range f.toks {
		c.writeEcho(f, tok)
	}
	c.w.WriteString("\r\n")
}

// writeHit starts a successful reply: VA <size> if a value follows, else
// HD.
func (c *conn) writeHit(withValue bool, size int) {
	if !withValue {
		c.w.WriteString("HD")
		return
	}
	c.w.WriteString("VA ")
	c.writeInt(int64(size))
}

// writeFlag writes a flag letter and its numeric value.
func (c *conn) writeFlag(letter byte, n int64) {
	c.w.WriteByte(' ')
	c.w.WriteByte(letter)
	c.writeInt(n)
}

// metaGet answers mg <key> <flags>*.
func (c *conn) metaGet() {
	var f metaFlags
	if !c.parseCommand(&f, false) {
		return
	}
	perm := auth.PermRead
	if f.hasT || f.hasN {
		perm |= auth.PermWrite
	}
	if !c.permit(perm) {
		return
	}
	o := store.GetOptions{
		NoBump:        f.u,
		Touch:         f.hasT,
		Expires:       c.expires(f.ttl),
		Create:        f.hasN,
		CreateExpires: c.expires(f.vivifyTTL),
		NewCAS:        f.newCAS,
	}
	if f.hasR {
		o.RecacheBefore = c.expires(f.recacheTTL)
	}
	m, ok := c.st.GetMeta(alias(f.key), o)
	cnt := &c.m.shared.counters
	cnt.cmdMeta.Add(1)
	if f.hasT {
		cnt.cmdTouch.Add(1)
		cnt.touchHits.count(ok, &cnt.touchMisses)
	} else {
		cnt.cmdGet.Add(1)
	}
	if !ok {
		if !f.q {
			c.writeStatus("EN", &f)
		}
		return
	}
	value := f.v && !(f.hasC && f.cas == m.CAS)
	c.writeHit(value, len(m.Value))
	for _, tok := range f.toks {
		switch tok[0] {
		case 's':
			c.writeFlag('s', int64(len(m.Value)))
		case 't':
			c.writeFlag('t', c.ttl(m.Expires))
		case 'c':
			c.w.WriteString(" c")
			c.writeUint(m.CAS)
		case 'f':
			c.writeFlag('f', int64(m.Flags))
		case 'l':
			c.writeFlag('l', c.idle(m.LastAccess))
		case 'h':
			c.w.WriteString(pick(m.Fetched, " h1", " h0"))
		case 'g':
			c.w.WriteString(" g")
			c.writeTags(m.Tags, f.b)
		default:
			c.writeEcho(&f, tok)
		}
	}
	if m.TokenSent {
		c.w.WriteString(" Z")
	}
	if m.Stale {
		c.w.WriteString(" X")
	}
	if m.Won {
		c.w.WriteString(" W")
	}
	c.w.WriteString("\r\n")
	if value {
		c.w.Write(m.Value)
		c.w.WriteString("\r\n")
	}
}

// metaSet answers ms <key> <datalen> <flags>* and its data block.
func (c *conn) metaSet() error {
	t := c.toks
	if len(t) < 2 {
		c.reply(replyError)
		return nil
	}
	if len(t) < 3 {
		c.metaError("CLIENT_ERROR bad command line format")
		return nil
	}
	vlen, ok := parseInt32(t[2])
	if !ok || vlen < 0 {
		c.metaError("CLIENT_ERROR bad command line format")
		return nil
	}
	n := int(vlen) + 2
	var f metaFlags
	if msg, _ := c.parseMeta(t[1], t[3:], &f); msg != "" {
		if err := c.swallow(n); err != nil {
			return err
		}
		c.metaError(msg)
		return nil
	}
	var mode store.Mode
	switch f.mode {
	case 0, 'S':
		mode = store.ModeSet
	case 'E':
		mode = store.ModeAdd
	case 'A':
		mode = store.ModeAppend
	case 'P':
		mode = store.ModePrepend
	case 'R':
		mode = store.ModeReplace
	default:
		return c.refuse(n, "CLIENT_ERROR invalid mode for ms M token\r\n")
	}
	if !c.s.Can(auth.PermWrite) {
		return c.refuse(n, replyDenied)
	}
	cnt := &c.m.shared.counters
	cnt.cmdMeta.Add(1)
	cnt.cmdSet.Add(1)
	if int(vlen) > c.maxValueSize() {
		cnt.storeTooLarge.Add(1)
		if mode == store.ModeSet {
			c.st.Delete(alias(f.key))
		}
		return c.refuse(n, replyTooLarge)
	}
	var tags []string
	if f.hasG {
		var err error
		if tags, err = c.parseTags(f.tagList, f.b); err != nil {
			return c.refuse(n, "CLIENT_ERROR "+err.Error()+"\r\n")
		}
	}
	data, err := c.readData(n)
	if err != nil {
		return err
	}
	if !chunkOK(data) {
		c.w.WriteString(replyBadChunk)
		return nil
	}
	concat := mode == store.ModeAppend || mode == store.ModePrepend
	if f.hasC && f.cas == 0 && !concat && mode != store.ModeAdd {
		c.writeSetReply(c.casZero(f.key, "EX", "NF"), &f, 0, int(vlen))
		return nil
	}
	p := store.Params{Flags: f.flags, Expires: c.expires(f.ttl), Tags: tags}
	if concat && f.hasN {
		p.Expires = c.expires(f.vivifyTTL)
	}
	o := store.WriteOptions{Mode: mode, CAS: f.cas, Invalidate: f.invalidate, Create: concat && f.hasN, NewCAS: f.newCAS}
	cas, size, err := c.st.Write(alias(f.key), data[:vlen], p, o)
	if f.hasC {
		cnt.countCAS(err)
	}
	var code string
	switch {
	case err == nil:
		if f.q {
			return nil
		}
		code = "HD"
	case errors.Is(err, store.ErrExists):
		code = "NS"
	case errors.Is(err, store.ErrNotFound):
		code = "NS"
		if f.hasC && !concat {
			code = "NF"
		}
	case errors.Is(err, store.ErrCASMismatch):
		code = "EX"
	case errors.Is(err, store.ErrValueTooLarge) && concat:
		code = "NS"
	default:
		c.w.WriteString(storageReply(err, mode, false))
		return nil
	}
	if err != nil {
		size = int(vlen)
	}
	c.writeSetReply(code, &f, cas, size)
	return nil
}

// writeSetReply writes an ms reply with its O, k, c and s flags.
func (c *conn) writeSetReply(code string, f *metaFlags, cas uint64, size int) {
	c.w.WriteString(code)
	for _, tok := range f.toks {
		switch tok[0] {
		case 'c':
			c.w.WriteString(" c")
			c.writeUint(cas)
		case 's':
			c.writeFlag('s', int64(size))
		default:
			c.writeEcho(f, tok)
		}
	}
	c.w.WriteString("\r\n")
}

// metaDelete answers md <key> <flags>*.
func (c *conn) metaDelete() {
	var f metaFlags
	if !c.parseCommand(&f, true) {
		return
	}
	if !c.permit(auth.PermWrite) {
		return
	}
	c.m.shared.counters.cmdMeta.Add(1)
	var err error
	if f.hasC && f.cas == 0 {
		// No entry has CAS unique 0: a mismatch, as memcached answers.
		err = store.ErrNotFound
		if _, ok := c.st.TagsOf(alias(f.key)); ok {
			err = store.ErrCASMismatch
		}
	} else {
		err = c.st.DeleteMeta(alias(f.key), store.DeleteOptions{
			CAS:        f.cas,
			Invalidate: f.invalidate,
			ClearValue: f.clearValue,
			Flags:      f.flags,
			Touch:      f.hasT,
			Expires:    c.expires(f.ttl),
			NewCAS:     f.newCAS,
		})
	}
	c.m.shared.counters.deleteHits.count(err == nil, &c.m.shared.counters.deleteMisses)
	switch {
	case err == nil:
		if !f.q {
			c.writeStatus("HD", &f)
		}
	case errors.Is(err, store.ErrCASMismatch):
		c.writeStatus("EX", &f)
	default:
		c.writeStatus("NF", &f)
	}
}

// metaArithmetic answers ma <key> <flags>*.
func (c *conn) metaArithmetic() {
	var f metaFlags
	if !c.parseCommand(&f, true) {
		return
	}
	var decr bool
	switch f.mode {
	case 0, 'I', '+':
	case 'D', '-':
		decr = true
	default:
		c.metaError("CLIENT_ERROR invalid mode for ma M token")
		return
	}
	if !c.permit(auth.PermWrite) {
		return
	}
	r, err := c.st.Arith(alias(f.key), store.ArithOptions{
		Delta:         f.delta,
		Decr:          decr,
		CAS:           f.cas,
		Create:        f.hasN,
		Initial:       f.initial,
		CreateExpires: c.expires(f.vivifyTTL),
		Touch:         f.hasT,
		Expires:       c.expires(f.ttl),
		NewCAS:        f.newCAS,
	})
	cnt := &c.m.shared.counters
	cnt.cmdMeta.Add(1)
	hits, misses := &cnt.incrHits, &cnt.incrMisses
	if decr {
		hits, misses = &cnt.decrHits, &cnt.decrMisses
	}
	hits.count(!errors.Is(err, store.ErrNotFound), misses)
	switch {
	case errors.Is(err, store.ErrNotFound):
		c.writeStatus("NF", &f)
		return
	case errors.Is(err, store.ErrCASMismatch):
		c.writeStatus("EX", &f)
		return
	case errors.Is(err, store.ErrNotNumeric):
		c.w.WriteString(replyNonNumeric)
		return
	case err != nil:
		c.w.WriteString(writeError(err))
		return
	case f.q:
		return
	}
	c.writeHit(f.v, decimalLen(r.Value))
	for _, tok := range f.toks {
		switch tok[0] {
		case 'c':
			c.w.WriteString(" c")
			c.writeUint(r.CAS)
		case 't':
			c.writeFlag('t', c.ttl(r.Expires))
		default:
			c.writeEcho(&f, tok)
		}
	}
	c.w.WriteString("\r\n")
	if f.v {
		c.writeUint(r.Value)
		c.w.WriteString("\r\n")
	}
}

// metaDebug answers me <key> [b]: the entry's metadata, human readable.
func (c *conn) metaDebug() {
	t := c.toks
	if len(t) < 2 {
		c.metaError("CLIENT_ERROR bad command line format")
		return
	}
	f := metaFlags{b: len(t) > 2 && string(t[2]) == "b"}
	// memcached answers a bad key, base64 or not, with its generic error.
	var msg string
	if len(t[1]) <= c.maxKeyLength() {
		f.key, msg = c.metaKey(t[1], f.b)
	}
	if len(t[1]) > c.maxKeyLength() || msg != "" {
		c.metaError("CLIENT_ERROR bad command line format")
		return
	}
	if !c.permit(auth.PermRead) {
		return
	}
	c.m.shared.counters.cmdMeta.Add(1)
	m, ok := c.st.GetMeta(alias(f.key), store.GetOptions{NoBump: true})
	if !ok {
		c.w.WriteString("EN\r\n")
		return
	}
	c.w.WriteString("ME ")
	if f.b {
		c.out = base64.StdEncoding.AppendEncode(c.out[:0], f.key)
		c.w.Write(c.out)
	} else {
		c.w.Write(f.key)
	}
	c.w.WriteString(" exp=")
	c.writeInt(c.ttl(m.Expires))
	c.w.WriteString(" la=")
	c.writeInt(c.idle(m.LastAccess))
	c.w.WriteString(" cas=")
	c.writeUint(m.CAS)
	c.w.WriteString(pick(m.Fetched, " fetch=yes", " fetch=no"))
	c.w.WriteString(" cls=1 size=")
	c.writeInt(int64(len(f.key) + len(m.Value)))
	if len(m.Tags) > 0 {
		c.w.WriteString(" tags=")
		for i, tag := range m.Tags {
			if i > 0 {
				c.w.WriteByte(',')
			}
			c.w.WriteString(url.QueryEscape(tag))
		}
	}
	c.w.WriteString("\r\n")
}

// pick returns yes if cond, else no.
func pick(cond bool, yes, no string) string {
	if cond {
		return yes
	}
	return no
}

// decimalLen is the number of decimal digits of n.
func decimalLen(n uint64) int {
	d := 1
	for ; n >= 10; n /= 10 {
		d++
	}
	return d
}
