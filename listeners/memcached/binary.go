package memcached

import (
	"encoding/binary"
	"errors"
	"io"

	"github.com/tagcache/caddy-tagcache/auth"
	"github.com/tagcache/caddy-tagcache/store"
)

// The memcached binary protocol (deprecated by memcached 1.6 but still
// spoken by many clients): 24-byte headers, every opcode with its quiet
// variant, and SASL PLAIN authentication.

const (
	magicRequest  = 0x80
	magicResponse = 0x81
	headerLen     = 24
	// maxBodyLen is memcached's bound on a request body (its
	// ITEM_SIZE_MAX_UPPER_LIMIT): a longer one ends the connection.
	maxBodyLen = 1 << 30
)

// Opcodes.
const (
	opGet        = 0x00
	opSet        = 0x01
	opAdd        = 0x02
	opReplace    = 0x03
	opDelete     = 0x04
	opIncrement  = 0x05
	opDecrement  = 0x06
	opQuit       = 0x07
	opFlush      = 0x08
	opGetQ       = 0x09
	opNoop       = 0x0a
	opVersion    = 0x0b
	opGetK       = 0x0c
	opGetKQ      = 0x0d
	opAppend     = 0x0e
	opPrepend    = 0x0f
	opStat       = 0x10
	opSetQ       = 0x11
	opAddQ       = 0x12
	opReplaceQ   = 0x13
	opDeleteQ    = 0x14
	opIncrementQ = 0x15
	opDecrementQ = 0x16
	opQuitQ      = 0x17
	opFlushQ     = 0x18
	opAppendQ    = 0x19
	opPrependQ   = 0x1a
	opTouch      = 0x1c
	opGAT        = 0x1d
	opGATQ       = 0x1e
	opSASLList   = 0x20
	opSASLAuth   = 0x21
	opSASLStep   = 0x22
	opGATK       = 0x23
	opGATKQ      = 0x24
)

// quietOps maps each quiet opcode to its plain one.
var quietOps = map[byte]byte{
	opGetQ: opGet, opGetKQ: opGetK, opSetQ: opSet, opAddQ: opAdd, opReplaceQ: opReplace,
	opDeleteQ: opDelete, opIncrementQ: opIncrement, opDecrementQ: opDecrement, opQuitQ: opQuit,
	opFlushQ: opFlush, opAppendQ: opAppend, opPrependQ: opPrepend, opGATQ: opGAT, opGATKQ: opGATK,
}

// Response statuses.
const (
	statusOK        = 0x00
	statusNotFound  = 0x01
	statusExists    = 0x02
	statusTooLarge  = 0x03
	statusInvalid   = 0x04
	statusNotStored = 0x05
	statusBadDelta  = 0x06
	statusAuthError = 0x20
	statusUnknown   = 0x81
	statusNoMemory  = 0x82
)

// statusText are memcached's error messages, sent as the body of an error
// response.
var statusText = map[uint16]string{
	statusNotFound:  "Not found",
	statusExists:    "Data exists for key.",
	statusTooLarge:  "Too large.",
	statusInvalid:   "Invalid arguments",
	statusNotStored: "Not stored.",
	statusBadDelta:  "Non-numeric server-side value for incr or decr",
	statusAuthError: "Auth failure.",
	statusUnknown:   "Unknown command",
	statusNoMemory:  "Out of memory",
}

var (
	errBadMagic = errors.New("memcached: binary request with a bad magic byte")
	// errProtocol ends a connection after a malformed binary request, as
	// memcached does.
	errProtocol = errors.New("memcached: malformed binary request")
)

// request is one binary request.
type request struct {
	opcode byte // as sent, quiet variants included
	op     byte // the plain opcode
	quiet  bool
	opaque uint32
	cas    uint64
	// extras and key view c.head; value is the body's rest, read by the
	// command that takes one.
	extras, key []byte
	valueLen    int
}

// answerBinary reads one binary request and answers it.
func (c *conn) answerBinary() error {
	q := &c.req
	err := c.readRequest(q)
	if err == nil {
		err = c.binaryCommand(q)
		c.release()
	}
	return err
}

