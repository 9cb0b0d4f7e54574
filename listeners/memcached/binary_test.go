package memcached

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

// binReq is a binary request for tests.
type binReq struct {
	op                 byte
	key, extras, value []byte
	cas                uint64
	opaque             uint32
}

func (q binReq) bytes() []byte {
	b := []byte{magicRequest, q.op}
	b = binary.BigEndian.AppendUint16(b, uint16(len(q.key)))
	b = append(b, byte(len(q.extras)), 0, 0, 0)
	b = binary.BigEndian.AppendUint32(b, uint32(len(q.extras)+len(q.key)+len(q.value)))
	b = binary.BigEndian.AppendUint32(b, q.opaque)
	b = binary.BigEndian.AppendUint64(b, q.cas)
	b = append(b, q.extras...)
	b = append(b, q.key...)
	return append(b, q.value...)
}

// dialBinary connects to the server for binary exchanges.
func (s *server) dialBinary(t testing.TB) (net.Conn, *bufio.Reader) {
	t.Helper()
	nc, err := net.Dial("tcp", s.addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	return nc, bufio.NewReader(nc)
}

// binResp is a binary response for tests.
type binResp struct {
	op                 byte
	status             uint16
	key, extras, value []byte
	cas                uint64
	opaque             uint32
}

func readResp(r io.Reader) (binResp, error) {
	var h [headerLen]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return binResp{}, err
	}
	if h[0] != magicResponse || h[5] != 0 {
		return binResp{}, fmt.Errorf("bad response header % x", h)
	}
	body := make([]byte, binary.BigEndian.Uint32(h[8:]))
	if _, err := io.ReadFull(r, body); err != nil {
		return binResp{}, err
	}
	keyLen, extLen := int(binary.BigEndian.Uint16(h[2:])), int(h[4])
	return binResp{
		op:     h[1],
		status: binary.BigEndian.Uint16(h[6:]),
		extras: body[:extLen],
		key:    body[extLen : extLen+keyLen],
		value:  body[extLen+keyLen:],
		opaque: binary.BigEndian.Uint32(h[12:]),
		cas:    binary.BigEndian.Uint64(h[16:]),
	}, nil
}

func (p binResp) String() string {
	cas := "cas0"
	if p.cas != 0 {
		cas = "cas"
	}
	return fmt.Sprintf("op%02x st%02x %s o%x x%q k%q v%q", p.op, p.status, cas, p.opaque, p.extras, p.key, p.value)
}

// u32, u64 and incr build extras.
func u32(n uint32) []byte { return binary.BigEndian.AppendUint32(nil, n) }
func setExtras(flags, exptime uint32) []byte {
	return append(u32(flags), u32(exptime)...)
}
func incrExtras(delta, initial uint64, exptime uint32) []byte {
	b := binary.BigEndian.AppendUint64(nil, delta)
	b = binary.BigEndian.AppendUint64(b, initial)
	return append(b, u32(exptime)...)
}

// endMark ends every exchange: its response marks the end of the answers.
// It is a Version request, which needs no authentication.
var endMark = binReq{op: opVersion, opaque: 0xfeedface}

// binExchange sends reqs and endMark, and returns the responses before
// endMark's, one per line; "<closed>" if the server closed the connection.
func binExchange(t testing.TB, nc net.Conn, r *bufio.Reader, reqs ...binReq) string {
	t.Helper()
	var out []byte
	for _, q := range append(reqs, endMark) {
		out = append(out, q.bytes()...)
	}
	if _, err := nc.Write(out); err != nil {
		return "<closed>"
	}
	var lines []string
	for {
		nc.SetReadDeadline(time.Now().Add(5 * time.Second))
		p, err := readResp(r)
		if err != nil {
			if err == io.EOF || strings.Contains(err.Error(), "reset") {
				return strings.Join(append(lines, "<closed>"), "\n")
			}
			t.Fatalf("reading a response: %v", err)
		}
		if p.op == endMark.op && p.opaque == endMark.opaque {
			return strings.Join(lines, "\n")
		}
		lines = append(lines, p.String())
	}
}

