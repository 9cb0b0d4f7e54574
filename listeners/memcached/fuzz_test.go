package memcached

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"

	"github.com/tagcache/caddy-tagcache/auth"
	"github.com/tagcache/caddy-tagcache/internal/testutil"
	"github.com/tagcache/caddy-tagcache/listeners"
	"github.com/tagcache/caddy-tagcache/store"
)

// fuzzMaxLine is the line limit of fuzzed sessions.
const fuzzMaxLine = 1024

// fuzzConn is the connection of fuzzed sessions; it only has addresses.
type fuzzConn struct{ net.Conn }

func (fuzzConn) LocalAddr() net.Addr  { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 11211} }
func (fuzzConn) RemoteAddr() net.Addr { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 40000} }

// serveInput serves input as one connection's bytes, with small buffers so
// that lines and values cross buffer boundaries, and returns the output.
// Serve must end cleanly or with one of the protocol's own errors.
func serveInput(t *testing.T, input []byte, users *auth.Users) []byte {
	st, err := store.New(store.Config{Shards: 2, MaxMemory: 1 << 20, MaxItemSize: 4096, SweepInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	m := &Memcached{}
	m.Provision(caddy.Context{})
	var out bytes.Buffer
	s := listeners.NewSession(fuzzConn{}, bufio.NewReaderSize(bytes.NewReader(input), 64), bufio.NewWriterSize(&out, 64), st, testutil.NewApp(st, users), users != nil)
	s.Limits = listeners.Limits{MaxLineLength: fuzzMaxLine}
	switch err := m.Serve(s); {
	case err == nil, errors.Is(err, errLineTooLong), errors.Is(err, errBadMagic), errors.Is(err, errProtocol), errors.Is(err, errHTTP):
	default:
		t.Fatalf("Serve: %v", err)
	}
	return out.Bytes()
}

// textSeeds exercise every text command, good and bad.
var textSeeds = []string{
	"get a b c\r\ngets a\r\ngat 10 a\r\ngats -1 a\r\n",
	"set a 1 0 3\r\nabc\r\nadd a 0 0 1\r\nx\r\nreplace a 0 0 1 noreply\r\ny\r\nappend a 0 0 1\r\nz\r\nprepend a 0 0 1\r\nw\r\n",
	"cas a 0 0 1 123\r\nx\r\ncas a 0 0 1 0 noreply\r\nx\r\n",
	"set n 0 0 1\r\n5\r\nincr n 10\r\ndecr n 100\r\nincr n x\r\ntouch n 10\r\ndelete n 0 noreply\r\n",
	"flush_all 10\r\nflush_all noreply\r\nversion\r\nverbosity 1\r\nstats\r\nstats settings\r\nstats items\r\nquit\r\n",
	"set k 0 0 5000\r\n" + strings.Repeat("x", 5000) + "\r\nget k\r\n",
	"set k 0 0 3 tags=a,b\r\nabc\r\ntag_keys a 10\r\ntag_stale a\r\ntag_invalidate a b noreply\r\n",
	"set k 0 0 3\r\nabcdef\r\nset k 0 0 -5\r\nset\r\n\r\n" + strings.Repeat("z", 2000),
	"set auth 0 0 11\r\nadmin admin\r\nget k\r\n",
}

// metaSeeds exercise the meta commands and their flags.
var metaSeeds = []string{
	"ms k 3 T10 F5 c k s Oa q\r\nabc\r\nmg k v s t c f l h k O1 q u g\r\nmn\r\n",
	"mg k N30 R10 T20 E5 v\r\nmd k I T30 x q C5 E6\r\nma k N0 J5 D3 MD v t c\r\nme k\r\n",
	"ms aw== 1 b MA N5 I C1 Gdg==,dA\r\nx\r\nmg aw== b k v g\r\nme aw== b\r\n",
	"ms k 2 MX\r\nxx\r\nmg k v v\r\nma k M++\r\nmd k zz\r\nms k\r\nms k -1\r\n",
}

func FuzzText(f *testing.F) {
	for _, s := range append(textSeeds, metaSeeds...) {
		f.Add([]byte(s), false)
	}
	f.Add([]byte(textSeeds[len(textSeeds)-1]), true)
	users := newUsers(f)
	f.Fuzz(func(t *testing.T, input []byte, withAuth bool) {
		if len(input) > 0 && input[0] == magicRequest {
			input = input[1:]
		}
		u := (*auth.Users)(nil)
		if withAuth {
			u = users
		}
		serveInput(t, input, u)
	})
}

// FuzzTextRoundTrip stores a value with set and reads it back with get:
// with a valid key the exact value and flags come back, else an error.
func FuzzTextRoundTrip(f *testing.F) {
	f.Add("key", uint32(0), []byte("value"))
	f.Add("k\x01", uint32(7), []byte("\r\n"))
	f.Add(strings.Repeat("k", 251), uint32(1), []byte(""))
	f.Fuzz(func(t *testing.T, key string, flags uint32, value []byte) {
		if key == "" || strings.ContainsAny(key, " \r\n") {
			return // not one token: a different command
		}
		line := fmt.Sprintf("set %s %d 0 %d", key, flags, len(value))
		in := fmt.Sprintf("%s\r\n%s\r\nget %s\r\n", line, value, key)
		out := string(serveInput(t, []byte(in), nil))
		valid := len(key) <= store.DefaultMaxKeyLength && textToken(key)
		want := fmt.Sprintf("STORED\r\nVALUE %s %d %d\r\n%s\r\nEND\r\n", key, flags, len(value), value)
		switch {
		case len(line) > fuzzMaxLine:
			want = "CLIENT_ERROR line too long\r\n"
		case !valid:
			want = replyBadFormat + replyBadFormat
		case len(value) > 4096:
			want = replyTooLarge + "END\r\n"
		}
		if out != want {
			t.Fatalf("%.300q:\n got %.300q\nwant %.300q", in, out, want)
		}
	})
}

// FuzzMetaFlags runs ms, mg, ma and md with the same fuzzed flags: whatever
// they are, every command must be answered and the connection stay in
// step, which the final mn proves.
func FuzzMetaFlags(f *testing.F) {
	for _, flags := range []string{"", "v q", "b", "T10 N5 R3 E9 C1", "MA N10", "ME", "MD D5 J3 N0 v", "I x F1", "Gt1,t2 g", "O123 k s t c f h l u"} {
		f.Add("key", flags, []byte("12"))
	}
	f.Fuzz(func(t *testing.T, key, flags string, value []byte) {
		if key == "" || !textToken(key) || strings.ContainsAny(flags, "\r\n") || len(key)+len(flags)+20 > fuzzMaxLine {
			return // a key or flags that are not tokens change the framing; too long ends it
		}
		in := fmt.Sprintf("ms %s %d %s\r\n%s\r\nmg %[1]s %[3]s\r\nma %[1]s %[3]s\r\nmd %[1]s %[3]s\r\nmn\r\n", key, len(value), flags, value)
		if out := serveInput(t, []byte(in), nil); !bytes.HasSuffix(out, []byte("MN\r\n")) {
			t.Fatalf("%.300q: lost step:\n%.300q", in, out)
		}
	})
}

func FuzzBinary(f *testing.F) {
	for _, script := range binScripts {
		var in []byte
		for _, q := range script {
			in = append(in, q.bytes()...)
		}
		f.Add(in)
	}
	f.Fuzz(func(t *testing.T, input []byte) {
		serveInput(t, append([]byte{magicRequest}, input...), nil)
	})
}

// FuzzBinaryRequest sends one well-framed request with fuzzed fields,
// then a Version request: unless the first ended the connection (Quit, or
// a request memcached also refuses by closing), the Version answer must
// come last.
func FuzzBinaryRequest(f *testing.F) {
	for _, script := range binScripts {
		for _, q := range script {
			f.Add(q.op, q.key, q.extras, q.value, q.cas)
		}
	}
	f.Fuzz(func(t *testing.T, op byte, key, extras, value []byte, cas uint64) {
		if len(key) > 0xffff || len(extras) > 0xff {
			return
		}
		q := binReq{op: op, key: key, extras: extras, value: value, cas: cas, opaque: 1}
		out := serveInput(t, append(q.bytes(), endMark.bytes()...), nil)
		var last binResp
		r := bytes.NewReader(out)
		for r.Len() > 0 {
			p, err := readResp(r)
			if err != nil {
				t.Fatalf("bad response stream: %v\n%.300q", err, out)
			}
			last = p
		}
		if last.op != endMark.op || last.opaque != endMark.opaque {
			if op == opQuit || op == opQuitQ || last.status == statusInvalid || last.status == statusUnknown {
				return
			}
			t.Fatalf("%.300v: no answer to the request after it:\n%.300q", q, out)
		}
	})
}