// plainOpcode returns the plain opcode of opcode, and whether opcode is its
// quiet variant.
func plainOpcode(opcode byte) (op byte, quiet bool) {
	o := opcodes[opcode]
	return o.plain, o.quiet
}

// opcodes is quietOps as a table indexed by opcode, for the per-request
// lookup (FrameLength and the request's answer both make it).
var opcodes = func() (t [256]struct {
	plain byte
	quiet bool
}) {
	for op := range t {
		t[op].plain = byte(op)
	}
	for q, p := range quietOps {
		t[q].plain, t[q].quiet = p, true
	}
	return t
}()

// readRequest reads a request header, extras and key.
func (c *conn) readRequest(q *request) error {
	if err := c.await(headerLen); err != nil {
		return err
	}
	h, err := c.r.Peek(headerLen)
	if err != nil {
		return err
	}
	if h[0] != magicRequest {
		return errBadMagic
	}
	*q = request{
		opcode: h[1],
		opaque: binary.BigEndian.Uint32(h[12:]),
		cas:    binary.BigEndian.Uint64(h[16:]),
	}
	q.op, q.quiet = plainOpcode(q.opcode)
	keyLen, extLen := int(binary.BigEndian.Uint16(h[2:])), int(h[4])
	bodyLen := int(binary.BigEndian.Uint32(h[8:]))
	c.r.Discard(headerLen)
	if keyLen+extLen > bodyLen {
		c.binError(q, statusUnknown)
		return errProtocol
	}
	if bodyLen > maxBodyLen {
		c.binError(q, statusInvalid)
		return errProtocol
	}
	n := extLen + keyLen
	if err := c.await(n); err != nil {
		return err
	}
	if cap(c.head) < n {
		c.head = make([]byte, n)
	}
	c.head = c.head[:n]
	if _, err := io.ReadFull(c.r, c.head); err != nil {
		return err
	}
	q.extras, q.key, q.valueLen = c.head[:extLen], c.head[extLen:], bodyLen-n
	return nil
}

// binaryCommand answers one request.
func (c *conn) binaryCommand(q *request) error {
	if !c.binAllowed(q.op) {
		c.binError(q, statusAuthError)
		return errProtocol
	}
	if len(q.key) > c.maxKeyLength() {
		c.binError(q, statusInvalid)
		return errProtocol
	}
	switch known, valid := requestShape(q.op, len(q.extras), len(q.key), q.valueLen); {
	case !known:
		return c.binRefuse(q, statusUnknown, statusText[statusUnknown])
	case !valid:
		c.binError(q, statusInvalid)
		return errProtocol
	}
	switch q.op {
	case opGet, opGetK, opTouch, opGAT, opGATK:
		c.binGet(q)
	case opSet, opAdd, opReplace, opAppend, opPrepend:
		return c.binStore(q)
	case opDelete:
		c.binDelete(q)
	case opIncrement, opDecrement:
		c.binArithmetic(q)
	case opQuit:
		if !q.quiet {
			c.binHeader(q, statusOK, 0, 0, 0, 0)
		}
		return errQuit
	case opFlush:
		c.binFlush(q)
	case opNoop:
		c.binHeader(q, statusOK, 0, 0, 0, 0)
	case opVersion:
		c.binHeader(q, statusOK, 0, 0, len(Version), 0)
		c.w.WriteString(Version)
	case opStat:
		c.binStats(q)
	case opSASLList:
		c.binSASLList(q)
	case opSASLAuth, opSASLStep:
		return c.binSASLAuth(q)
	}
	return nil
}

// binAllowed reports whether the client may send plain opcode op: before
// it authenticates, only SASL and Version.
func (c *conn) binAllowed(op byte) bool {
	switch op {
	case opSASLList, opSASLAuth, opSASLStep, opVersion:
		return true
	}
	return c.s.Authenticated()
}