// binScripts are binary exchanges compared with memcached by
// TestCompareBinaryWithMemcached; each runs on a new connection after a
// flush. As in the text scripts, no counter shrinks (memcached pads it with
// spaces). Left out on purpose, where memcached (current code too) loses
// the request framing and we do not: an unknown opcode with a key or
// extras (memcached skips as many bytes again as they had); a Touch, GAT
// or Stat whose body is longer than its key and extras (memcached reads
// the rest as the next request; we answer Invalid arguments and close);
// a bad magic byte after other requests in the same read (memcached closes
// without sending their answers; we send them first).
var binScripts = [][]binReq{
	{
		{op: opGet, key: []byte("a"), opaque: 1},
		{op: opGetK, key: []byte("a"), opaque: 2},
		{op: opGetQ, key: []byte("a"), opaque: 3},
		{op: opGetKQ, key: []byte("a"), opaque: 4},
		{op: opSet, key: []byte("a"), extras: setExtras(7, 0), value: []byte("hello"), opaque: 5},
		{op: opGet, key: []byte("a"), opaque: 6},
		{op: opGetK, key: []byte("a"), opaque: 7},
		{op: opGetQ, key: []byte("a"), opaque: 8},
		{op: opGetKQ, key: []byte("a"), opaque: 9},
		{op: opSetQ, key: []byte("b"), extras: setExtras(0, 0), value: []byte("quiet")},
		{op: opGet, key: []byte("b")},
	},
	{
		{op: opAdd, key: []byte("a"), extras: setExtras(1, 0), value: []byte("1"), opaque: 1},
		{op: opAdd, key: []byte("a"), extras: setExtras(1, 0), value: []byte("2"), opaque: 2},
		{op: opAddQ, key: []byte("a"), extras: setExtras(1, 0), value: []byte("3"), opaque: 3},
		{op: opReplace, key: []byte("r"), extras: setExtras(1, 0), value: []byte("1"), opaque: 4},
		{op: opReplaceQ, key: []byte("r"), extras: setExtras(1, 0), value: []byte("1"), opaque: 5},
		{op: opReplace, key: []byte("a"), extras: setExtras(2, 0), value: []byte("r"), opaque: 6},
		{op: opSet, key: []byte("a"), extras: setExtras(2, 0), value: []byte("c"), cas: 1, opaque: 7},
		{op: opSet, key: []byte("nope"), extras: setExtras(2, 0), value: []byte("c"), cas: 1, opaque: 8},
		{op: opGet, key: []byte("a"), opaque: 9},
	},
	{
		{op: opDelete, key: []byte("d"), opaque: 1},
		{op: opDeleteQ, key: []byte("d"), opaque: 2},
		{op: opSet, key: []byte("d"), extras: setExtras(0, 0), value: []byte("x")},
		{op: opDelete, key: []byte("d"), cas: 3, opaque: 3},
		{op: opDeleteQ, key: []byte("d"), opaque: 4},
		{op: opGet, key: []byte("d"), opaque: 5},
	},
	{
		{op: opIncrement, key: []byte("n"), extras: incrExtras(1, 0, noCreate), opaque: 1},
		{op: opIncrement, key: []byte("n"), extras: incrExtras(1, 10, 0), opaque: 2},
		{op: opIncrement, key: []byte("n"), extras: incrExtras(5, 10, 0), opaque: 3},
		{op: opDecrement, key: []byte("n"), extras: incrExtras(3, 10, 0), opaque: 4},
		{op: opIncrementQ, key: []byte("n"), extras: incrExtras(1, 10, 0), opaque: 5},
		{op: opDecrementQ, key: []byte("m"), extras: incrExtras(1, 3, 0), opaque: 6},
		{op: opIncrement, key: []byte("n"), extras: incrExtras(1, 0, 0), cas: 1, opaque: 7},
		{op: opGet, key: []byte("n"), opaque: 8},
		{op: opGet, key: []byte("m"), opaque: 9},
		{op: opSet, key: []byte("s"), extras: setExtras(0, 0), value: []byte("str")},
		{op: opIncrement, key: []byte("s"), extras: incrExtras(1, 0, 0), opaque: 10},
		{op: opIncrementQ, key: []byte("x"), extras: incrExtras(1, 0, noCreate), opaque: 11},
	},
	{
		{op: opAppend, key: []byte("c"), value: []byte("x"), opaque: 1},
		{op: opPrependQ, key: []byte("c"), value: []byte("x"), opaque: 2},
		{op: opSet, key: []byte("c"), extras: setExtras(4, 0), value: []byte("mid")},
		{op: opAppend, key: []byte("c"), value: []byte(">"), opaque: 3},
		{op: opPrepend, key: []byte("c"), value: []byte("<"), opaque: 4},
		{op: opAppendQ, key: []byte("c"), value: []byte("]"), opaque: 5},
		{op: opPrependQ, key: []byte("c"), value: []byte("["), opaque: 6},
		{op: opAppend, key: []byte("c"), value: []byte("!"), cas: 1, opaque: 7},
		{op: opGet, key: []byte("c"), opaque: 8},
	},
	{
		{op: opTouch, key: []byte("t"), extras: u32(100), opaque: 1},
		{op: opGAT, key: []byte("t"), extras: u32(100), opaque: 2},
		{op: opGATQ, key: []byte("t"), extras: u32(100), opaque: 3},
		{op: opGATK, key: []byte("t"), extras: u32(100), opaque: 4},
		{op: opGATKQ, key: []byte("t"), extras: u32(100), opaque: 5},
		{op: opSet, key: []byte("t"), extras: setExtras(9, 0), value: []byte("v")},
		{op: opTouch, key: []byte("t"), extras: u32(100), opaque: 6},
		{op: opGAT, key: []byte("t"), extras: u32(100), opaque: 7},
		{op: opGATQ, key: []byte("t"), extras: u32(100), opaque: 8},
		{op: opGATK, key: []byte("t"), extras: u32(100), opaque: 9},
		{op: opGATKQ, key: []byte("t"), extras: u32(100), opaque: 10},
	},
	{
		{op: opSet, key: []byte("f"), extras: setExtras(0, 0), value: []byte("v")},
		{op: opFlush, opaque: 1},
		{op: opGet, key: []byte("f"), opaque: 2},
		{op: opSet, key: []byte("f"), extras: setExtras(0, 0), value: []byte("v")},
		{op: opFlushQ, extras: u32(0), opaque: 3},
		{op: opGet, key: []byte("f"), opaque: 4},
		{op: opNoop, opaque: 5},
	},
	{
		{op: 0x50, value: []byte("body"), opaque: 1},
		{op: opSASLList, opaque: 2},
		{op: opSASLAuth, key: []byte("PLAIN"), value: []byte("\x00u\x00p"), opaque: 3},
		{op: opSet, key: []byte(strings.Repeat("x", 10)), extras: setExtras(0, 0), value: make([]byte, 2<<20), opaque: 4},
		{op: opGet, key: []byte(strings.Repeat("x", 10)), opaque: 5},
	},
	{{op: opGet, key: []byte("k"), extras: u32(1), opaque: 1}, {op: opNoop}},
	{{op: opGet, key: []byte(strings.Repeat("k", 251)), opaque: 1}, {op: opNoop}},
	{{op: opQuitQ, opaque: 1}},
	{{op: opQuit, opaque: 1}},
}

