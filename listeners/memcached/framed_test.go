package memcached

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"regexp"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/caddyserver/caddy/v2"

	"github.com/tagcache/caddy-tagcache/auth"
	"github.com/tagcache/caddy-tagcache/internal/testutil"
	"github.com/tagcache/caddy-tagcache/listeners"
	"github.com/tagcache/caddy-tagcache/listeners/framedtest"
	"github.com/tagcache/caddy-tagcache/store"
)

// The event loop's way of answering a connection (FrameLength and
// ServeCommand, handing over to Serve where it must) has to write the same
// bytes and leave the same store as Serve answering the whole input.

// framedCase is one client's input, and how its listener is set up.
type framedCase struct {
	name    string
	input   []byte
	auth    bool
	binding string
}

// Settings of the equivalence runs: values up to half again the 8 KiB read
// buffer are accepted, so that some fit it and some do not.
const (
	framedMaxItem = 12 << 10
	framedMaxLine = 2048
)

// framedChunks are how many bytes of input the driven runs release at a
// time (0: all at once), and framedReaders the sizes of their readers: the
// listener's, and one small enough that many commands are handed to Serve.
var (
	framedChunks  = []int{1, 7, 64, 4096, 0}
	framedReaders = []int{8192, 256}
)

// framedResult is what a run leaves behind.
type framedResult struct {
	out  string // normalized, see normalizeOutput
	err  string
	dump string // the store's entries and counts
}

// framedClient numbers the runs: each is a different client address, so
// that failed logins of one run do not count against another in the login
// rate limit, which the whole process shares.
var framedClient atomic.Uint32

// clientConn is a connection with nothing but addresses.
type clientConn struct {
	net.Conn
	remote net.Addr
}

func (clientConn) LocalAddr() net.Addr    { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 11211} }
func (c clientConn) RemoteAddr() net.Addr { return c.remote }