// requestShape reports whether plain opcode op is known and, if so,
// whether a request with ext bytes of extras, a key of key bytes and a
// value of value bytes is well formed for it.
func requestShape(op byte, ext, key, value int) (known, valid bool) {
	switch op {
	case opGet, opGetK, opDelete:
		return true, ext == 0 && key > 0 && value == 0
	case opTouch, opGAT, opGATK:
		return true, ext == 4 && key > 0 && value == 0
	case opSet, opAdd, opReplace:
		return true, ext == 8 && key > 0
	case opAppend, opPrepend, opSASLAuth, opSASLStep:
		return true, ext == 0 && key > 0
	case opIncrement, opDecrement:
		return true, ext == 20 && key > 0 && value == 0
	case opQuit, opNoop, opVersion, opSASLList:
		return true, ext == 0 && key == 0 && value == 0
	case opFlush:
		return true, (ext == 0 || ext == 4) && key == 0 && value == 0
	case opStat:
		return true, ext == 0 && value == 0
	}
	return false, false
}

// binHeader writes a response header.
func (c *conn) binHeader(q *request, status uint16, extLen, keyLen, bodyLen int, cas uint64) {
	b := c.room(headerLen)
	b = append(b, magicResponse, q.opcode, byte(keyLen>>8), byte(keyLen), byte(extLen), 0, byte(status>>8), byte(status))
	b = binary.BigEndian.AppendUint32(b, uint32(bodyLen))
	b = binary.BigEndian.AppendUint32(b, q.opaque)
	b = binary.BigEndian.AppendUint64(b, cas)
	c.w.Write(b)
}

// binError writes an error response with memcached's message for status.
func (c *conn) binError(q *request, status uint16) {
	c.binMessage(q, status, statusText[status])
}

// binMessage writes a response whose body is msg.
func (c *conn) binMessage(q *request, status uint16, msg string) {
	// A miss, an existing key and a refused add/replace are answers, not
	// errors.
	switch status {
	case statusOK, statusNotFound, statusExists, statusNotStored:
	default:
		c.failed = true
	}
	c.binHeader(q, status, 0, 0, len(msg), 0)
	c.w.WriteString(msg)
}

// binPermit reports whether the client has the rights p, answering with
// an auth error if not.
func (c *conn) binPermit(q *request, p auth.Permission) bool {
	if c.s.Can(p) {
		return true
	}
	c.binMessage(q, statusAuthError, msgDenied)
	return false
}

// msgDenied is the message of an auth error for a client without the
// rights.
const msgDenied = "Permission denied"

// binRefuse swallows the value of a refused request, then answers it with
// status and msg, as refuse does for text commands.
func (c *conn) binRefuse(q *request, status uint16, msg string) error {
	if err := c.swallow(q.valueLen); err != nil {
		return err
	}
	c.binMessage(q, status, msg)
	return nil
}

// binGet answers Get, GetK, Touch, GAT, GATK and their quiet variants.
func (c *conn) binGet(q *request) {
	touch := q.op == opTouch || q.op == opGAT || q.op == opGATK
	perm := auth.PermRead
	if touch {
		perm |= auth.PermWrite
	}
	if !c.binPermit(q, perm) {
		return
	}
	var it store.Item
	var ok bool
	cnt := &c.m.shared.counters
	if touch {
		exptime := int64(binary.BigEndian.Uint32(q.extras))
		it, ok = c.st.GetAndTouch(alias(q.key), c.expires(exptime))
		cnt.cmdTouch.Add(1)
		cnt.touchHits.count(ok, &cnt.touchMisses)
	} else {
		it, ok = c.st.Get(alias(q.key))
		cnt.cmdGet.Add(1)
	}
	withKey := q.op == opGetK || q.op == opGATK
	if !ok {
		switch {
		case q.quiet:
		case withKey:
			c.binHeader(q, statusNotFound, 0, len(q.key), len(q.key), 0)
			c.w.Write(q.key)
		default:
			c.binError(q, statusNotFound)
		}
		return
	}
	keyLen, value := 0, it.Value
	if withKey {
		keyLen = len(q.key)
	}
	if q.op == opTouch {
		value = nil
	}
	c.binHeader(q, statusOK, 4, keyLen, 4+keyLen+len(value), it.CAS)
	c.w.Write(binary.BigEndian.AppendUint32(c.room(4), it.Flags))
	if withKey {
		c.w.Write(q.key)
	}
	c.w.Write(value)
}