// TestCompareBinaryWithMemcached runs binScripts against a real memcached
// and against this package, and wants the same responses (CAS uniques
// compared as zero or not).
func TestCompareBinaryWithMemcached(t *testing.T) {
	ref := startMemcached(t)
	srv := startServer(t, serverOptions{realClock: true})
	run := func(addr string, script []binReq) string {
		nc, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		r := bufio.NewReader(nc)
		binExchange(t, nc, r, binReq{op: opFlush})
		return binExchange(t, nc, r, script...)
	}
	for i, script := range binScripts {
		if want, got := run(ref, script), run(srv.addr, script); want != got {
			t.Errorf("script %d differs\nmemcached:\n%s\nours:\n%s", i, want, got)
		}
	}
}

func TestBinaryVersionAndStats(t *testing.T) {
	srv := startServer(t, serverOptions{})
	nc, r := srv.dialBinary(t)
	binExchange(t, nc, r, binReq{op: opSet, key: []byte("k"), extras: setExtras(0, 0), value: []byte("v")})
	got := binExchange(t, nc, r, binReq{op: opVersion, opaque: 1})
	if want := "op0b st00 cas0 o1 x\"\" k\"\" v\"" + Version + "\""; got != want {
		t.Fatalf("version: %s, want %s", got, want)
	}
	for group, name := range map[string]string{"": "curr_items", "settings": "item_size_max", "items": "items:1:number"} {
		lines := strings.Split(binExchange(t, nc, r, binReq{op: opStat, key: []byte(group), opaque: 2}), "\n")
		if last := lines[len(lines)-1]; last != `op10 st00 cas0 o2 x"" k"" v""` {
			t.Fatalf("stats %q end with %s", group, last)
		}
		found := false
		for _, l := range lines[:len(lines)-1] {
			found = found || strings.Contains(l, `k"`+name+`"`)
		}
		if !found {
			t.Fatalf("stats %q lack %s:\n%s", group, name, strings.Join(lines, "\n"))
		}
	}
	if got := binExchange(t, nc, r, binReq{op: opStat, key: []byte("nope"), opaque: 3}); got != `op10 st01 cas0 o3 x"" k"" v"Not found"` {
		t.Fatalf("unknown stats group: %s", got)
	}
	if got := binExchange(t, nc, r, binReq{op: opStat, key: []byte("items"), opaque: 4}); !strings.Contains(got, `k"items:1:number" v"1"`) {
		t.Fatalf("items: %s", got)
	}
}