// newFramedSession returns a fresh store and protocol, and a session over
// them that reads r with a reader of rsize bytes and writes to out.
func newFramedSession(t testing.TB, c framedCase, users *auth.Users, r io.Reader, rsize int, out io.Writer) (*Memcached, *listeners.Session, *store.Store) {
	t.Helper()
	st, err := store.New(store.Config{
		Shards:        1, // so that CAS uniques do not depend on the store's hash seed
		MaxMemory:     64 << 20,
		MaxItemSize:   framedMaxItem,
		SweepInterval: -1,
		Now:           func() int64 { return 1_700_000_000_000 },
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	m := &Memcached{Binding: c.binding}
	if err := m.Provision(caddy.Context{}); err != nil {
		t.Fatal(err)
	}
	n := framedClient.Add(1)
	conn := clientConn{remote: &net.TCPAddr{IP: net.IPv4(10, byte(n>>16), byte(n>>8), byte(n)), Port: 40000}}
	s := listeners.NewSession(conn, bufio.NewReaderSize(r, rsize), bufio.NewWriterSize(out, 8192), st, testutil.NewApp(st, users), c.auth)
	s.Limits = listeners.Limits{MaxLineLength: framedMaxLine}
	return m, s, st
}

// serveWhole answers the whole input with Serve.
func serveWhole(t testing.TB, c framedCase, users *auth.Users) framedResult {
	t.Helper()
	var out bytes.Buffer
	m, s, st := newFramedSession(t, c, users, bytes.NewReader(c.input), 8192, &out)
	err := m.Serve(s)
	return framedResult{normalizeOutput(out.Bytes()), fmt.Sprint(err), dumpStore(st)}
}

// serveDriven answers the input as an event loop does, chunk bytes at a
// time, with a reader of rsize bytes.
func serveDriven(t testing.TB, c framedCase, users *auth.Users, chunk, rsize int) framedResult {
	t.Helper()
	var out bytes.Buffer
	feed := framedtest.NewFeed(c.input)
	m, s, st := newFramedSession(t, c, users, feed, rsize, &out)
	fc := m.NewFramedConn(s)
	err := framedtest.Drive(t, fc, s, feed, chunk)
	fc.Close()
	// ServeCommand ends a quit with io.EOF, where Serve returns nil.
	return framedResult{normalizeOutput(out.Bytes()), fmt.Sprint(endOfInput(err)), dumpStore(st)}
}

// checkFramed compares every driven run of c with Serve's.
func checkFramed(t *testing.T, c framedCase, users *auth.Users) {
	t.Helper()
	want := serveWhole(t, c, users)
	for _, rsize := range framedReaders {
		for _, chunk := range framedChunks {
			if chunk == 0 {
				chunk = max(len(c.input), 1)
			}
			got := serveDriven(t, c, users, chunk, rsize)
			if got != want {
				t.Fatalf("%s (auth %v, binding %q), %d-byte chunks, %d-byte reader:\ninput %.500q\n%s",
					c.name, c.auth, c.binding, chunk, rsize, c.input, diffResults(got, want))
			}
		}
	}
}

// diffResults describes how got differs from want.
func diffResults(got, want framedResult) string {
	var b strings.Builder
	if got.out != want.out {
		i := 0
		for i < len(got.out) && i < len(want.out) && got.out[i] == want.out[i] {
			i++
		}
		fmt.Fprintf(&b, "output differs at byte %d:\n driven %.300q\n  Serve %.300q\n", i, got.out[i:], want.out[i:])
	}
	if got.err != want.err {
		fmt.Fprintf(&b, "error: driven %s, Serve %s\n", got.err, want.err)
	}
	if got.dump != want.dump {
		fmt.Fprintf(&b, "store:\n driven %.1000s\n  Serve %.1000s\n", got.dump, want.dump)
	}
	return b.String()
}

var (
	// volatileStat matches the text stats that change between runs.
	volatileStat = regexp.MustCompile(`STAT (uptime|time|rusage_user|rusage_system) [^\r\n]*\r\n`)
	// keyLine matches tag_keys's lines, which come in map order.
	keyLine = regexp.MustCompile(`KEY [^\r\n]*\r\n`)
)

// normalizeOutput masks what differs between two runs of the same input:
// the clock and CPU stats and the order of tag_keys's keys. Binary output
// is listed one response a line.
func normalizeOutput(out []byte) string {
	if len(out) == 0 || out[0] != magicResponse {
		out = volatileStat.ReplaceAll(out, []byte("STAT $1 <volatile>\r\n"))
		return string(keyLine.ReplaceAll(out, []byte("KEY <key>\r\n")))
	}
	var b strings.Builder
	r := bytes.NewReader(out)
	for r.Len() > 0 {
		p, err := readResp(r)
		if err != nil {
			fmt.Fprintf(&b, "unreadable: %q", out[len(out)-r.Len():])
			break
		}
		if p.op == opStat {
			switch string(p.key) {
			case "uptime", "time", "rusage_user", "rusage_system":
				p.value = []byte("<volatile>")
			}
		}
		fmt.Fprintf(&b, "op%02x st%02x cas%d o%x x%q k%q v%q\n", p.op, p.status, p.cas, p.opaque, p.extras, p.key, p.value)
	}
	return b.String()
}

// dumpStore lists the store's entries, in key order, and its counts.
func dumpStore(st *store.Store) string {
	var keys []string
	for cursor := uint64(0); ; {
		var batch []string
		batch, cursor = st.Scan(cursor, 100, nil)
		keys = append(keys, batch...)
		if cursor == 0 {
			break
		}
	}
	slices.Sort(keys)
	var b strings.Builder
	for _, k := range keys {
		m, ok := st.GetMeta(k, store.GetOptions{NoBump: true})
		if !ok {
			continue
		}
		fmt.Fprintf(&b, "%q=%q f%d c%d e%d t%q s%v h%v la%d w%v z%v\n", k, m.Value, m.Flags, m.CAS, m.Expires, m.Tags,
			m.Stale, m.Fetched, m.LastAccess, m.Won, m.TokenSent)
	}
	s := st.Stats()
	fmt.Fprintf(&b, "items %d bytes %d hits %d misses %d sets %d tags %d", s.Items, s.Bytes, s.Hits, s.Misses, s.Sets, s.Tags)
	return b.String()
}

// binInput is the bytes of a binary script.
func binInput(script ...binReq) []byte {
	var b []byte
	for _, q := range script {
		b = append(b, q.bytes()...)
	}
	return b
}

// value is n bytes of value, not all the same.
func value(n int) string {
	b := make([]byte, n)
	for i := range b {
		b[i] = 'a' + byte(i%26)
	}
	return string(b)
}

// framedCases are the sessions TestFramedEquivalence runs and
// FuzzFramed starts from.
func framedCases() []framedCase {
	var cases []framedCase
	text := func(name string, auth bool, parts ...string) {
		cases = append(cases, framedCase{name: name, input: []byte(strings.Join(parts, "")), auth: auth})
	}
	for i, s := range textSeeds {
		text(fmt.Sprint("text seed ", i), false, s)
	}
	for i, s := range metaSeeds {
		text(fmt.Sprint("meta seed ", i), false, s)
	}
	for i, script := range compareScripts {
		text(fmt.Sprint("compare script ", i), false, script...)
	}
	text("storage and noreply", false,
		"set a 1 2 3\r\nabc\r\nadd a 0 0 1 noreply\r\nx\r\nadd b 0 0 1 noreply\r\ny\r\n",
		"replace a 5 0 2 noreply\r\nzz\r\nappend a 0 0 1\r\n>\r\nprepend a 0 0 1 noreply\r\n<\r\n",
		"cas a 0 0 1 4\r\nq\r\ncas a 0 0 1 6 noreply\r\nr\r\ncas a 0 0 1 99\r\ns\r\n",
		"set n 0 0 2 noreply\r\n41\r\nincr n 1 noreply\r\ndecr n 2\r\ntouch n 10 noreply\r\n",
		"delete a noreply\r\ndelete a\r\nflush_all 100 noreply\r\nverbosity 2 noreply\r\n",
		"gets a b n\r\ngat 100 b n\r\ngats 0 n\r\nmn\r\n")
	text("multi-get", false,
		"set k1 0 0 1\r\n1\r\nset k300 0 0 3\r\n300\r\n",
		"get "+strings.Repeat("k1 ", 300)+"k300\r\n",
		"gets"+strings.Repeat(" k300", 400)+"\r\n", // longer than framedMaxLine
		"get k1\r\n")
	var large []string
	for _, n := range []int{8100, 8170, 8171, 8172, 8190, 8192, 9000, framedMaxItem, framedMaxItem + 1, 20000} {
		large = append(large,
			fmt.Sprintf("set v%d 0 0 %d\r\n%s\r\n", n, n, value(n)),
			fmt.Sprintf("ms m%d %d T0 c\r\n%s\r\n", n, n, value(n)),
			fmt.Sprintf("get v%d\r\nmg m%d v s\r\n", n, n))
	}
	text("large values", false, large...)
	text("errors", false,
		"\r\n\n  \r\nfoo bar\r\nset\r\nset a 0 0\r\nset a 0 0 abc\r\nx\r\nset a 0 0 -1\r\n",
		"set a 0 0 1 2 3 4\r\nx\r\ncas a 0 0 1\r\nx\r\nset a 0 0 1 bogus noreply\r\nx\r\n",
		"set bad\x01key 0 0 3\r\nabc\r\nset k x 0 3\r\nabc\r\nset k 0 0 3 tags=,\r\nabc\r\n",
		"set k 0 0 3\r\nabcdef\r\nget k\r\nms k 3 Mz\r\nabc\r\nms k 3 !\r\nabc\r\nms k 99999999999\r\n",
		"ms\r\nms k\r\nms k abc\r\nmg\r\nmd\r\nma\r\nme\r\n\x00\xff\x80\r\n",
		"get "+strings.Repeat("x", 251)+"\r\n"+strings.Repeat("y", 3000)+"\r\nversion\r\n")
	text("tags", false,
		"set a 0 0 1 tags=t1,t2\r\nx\r\nset b 0 0 1 tags=t1 noreply\r\ny\r\nms c 1 GdDE=,dDM= b\r\nz\r\n",
		"mg a g v\r\ntag_keys t1\r\ntag_keys t1 1\r\ntag_stale t2\r\nmg a v c\r\ntag_invalidate t1 noreply\r\n",
		"get a b c\r\nme c\r\n")
	text("http", false, "get a\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n")
	text("quit", false, "set a 0 0 1\r\nx\r\nquit\r\nget a\r\n")
	text("truncated data", false, "set a 0 0 10\r\nabc")
	text("truncated refused data", false, "set bad\x01 0 0 10\r\nabc")
	text("truncated line", false, "get a b")
	text("lf only", false, "set a 0 0 1\nx\r\nget a\nmn\n")
	text("auth", true,
		"get a\r\nset a 0 0 1\r\nx\r\nset u 0 0 11\r\nadmin wrong\r\nset u 0 0 5\r\nadmin\r\n",
		"set u 0 0 11\r\nadmin admin\r\nset a 0 0 1\r\nx\r\nget a\r\nquit\r\n")
	text("auth reader", true,
		"set u 0 0 13\r\nreader reader\r\nset a 0 0 1\r\nx\r\nms a 1\r\ny\r\nget a\r\nflush_all\r\ntag_invalidate t\r\n")
	text("auth too large", true, "set u 0 0 5000\r\n"+value(5000)+"\r\nset u 0 0 11\r\nadmin admin\r\nmn\r\n")
	text("auth errors", true, strings.Repeat("set u 0 0 9\r\nadmin bad\r\n", 12)+"set u 0 0 11\r\nadmin admin\r\nmn\r\n")

	for i, script := range binScripts {
		cases = append(cases, framedCase{name: fmt.Sprint("binary script ", i), input: binInput(script...)})
	}
	big := []byte(value(9000))
	cases = append(cases,
		framedCase{name: "binary quiet", input: binInput(
			binReq{op: opSetQ, key: []byte("a"), extras: setExtras(1, 0), value: []byte("1")},
			binReq{op: opAddQ, key: []byte("a"), extras: setExtras(1, 0), value: []byte("2"), opaque: 1},
			binReq{op: opGetQ, key: []byte("a"), opaque: 2},
			binReq{op: opGetKQ, key: []byte("nope"), opaque: 3},
			binReq{op: opIncrementQ, key: []byte("n"), extras: incrExtras(1, 5, 0), opaque: 4},
			binReq{op: opDeleteQ, key: []byte("a"), opaque: 5},
			binReq{op: opAppendQ, key: []byte("n"), value: []byte("0"), opaque: 6},
			binReq{op: opGATKQ, key: []byte("n"), extras: u32(10), opaque: 7},
			binReq{op: opFlushQ, opaque: 8},
			binReq{op: opNoop, opaque: 9},
			binReq{op: opStat, opaque: 10},
			binReq{op: opStat, key: []byte("settings"), opaque: 11},
			binReq{op: opQuitQ, opaque: 12},
			binReq{op: opNoop, opaque: 13})},
		framedCase{name: "binary large", input: binInput(
			binReq{op: opSet, key: []byte("l"), extras: setExtras(0, 0), value: big[:8100], opaque: 1},
			binReq{op: opSet, key: []byte("l"), extras: setExtras(0, 0), value: big[:8160], opaque: 2},
			binReq{op: opSet, key: []byte("l"), extras: setExtras(0, 0), value: big, opaque: 3},
			binReq{op: opGet, key: []byte("l"), opaque: 4},
			binReq{op: opSet, key: []byte("l"), extras: setExtras(0, 0), value: []byte(value(framedMaxItem + 1)), opaque: 5},
			binReq{op: opGet, key: []byte("l"), opaque: 6},
			binReq{op: 0x50, value: big, opaque: 7},
			binReq{op: opVersion, opaque: 8})},
		framedCase{name: "binary errors", input: binInput(
			binReq{op: opSet, key: []byte("a"), extras: setExtras(0, 0), value: []byte("v")},
			binReq{op: opGet, key: []byte("a"), extras: []byte("x"), opaque: 1})},
		framedCase{name: "binary value on get", input: binInput(
			binReq{op: opGet, key: []byte("a"), value: []byte("v"), opaque: 1},
			binReq{op: opNoop, opaque: 2})},
		framedCase{name: "binary long key", input: binInput(
			binReq{op: opSet, key: []byte(strings.Repeat("k", 251)), extras: setExtras(0, 0), value: []byte("v"), opaque: 1},
			binReq{op: opNoop, opaque: 2})},
		framedCase{name: "binary bad lengths", input: append(binInput(binReq{op: opNoop, opaque: 1}),
			magicRequest, opSet, 0, 5, 8, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 'k', 'k', 'k', 'k', 'k')},
		framedCase{name: "binary bad magic", input: append(binInput(binReq{op: opNoop}), "get a\r\n"...)},
		framedCase{name: "binary truncated", input: binInput(
			binReq{op: opNoop},
			binReq{op: opSet, key: []byte("a"), extras: setExtras(0, 0), value: []byte("value")})[:24+24+8+1+2]},
		framedCase{name: "binary auth", auth: true, input: binInput(
			binReq{op: opSASLList, opaque: 1},
			binReq{op: opSASLAuth, key: []byte("PLAIN"), value: []byte("\x00admin\x00bad"), opaque: 2},
			binReq{op: opSASLAuth, key: []byte("CRAM"), value: []byte("x"), opaque: 3},
			binReq{op: opSASLStep, key: []byte("PLAIN"), value: []byte("x"), opaque: 4},
			binReq{op: opSASLAuth, key: []byte("PLAIN"), value: []byte("\x00writer\x00writer"), opaque: 5},
			binReq{op: opSet, key: []byte("a"), extras: setExtras(0, 0), value: []byte("v"), opaque: 6},
			binReq{op: opFlush, opaque: 7},
			binReq{op: opGet, key: []byte("a"), opaque: 8})},
		framedCase{name: "binary unauthenticated", auth: true, input: binInput(
			binReq{op: opVersion, opaque: 1},
			binReq{op: opGet, key: []byte("a"), opaque: 2},
			binReq{op: opNoop, opaque: 3})},
		framedCase{name: "binary unauthenticated set", auth: true, input: binInput(
			binReq{op: opSet, key: []byte("a"), extras: setExtras(0, 0), value: []byte("value"), opaque: 1},
			binReq{op: opNoop, opaque: 2})},
		framedCase{name: "binary reader", auth: true, input: binInput(
			binReq{op: opSASLAuth, key: []byte("PLAIN"), value: []byte("reader\x00reader\x00reader"), opaque: 1},
			binReq{op: opSet, key: []byte("a"), extras: setExtras(0, 0), value: []byte("v"), opaque: 2},
			binReq{op: opAppend, key: []byte("a"), value: []byte("v"), opaque: 3},
			binReq{op: opGet, key: []byte("a"), opaque: 4})},
		framedCase{name: "ascii binding, binary client", binding: bindingASCII, input: binInput(binReq{op: opNoop})},
		framedCase{name: "ascii binding, text client", binding: bindingASCII, input: []byte("mn\r\n")},
		framedCase{name: "binary binding, text client", binding: bindingBinary, input: []byte("mn\r\n")},
		framedCase{name: "binary binding, binary client", binding: bindingBinary, input: binInput(binReq{op: opNoop})},
	)
	return cases
}

func TestFramedEquivalence(t *testing.T) {
	users := newUsers(t)
	for _, c := range framedCases() {
		checkFramed(t, c, users)
	}
}

func FuzzFramed(f *testing.F) {
	for _, c := range framedCases() {
		if len(c.input) <= 64<<10 {
			f.Add(c.input, c.auth, c.binding == bindingASCII)
		}
	}
	users := newUsers(f)
	f.Fuzz(func(t *testing.T, input []byte, withAuth, ascii bool) {
		c := framedCase{name: "fuzzed", input: input, auth: withAuth}
		if ascii {
			c.binding = bindingASCII
		}
		checkFramed(t, c, users)
	})
}

func TestFrameLength(t *testing.T) {
	users := newUsers(t)
	set := binReq{op: opSet, key: []byte("k"), extras: setExtras(0, 0), value: []byte("value")}.bytes()
	tooLarge := binReq{op: opSet, key: []byte("k"), extras: setExtras(0, 0), value: make([]byte, framedMaxItem+1)}.bytes()
	sasl := binReq{op: opSASLAuth, key: []byte("PLAIN"), value: make([]byte, maxAuthPayload+1)}.bytes()
	for _, tc := range []struct {
		in   string
		want int
		// auth requires authentication; proto is what the connection
		// already speaks; binding is the listener's.
		auth    bool
		proto   protocol
		binding string
	}{
		{in: "get a b\r\nget c\r\n", want: len("get a b\r\n")},
		{in: "get a b\nmn\n", want: len("get a b\n")},
		{in: "get a b", want: 0},
		{in: "quit\r\n", want: len("quit\r\n")},
		{in: "foo\r\n", want: len("foo\r\n")},
		{in: "set a 0 0 3\r\nabc\r\nmn\r\n", want: len("set a 0 0 3\r\n") + 5},
		{in: "set a 0 0 3\r\na", want: len("set a 0 0 3\r\n") + 5},
		{in: "set  a 0 0   3  \r\n", want: len("set  a 0 0   3  \r\n") + 5},
		{in: "add bad\x01key x y 3 tags=t noreply\r\n", want: len("add bad\x01key x y 3 tags=t noreply\r\n") + 5},
		{in: "cas a 0 0 0 7\r\n\r\n", want: len("cas a 0 0 0 7\r\n") + 2},
		{in: "ms a 2 T0 F5 q b c k s O1 I\r\n", want: len("ms a 2 T0 F5 q b c k s O1 I\r\n") + 4},
		{in: "ms a 2 zz\r\n", want: len("ms a 2 zz\r\n") + 4},
		{in: fmt.Sprintf("set a 0 0 %d\r\n", framedMaxItem), want: len(fmt.Sprintf("set a 0 0 %d\r\n", framedMaxItem)) + framedMaxItem + 2},
		{in: "get " + strings.Repeat("k", framedMaxLine-4) + "\r\n", want: framedMaxLine + 2},
		{in: strings.Repeat("k", framedMaxLine+1), want: 0},
		// Refused before their data block: answered by Serve.
		{in: "set a 0 0\r\n", want: -1},
		{in: "set a 0 0 1 2 3 4\r\n", want: -1},
		{in: "cas a 0 0 1\r\n", want: -1},
		{in: "set a 0 0 -1\r\n", want: -1},
		{in: "set a 0 0 +x\r\n", want: -1},
		{in: "set a 0 0 99999999999\r\n", want: -1},
		{in: fmt.Sprintf("set a 0 0 %d\r\n", framedMaxItem+1), want: -1},
		{in: fmt.Sprintf("ms a %d\r\n", framedMaxItem+1), want: -1},
		{in: "ms a\r\n", want: -1},
		{in: "ms a -2 T0\r\n", want: -1},
		{in: "get " + strings.Repeat("k", framedMaxLine-3) + "\r\n", want: -1},
		{in: strings.Repeat("k", framedMaxLine+2), want: -1},
		// Text authentication.
		{in: "get a\r\n", auth: true, want: len("get a\r\n")},
		{in: "set u 0 0 11\r\nadmin", auth: true, want: len("set u 0 0 11\r\n") + 13},
		{in: "set u 0 0 x\r\n", auth: true, want: len("set u 0 0 x\r\n")},
		{in: "set u 0 0 4097\r\n", auth: true, want: -1},
		// Binary requests.
		{in: string(set), want: len(set)},
		{in: string(set[:30]), want: len(set)},
		{in: string(set[:23]), want: 0},
		{in: string(binReq{op: opGetKQ, key: []byte("k")}.bytes()), want: headerLen + 1},
		{in: string(binReq{op: 0x50, value: []byte("body")}.bytes()), want: headerLen + 4},
		{in: string(binReq{op: opQuit}.bytes()), want: headerLen},
		{in: string(tooLarge[:100]), want: -1},
		{in: string(sasl[:100]), want: -1},
		{in: string(sasl[:100]), auth: true, want: -1},
		{in: string(binReq{op: opGet, key: []byte("k"), value: []byte("v")}.bytes()), want: -1},
		{in: string(binReq{op: opGet, key: []byte(strings.Repeat("k", 251))}.bytes()), want: -1},
		{in: string(binReq{op: opGet, key: []byte("k")}.bytes()), auth: true, want: -1},
		{in: string(binReq{op: opVersion}.bytes()), auth: true, want: headerLen},
		{in: "get a\r\n", proto: protoBinary, want: -1},
		{in: "\x80\x0b\x00\x00", proto: protoText, want: 0},
		// The listener's binding.
		{in: string(set), binding: bindingASCII, want: -1},
		{in: "mn\r\n", binding: bindingBinary, want: -1},
		{in: "mn\r\n", binding: bindingASCII, want: len("mn\r\n")},
	} {
		c := framedCase{auth: tc.auth, binding: tc.binding}
		m, s, _ := newFramedSession(t, c, users, strings.NewReader(""), 8192, io.Discard)
		fc := m.NewFramedConn(s)
		fc.(*conn).proto = tc.proto
		if got := fc.FrameLength([]byte(tc.in)); got != tc.want {
			t.Errorf("FrameLength(%.80q) (auth %v, protocol %d, binding %q) = %d, want %d", tc.in, tc.auth, tc.proto, tc.binding, got, tc.want)
		}
		fc.Close()
	}
}