// binStore answers Set, Add, Replace, Append, Prepend and their quiet
// variants. A request CAS makes the write conditional.
func (c *conn) binStore(q *request) error {
	n := q.valueLen
	if !c.s.Can(auth.PermWrite) {
		return c.binRefuse(q, statusAuthError, msgDenied)
	}
	var mode store.Mode
	switch q.op {
	case opSet:
		mode = store.ModeSet
	case opAdd:
		mode = store.ModeAdd
	case opReplace:
		mode = store.ModeReplace
	case opAppend:
		mode = store.ModeAppend
	case opPrepend:
		mode = store.ModePrepend
	}
	concat := mode == store.ModeAppend || mode == store.ModePrepend
	if q.cas != 0 && !concat {
		mode = store.ModeSet // memcached turns any store with a CAS into a cas
	}
	cnt := &c.m.shared.counters
	cnt.cmdSet.Add(1)
	if n > c.maxValueSize() {
		cnt.storeTooLarge.Add(1)
		if q.op == opSet {
			c.st.Delete(alias(q.key))
		}
		return c.binRefuse(q, statusTooLarge, statusText[statusTooLarge])
	}
	var p store.Params
	if !concat {
		p.Flags = binary.BigEndian.Uint32(q.extras)
		p.Expires = c.expires(int64(binary.BigEndian.Uint32(q.extras[4:])))
	}
	value, err := c.readData(n)
	if err != nil {
		return err
	}
	cas, _, err := c.st.Write(alias(q.key), value, p, store.WriteOptions{Mode: mode, CAS: q.cas})
	if q.cas != 0 {
		cnt.countCAS(err)
	}
	switch {
	case err == nil:
		if !q.quiet {
			c.binHeader(q, statusOK, 0, 0, 0, cas)
		}
	case errors.Is(err, store.ErrExists), errors.Is(err, store.ErrCASMismatch):
		c.binError(q, statusExists)
	case errors.Is(err, store.ErrNotFound):
		c.binError(q, pick16(concat, statusNotStored, statusNotFound))
	case errors.Is(err, store.ErrValueTooLarge):
		c.binError(q, pick16(concat, statusNotStored, statusNoMemory))
	default:
		c.binMessage(q, statusInvalid, err.Error())
	}
	return nil
}

// pick16 returns yes if cond, else no.
func pick16(cond bool, yes, no uint16) uint16 {
	if cond {
		return yes
	}
	return no
}

// binDelete answers Delete and DeleteQ; a request CAS must match.
func (c *conn) binDelete(q *request) {
	if !c.binPermit(q, auth.PermWrite) {
		return
	}
	err := c.st.DeleteMeta(alias(q.key), store.DeleteOptions{CAS: q.cas})
	c.m.shared.counters.deleteHits.count(err == nil, &c.m.shared.counters.deleteMisses)
	switch {
	case err == nil:
		if !q.quiet {
			c.binHeader(q, statusOK, 0, 0, 0, 0)
		}
	case errors.Is(err, store.ErrCASMismatch):
		c.binError(q, statusExists)
	default:
		c.binError(q, statusNotFound)
	}
}

// noCreate in an Increment's expiration field means a missing counter is
// not created.
const noCreate = 0xffffffff