// TestBinaryLargeValue stores and reads back a value larger than the
// connection's read buffer, pipelined with other requests.
func TestBinaryLargeValue(t *testing.T) {
	srv := startServer(t, serverOptions{bufferSize: 4096})
	nc, r := srv.dialBinary(t)
	big := bytes.Repeat([]byte("0123456789"), 50_000)
	got := binExchange(t, nc, r,
		binReq{op: opSetQ, key: []byte("big"), extras: setExtras(3, 0), value: big},
		binReq{op: opAppendQ, key: []byte("big"), value: []byte("!")},
		binReq{op: opGetK, key: []byte("big"), opaque: 9},
	)
	want := binResp{op: opGetK, extras: u32(3), key: []byte("big"), value: append(big, '!'), opaque: 9, cas: 1}
	if got != want.String() {
		t.Fatalf("got %.200s", got)
	}
	if v, _ := srv.st.Get("big"); !bytes.Equal(v.Value, want.value) {
		t.Fatal("stored value differs")
	}
}

// TestBinaryExpiry uses the harness's manual clock: relative and absolute
// expirations and Touch.
func TestBinaryExpiry(t *testing.T) {
	srv := startServer(t, serverOptions{})
	nc, r := srv.dialBinary(t)
	abs := uint32(srv.clock.UnixSeconds() + 100)
	binExchange(t, nc, r,
		binReq{op: opSetQ, key: []byte("rel"), extras: setExtras(0, 10), value: []byte("r")},
		binReq{op: opSetQ, key: []byte("abs"), extras: setExtras(0, abs), value: []byte("a")},
		binReq{op: opSetQ, key: []byte("past"), extras: setExtras(0, abs-1000), value: []byte("p")},
		binReq{op: opIncrementQ, key: []byte("ctr"), extras: incrExtras(1, 5, 20)},
	)
	if _, ok := srv.st.Get("past"); ok {
		t.Fatal("an absolute time in the past stored a live entry")
	}
	srv.clock.Advance(11)
	if got := binExchange(t, nc, r, binReq{op: opGet, key: []byte("rel")}); !strings.Contains(got, "st01") {
		t.Fatalf("rel after 11s: %s", got)
	}
	if got := binExchange(t, nc, r, binReq{op: opTouch, key: []byte("abs"), extras: u32(0)}); !strings.Contains(got, "st00") {
		t.Fatalf("touch: %s", got)
	}
	srv.clock.Advance(200)
	if _, ok := srv.st.Get("abs"); !ok {
		t.Fatal("touch 0 did not make the entry permanent")
	}
	if _, ok := srv.st.Get("ctr"); ok {
		t.Fatal("a counter created with a 20s expiry is still there")
	}
}

// TestBinaryBodyLimit: a request body over memcached's 1 GiB bound is
// refused with Invalid arguments and ends the connection, as memcached's
// current code does (1.6.18 tried to swallow it).
func TestBinaryBodyLimit(t *testing.T) {
	srv := startServer(t, serverOptions{})
	for _, op := range []byte{opSet, 0x50} {
		nc, r := srv.dialBinary(t)
		h := binReq{op: op, key: []byte("k"), extras: setExtras(0, 0), opaque: 1}.bytes()
		binary.BigEndian.PutUint32(h[8:], maxBodyLen+1)
		if _, err := nc.Write(h); err != nil {
			t.Fatal(err)
		}
		got := binExchange(t, nc, r)
		if want := fmt.Sprintf(`op%02x st04 cas0 o1 x"" k"" v"Invalid arguments"`, op) + "\n<closed>"; got != want {
			t.Errorf("op %02x: %s, want %s", op, got, want)
		}
	}
}