// binArithmetic answers Increment, Decrement and their quiet variants: a
// missing counter is created with the initial value unless the expiration
// is 0xffffffff.
func (c *conn) binArithmetic(q *request) {
	if !c.binPermit(q, auth.PermWrite) {
		return
	}
	decr := q.op == opDecrement
	exptime := binary.BigEndian.Uint32(q.extras[16:])
	r, err := c.st.Arith(alias(q.key), store.ArithOptions{
		Delta:         binary.BigEndian.Uint64(q.extras),
		Decr:          decr,
		CAS:           q.cas,
		Create:        exptime != noCreate,
		Initial:       binary.BigEndian.Uint64(q.extras[8:]),
		CreateExpires: c.expires(int64(exptime)),
	})
	cnt := &c.m.shared.counters
	hits, misses := &cnt.incrHits, &cnt.incrMisses
	if decr {
		hits, misses = &cnt.decrHits, &cnt.decrMisses
	}
	hits.count(!errors.Is(err, store.ErrNotFound), misses)
	switch {
	case err == nil:
		if !q.quiet {
			c.binHeader(q, statusOK, 0, 0, 8, r.CAS)
			c.w.Write(binary.BigEndian.AppendUint64(c.room(8), r.Value))
		}
	case errors.Is(err, store.ErrNotFound):
		c.binError(q, statusNotFound)
	case errors.Is(err, store.ErrCASMismatch):
		c.binError(q, statusExists)
	case errors.Is(err, store.ErrNotNumeric):
		c.binError(q, statusBadDelta)
	default:
		c.binMessage(q, statusInvalid, err.Error())
	}
}

// binFlush answers Flush and FlushQ, with an optional delay in the extras.
func (c *conn) binFlush(q *request) {
	c.m.shared.counters.cmdFlush.Add(1)
	if c.m.DisableFlush {
		c.binError(q, statusAuthError) // as memcached -F answers
		return
	}
	if !c.binPermit(q, auth.PermAdmin) {
		return
	}
	var delay int64
	if len(q.extras) == 4 {
		delay = int64(binary.BigEndian.Uint32(q.extras))
	}
	c.st.Flush(c.flushDelay(delay))
	if !q.quiet {
		c.binHeader(q, statusOK, 0, 0, 0, 0)
	}
}

// binStats answers Stat: one response per statistic, then an empty one.
// The key names the group, as the text command's argument.
func (c *conn) binStats(q *request) {
	if !c.binPermit(q, auth.PermRead) {
		return
	}
	stats, ok := c.statsGroup(string(q.key))
	if !ok {
		c.binError(q, statusNotFound)
		return
	}
	for _, s := range stats {
		c.binHeader(q, statusOK, 0, len(s.name), len(s.name)+len(s.value), 0)
		c.w.WriteString(s.name)
		c.w.WriteString(s.value)
	}
	c.binHeader(q, statusOK, 0, 0, 0, 0)
}

// saslMechanisms are the SASL mechanisms offered.
const saslMechanisms = "PLAIN"

// binSASLList answers SASL List Mechs. Without auth, memcached has no SASL
// and does not know the command. As in memcached, every SASL command
// starts a new authentication: the client is logged out.
func (c *conn) binSASLList(q *request) {
	if !c.s.AuthRequired() {
		c.binError(q, statusUnknown)
		return
	}
	c.s.Deauthenticate()
	c.binHeader(q, statusOK, 0, 0, len(saslMechanisms), 0)
	c.w.WriteString(saslMechanisms)
}

// maxSASLMechLen is memcached's bound on a SASL mechanism name.
const maxSASLMechLen = 32

// binSASLAuth answers SASL Auth with the PLAIN mechanism. PLAIN has no
// second step, so SASL Step always fails. Either logs the client out
// first, even when it fails, as memcached does.
func (c *conn) binSASLAuth(q *request) error {
	n := q.valueLen
	switch {
	case !c.s.AuthRequired():
		return c.binRefuse(q, statusUnknown, statusText[statusUnknown])
	case len(q.key) > maxSASLMechLen:
		return c.binRefuse(q, statusInvalid, statusText[statusInvalid])
	}
	c.s.Deauthenticate()
	if q.op == opSASLStep || string(q.key) != saslMechanisms || n > maxAuthPayload {
		c.m.shared.counters.authErrors.Add(1)
		return c.binRefuse(q, statusAuthError, statusText[statusAuthError])
	}
	msg, err := c.readData(n)
	if err != nil {
		return err
	}
	c.m.shared.counters.authCmds.Add(1)
	username, password, ok := saslPlain(msg)
	if !ok || c.s.Authenticate(username, password) != nil {
		c.m.shared.counters.authErrors.Add(1)
		c.binError(q, statusAuthError)
		return nil
	}
	c.binMessage(q, statusOK, "Authenticated")
	return nil
}
