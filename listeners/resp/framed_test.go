package resp

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/tagcache/caddy-tagcache/auth"
	"github.com/tagcache/caddy-tagcache/listeners"
	"github.com/tagcache/caddy-tagcache/listeners/framedtest"
	"github.com/tagcache/caddy-tagcache/store"
)

// framedClock is the stores' time in the framed tests: fixed, so that
// expiry is the same in every run of a session.
const framedClock = 1_700_000_000_000

// framedUsers has the user alice, password alicepw. It is made once: it
// remembers the credentials it verified, which spares the runs of a
// session the bcrypt work.
var framedUsers = sync.OnceValue(func() *auth.Users {
	h, err := bcrypt.GenerateFromPassword([]byte("alicepw"), bcrypt.MinCost)
	if err != nil {
		panic(err)
	}
	users, err := auth.NewUsers(auth.Config{Users: []auth.UserConfig{{Username: "alice", Password: string(h)}}})
	if err != nil {
		panic(err)
	}
	return users
})

// framedApp returns a fresh app with the stores "default" and "other" and
// the user alice.
func framedApp(t testing.TB) *fakeApp {
	t.Helper()
	app := &fakeApp{stores: map[string]*store.Store{}}
	for _, name := range []string{"default", "other"} {
		// One shard: a fuzzed session makes eleven apps.
		st, err := store.New(store.Config{Shards: 1, SweepInterval: -1, Now: func() int64 { return framedClock }})
		if err != nil {
			t.Fatal(err)
		}
		app.stores[name] = st
	}
	app.users = framedUsers()
	return app
}

// runAddrs numbers the runs' client addresses.
var runAddrs atomic.Uint32

// addrConn is a connection that only has addresses: each run of a session
// gets an address of its own, since the login rate limit counts the
// failures of an address process wide.
type addrConn struct {
	net.Conn // nil: nothing but the addresses is used
	addr     net.Addr
}

func newAddrConn() addrConn {
	n := runAddrs.Add(1)
	return addrConn{addr: &net.TCPAddr{IP: net.IPv4(10, byte(n>>16), byte(n>>8), byte(n)), Port: 6379}}
}

func (c addrConn) RemoteAddr() net.Addr { return c.addr }
func (c addrConn) LocalAddr() net.Addr  { return c.addr }

// framedRun is what one run of a session left: the bytes written to the
// client and the stores' contents, and how the event loop's way went: the
// commands answered by ServeCommand, and whether Serve took over.
type framedRun struct {
	out, stores string
	commands    int
	handedOver  bool
}

// loopConn counts what framedtest.Drive does with a connection.
type loopConn struct {
	listeners.FramedConn
	commands   int
	handedOver bool
}

func (l *loopConn) ServeCommand() error {
	l.commands++
	return l.FramedConn.ServeCommand()
}

func (l *loopConn) Serve() error {
	l.handedOver = true
	return l.FramedConn.Serve()
}

// runSession answers input on a connection of a fresh app, with a reader
// buffer of bufSize bytes: by Serve on the whole input if chunk is 0,
// else as an event loop does (framedtest.Drive) with input arriving chunk
// bytes at a time.
func runSession(t testing.TB, input []byte, authRequired bool, bufSize, chunk int) framedRun {
	t.Helper()
	app := framedApp(t)
	defer func() {
		for _, st := range app.stores {
			st.Close()
		}
	}()
	var out bytes.Buffer
	w := bufio.NewWriterSize(&out, 8<<10)
	feed := framedtest.NewFeed(input)
	var r io.Reader = feed
	if chunk == 0 {
		r = bytes.NewReader(input)
	}
	s := listeners.NewSession(newAddrConn(), bufio.NewReaderSize(r, bufSize), w, app.stores["default"], app, authRequired)
	c := new(Protocol).NewFramedConn(s).(*conn)
	loop := &loopConn{FramedConn: c}
	var err error
	if chunk == 0 {
		err = c.Serve()
	} else {
		err = framedtest.Drive(t, loop, s, feed, chunk)
	}
	c.Close()
	if err != nil && !errors.Is(err, io.EOF) {
		t.Fatalf("chunk %d, buffer %d: %v", chunk, bufSize, err)
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	// HELLO tells the client its ID, which differs from run to run.
	id := "$2\r\nid\r\n:" + strconv.FormatUint(c.client.id, 10) + "\r\n"
	return framedRun{strings.ReplaceAll(out.String(), id, "$2\r\nid\r\n:ID\r\n"), dumpStores(app), loop.commands, loop.handedOver}
}

// dumpStores lists every entry of the app's stores.
func dumpStores(app *fakeApp) string {
	var b strings.Builder
	for _, name := range app.StoreNames() {
		st := app.stores[name]
		keys, _ := st.Scan(0, 1<<30, nil)
		slices.Sort(keys)
		for _, k := range keys {
			it, ok := st.Get(k)
			if ok {
				fmt.Fprintf(&b, "%s %q=%q flags=%d expires=%d tags=%q stale=%v\n", name, k, it.Value, it.Flags, it.Expires, it.Tags, it.Stale)
			}
		}
	}
	return b.String()
}

// checkFramed checks that answering input as the event loops do, in
// pieces of several sizes and with a reader buffer small enough for the
// hand-over to Serve, writes what Serve writes and leaves the same data.
// It returns the runs.
func checkFramed(t *testing.T, input []byte, authRequired bool) []framedRun {
	t.Helper()
	want := runSession(t, input, authRequired, 8<<10, 0)
	var runs []framedRun
	for _, bufSize := range []int{8 << 10, 256} {
		for _, chunk := range []int{1, 7, 64, 4096, max(len(input), 1)} {
			got := runSession(t, input, authRequired, bufSize, chunk)
			if got.out != want.out {
				t.Fatalf("chunk %d, buffer %d: replies differ from Serve's\n got %.2000q\nwant %.2000q", chunk, bufSize, got.out, want.out)
			}
			if got.stores != want.stores {
				t.Fatalf("chunk %d, buffer %d: stores differ from Serve's\n got %.2000q\nwant %.2000q", chunk, bufSize, got.stores, want.stores)
			}
			runs = append(runs, got)
		}
	}
	return runs
}

// framedSession is a client's input and whether the listener requires
// auth. A framed session is answered by ServeCommand alone, without a
// hand-over to Serve.
type framedSession struct {
	name         string
	input        string
	authRequired bool
	framed       bool
}

// encodeLines encodes each line as a RESP array of its space-separated words.
func encodeLines(lines ...string) string {
	var b strings.Builder
	for _, l := range lines {
		b.WriteString(encode(strings.Fields(l)...))
	}
	return b.String()
}

func framedSessions() []framedSession {
	big := func(n int) string { return strings.Repeat("v", n) }
	var pipelined strings.Builder
	for i := range 200 {
		pipelined.WriteString(encode("SET", "key:"+strconv.Itoa(i), strconv.Itoa(i*i)))
	}
	for i := range 200 {
		pipelined.WriteString(encode("GET", "key:"+strconv.Itoa(i)))
		pipelined.WriteString(encode("INCR", "key:"+strconv.Itoa(i)))
	}
	return []framedSession{
		{name: "strings", framed: true, input: encodeLines(
			"SET a 1", "GET a", "GET missing", "SET b hello EX 100", "GETSET a 2", "GETDEL a", "GETDEL a",
			"APPEND ap hello", "APPEND ap world", "STRLEN ap", "GETRANGE ap 0 4", "SUBSTR ap -3 -1",
			"SETRANGE sr 3 hi", "GET sr", "MSET x 1 y 2", "MGET x y z", "MSETNX x 1 w 2", "MSETNX v 1 w 2",
			"SETNX n 1", "SETNX n 2", "SET k v NX", "SET k v2 XX GET", "SET k v3 KEEPTTL", "SET k v4 PX 5000 GET",
			"SETEX se 10 v", "PSETEX pse 1500 v", "GETEX se PERSIST", "GETEX pse EX 30",
			"INCRBYFLOAT f 1.5", "INCRBYFLOAT f 0.25", "SET tg v TAGS t3 t4", "SETTAG tk v t1 t2",
			"TAGCOUNT t1", "TAGINFO t3", "TAGDEL t4", "INVALIDATE t1 t3", "EXISTS tk tg",
		)},
		{name: "counters", framed: true, input: encodeLines(
			"INCR c", "INCRBY c 10", "DECR c", "DECRBY c 5", "INCRBY c abc", "SET notnum abc", "INCR notnum",
			"SET big 9223372036854775807", "INCR big", "SET small -9223372036854775808", "DECR small",
			"SET lz 007", "INCR lz", "SET plus +1", "INCR plus", "SET neg -0", "INCR neg",
			"DECRBY c -9223372036854775808", "SET e 5 EX 100", "INCR e", "APPEND e 1",
		)},
		{name: "keys", framed: true, input: encodeLines(
			"SET k1 a", "SET k2 b EX 100", "EXISTS k1 k2 k3", "TTL k2", "PTTL k1", "EXPIRE k1 100 NX",
			"EXPIRE k1 50 GT", "EXPIRETIME k1", "PEXPIRETIME k2", "PERSIST k1", "TTL k1", "TYPE k1", "TYPE nope",
			"RENAME k1 k3", "RENAMENX k3 k2", "COPY k3 k4", "COPY k3 k5 DB 1", "TOUCH k3 k4 nope",
			"PEXPIREAT k4 1", "EXISTS k4", "DEL k3 nope", "UNLINK k2", "DBSIZE", "SELECT 1", "GET k5",
			"SET o1 x", "DBSIZE", "SELECT other", "FLUSHDB", "SELECT 0", "SELECT 9", "NAMESPACES", "SET z 1",
		)},
		{name: "transactions", framed: true, input: encodeLines(
			"MULTI", "SET t 1", "INCR t", "GET t", "EXEC",
			"MULTI", "BADCMD", "SET t 2", "EXEC", "GET t",
			"MULTI", "MULTI", "DISCARD", "DISCARD", "EXEC",
			"WATCH w", "SET w changed", "MULTI", "SET w 1", "EXEC", "GET w",
			"WATCH w u", "UNWATCH", "MULTI", "SET w 2", "GET w", "EXEC",
			"WATCH w", "MULTI", "WATCH x", "INCR w", "EXEC",
		)},
		{name: "hello", framed: true, input: encodeLines(
			"HELLO 3", "GET missing", "MGET a b", "SET a 1", "HELLO", "HELLO 4", "HELLO x",
			"CLIENT SETNAME conn1", "CLIENT GETNAME", "HELLO 2 SETNAME conn2", "CLIENT GETNAME",
			"HELLO 3 BOGUS", "CONFIG GET max*", "PING", "PING hi", "ECHO x", "DBSIZE", "RESET", "GET missing",
		)},
		{name: "auth required", framed: true, authRequired: true, input: encodeLines(
			"GET a", "PING", "HELLO 3", "AUTH alice wrong", "AUTH wrongpw", "AUTH alice alicepw",
			"SET a 1", "GET a", "RESET", "GET a", "HELLO 3 AUTH alice alicepw", "GET a", "GET missing",
		)},
		{name: "auth limits", authRequired: true, input: encodeLines("PING") +
			encode("SET", "k", big(17<<10)) + encodeLines("PING")},
		{name: "auth arguments", authRequired: true, input: encodeLines("PING", "AUTH a b c d e f g h i j k")},
		{name: "auth then large", authRequired: true, input: encodeLines("AUTH alice alicepw") +
			encode("SET", "k", big(17<<10)) + encodeLines("STRLEN k", "MSET a 1 b 2 c 3 d 4 e 5 f 6", "MGET a f")},
		{name: "inline", input: "PING\r\nSET il value\r\nGET il\n  \r\n\r\nECHO hi\r\n" +
			"SET q \"quoted \\x41 value\"\r\nGET q\r\nSET s 'single'\r\n\tGET s \t\r\nPING\r\n"},
		{name: "errors", framed: true, input: encodeLines(
			"NOSUCH a b", "GET", "SET k", "SET k v EX abc", "SET k v EX 0", "SET k v BOGUS", "SET k v NX XX",
			"HSET h f v", "LPUSH l a", "CLIENT NOSUCH", "CONFIG SET maxmemory", "SELECT x", "GETRANGE k a b",
			"INCRBYFLOAT f inf", "EXPIRE k abc", "FLUSHALL BOGUS", "PING a b", "WATCH", "ECHO",
		) + "unknown inline command\r\n" + encodeLines("PING")},
		{name: "pipelined", framed: true, input: pipelined.String()},
		{name: "large values", input: "PING\r\n" + encode("SET", "a", big(8150)) + encodeLines("GET a", "STRLEN a") + encode("SET", "b", big(8170)) +
			encode("SET", "c", big(8192)) + encode("SET", "d", big(20000)) + encodeLines("GET a") +
			encode("MSET", "e", big(3000), "f", big(6000)) + encodeLines("GET b", "GET c", "STRLEN d", "APPEND a xyz", "MGET e f", "PING")},
		{name: "quit", framed: true, input: encodeLines("SET q 1", "QUIT", "SET q 2")},
		{name: "quit inline", framed: true, input: "SET q 1\r\nquit\r\nSET q 2\r\n"},
		{name: "flushall", framed: true, input: encodeLines("SET a 1", "SELECT 1", "SET b 2", "FLUSHALL", "DBSIZE", "SELECT 0", "DBSIZE")},
		{name: "empty requests", framed: true, input: "*0\r\n*-1\r\n\r\n" + encodeLines("PING") + "*0\r\n"},
		{name: "bare LF", framed: true, input: "*1\n$4\nPING\r\n*2\r\n$3\nGET\r\n$1\nk\r\n"},
		{name: "wrong terminator", input: "PING\r\n*1\r\n$4\r\nPINGxy" + encodeLines("SET a 1")},
		{name: "protocol error", input: encodeLines("SET a 1") + "*2\r\n$3\r\nGET\r\n:1\r\n" + encodeLines("SET a 2")},
		{name: "bad count", input: encodeLines("PING") + "*x\r\n" + encodeLines("PING")},
		{name: "huge count", input: encodeLines("PING") + "*1048577\r\n" + encodeLines("PING")},
		{name: "negative length", input: encodeLines("PING") + "*1\r\n$-1\r\n" + encodeLines("PING")},
		{name: "bulk too big", input: encodeLines("PING") + "*2\r\n$3\r\nGET\r\n$99999999999\r\n"},
		{name: "unbalanced quotes", input: "PING\r\nECHO \"a\r\nPING\r\n"},
		{name: "long inline", input: "PING\r\n" + big(70<<10) + "\r\nPING\r\n"},
		{name: "long header", input: "PING\r\n*1\r\n$" + strings.Repeat("1", 70<<10) + "\r\nPING\r\n"},
		{name: "garbage", input: "\x00\xff\xfe junk\r\n$3\r\nfoo\r\n:1\r\n+OK\r\n" + encodeLines("PING") + "*1\r\n*1\r\n$4\r\nPING\r\n"},
		{name: "truncated", input: encodeLines("SET a 1") + "*2\r\n$3\r\nGET\r\n$1\r\n"},
		{name: "truncated value", input: encodeLines("SET a 1") + "*3\r\n$3\r\nSET\r\n$1\r\nb\r\n$100\r\nabc"},
	}
}

// TestFramedEquivalence checks that the event loops' way of answering,
// FrameLength and ServeCommand with a hand-over to Serve, writes exactly
// what Serve writes and stores the same data.
func TestFramedEquivalence(t *testing.T) {
	for _, sess := range framedSessions() {
		t.Run(sess.name, func(t *testing.T) {
			for _, run := range checkFramed(t, []byte(sess.input), sess.authRequired) {
				// Every session starts with a command the loop answers.
				if run.commands == 0 || sess.framed && run.handedOver {
					t.Fatalf("ServeCommand answered %d commands, hand-over to Serve: %v", run.commands, run.handedOver)
				}
			}
		})
	}
}

// nondeterministic are the commands whose replies change from run to run
// of the same session (time, IDs, the process's other clients, the order
// of a store's shards, which is random per store) or that reach outside
// the app: a fuzzed session that runs one is not compared. Subscribers get
// invalidation events from a goroutine, which a run may end before.
var nondeterministic = map[string]bool{
	"time": true, "info": true, "client|id": true, "client|info": true, "client|list": true,
	"keys": true, "scan": true, "randomkey": true, "tagkeys": true, "config|set": true,
	"save": true, "bgsave": true, "subscribe": true, "psubscribe": true,
}

// deterministic reports whether a session's replies can be compared from
// run to run. It reads every command as the connection would with the
// widest limits (auth lifts some), so it sees every command a run may
// answer.
func deterministic(input []byte) bool {
	rd := newReader(bufio.NewReader(bytes.NewReader(input)), 0, store.MaxItemSizeLimit, func() bool { return false })
	for {
		args, err := rd.read()
		if err != nil {
			return true
		}
		if len(args) == 0 {
			continue
		}
		if cmd, _ := lookup(args); cmd != nil && nondeterministic[cmd.fullName] {
			return false
		}
	}
}

// FuzzFramed checks the equivalence of TestFramedEquivalence on fuzzed
// sessions.
func FuzzFramed(f *testing.F) {
	for _, sess := range framedSessions() {
		if len(sess.input) < 4<<10 {
			f.Add([]byte(sess.input), sess.authRequired)
		}
	}
	f.Add([]byte(encode("SET", "k", strings.Repeat("x", 300))+"GET k\r\n"), false)
	f.Fuzz(func(t *testing.T, input []byte, authRequired bool) {
		if len(input) > 64<<10 || !deterministic(input) {
			return
		}
		checkFramed(t, input, authRequired)
	})
}

func TestFramedDeterministicFilter(t *testing.T) {
	for _, tc := range []struct {
		input string
		want  bool
	}{
		{encodeLines("SET a 1", "GET a"), true},
		{encodeLines("SET a 1", "TIME"), false},
		{"client id\r\n", false},
		{encodeLines("CLIENT SETNAME x"), true},
		{encodeLines("MULTI", "KEYS *", "EXEC"), false},
	} {
		if got := deterministic([]byte(tc.input)); got != tc.want {
			t.Errorf("deterministic(%q) = %v", tc.input, got)
		}
	}
}

func TestFrameLength(t *testing.T) {
	app := framedApp(t)
	for _, st := range app.stores {
		t.Cleanup(st.Close)
	}
	newFramed := func(authRequired bool) listeners.FramedConn {
		s := listeners.NewSession(nil, bufio.NewReader(strings.NewReader("")), bufio.NewWriter(io.Discard), app.stores["default"], app, authRequired)
		s.Limits.MaxLineLength = 100
		c := new(Protocol).NewFramedConn(s)
		t.Cleanup(c.Close)
		return c
	}
	c := newFramed(false)
	get := encode("GET", "key")
	set := encode("SET", "key", strings.Repeat("x", 32))
	for _, tc := range []struct {
		in   string
		want int
	}{
		// Whole commands, alone and followed by more.
		{get, len(get)},
		{get + get, len(get)},
		{set, len(set)},
		{"PING\r\n", 6},
		{"PING\nGET", 5},
		{"\r\n", 2},
		{"*0\r\n", 4},
		{"*-1\r\nPING", 5},
		{"*1\n$4\nPING\r\n", 12},
		// Incomplete: a header line not here yet, or the value.
		{"*", 0},
		{"*2\r", 0},
		{"*2\r\n", 0},
		{"*2\r\n$3\r\nGET\r\n", 0},
		{"*2\r\n$3\r\nGET\r\n$3", 0},
		{"PIN", 0},
		{set[:len(set)-1], len(set)},
		{set[:len(set)-10], len(set)},
		{"*2\r\n$3\r\nSET\r\n$10000\r\nxx", 13 + 8 + 10002},
		// What the blocking path answers.
		{"*x\r\n", -1},
		{"*1048577\r\n", -1},
		{"*1\r\n:1\r\n", -1},
		{"*1\r\n\r\n", -1},
		{"*1\r\n$-1\r\n", -1},
		{"*1\r\n$x\r\n", -1},
		{"*1\r\n$01\r\nx\r\n", -1},
		{"*1\r\n$4\r\nPINGxx", -1},
		{"*1\r\n$4\r\nPING\rx", -1},
		{"*1\r\n$4\r\nPING\n", -1},
		{"*1\r\n$2000000\r\n", -1}, // over max_value_size
		{"ECHO \"a b\"\r\n", -1},
		{"ECHO 'a'\r\n", -1},
		{strings.Repeat("x", 101) + "\r\n", -1}, // over max_line_length
		{strings.Repeat("x", 100) + "\r\n", 102},
		{strings.Repeat("x", 100) + "\r", 0},
		{strings.Repeat("x", 102), -1},
		{"*1\r\n$" + strings.Repeat("1", 101), -1},
	} {
		if got := c.FrameLength([]byte(tc.in)); got != tc.want {
			t.Errorf("FrameLength(%.60q) = %d, want %d", tc.in, got, tc.want)
		}
	}

	// Before auth, Redis's tighter limits apply, and the blocking path
	// answers what goes over them.
	c = newFramed(true)
	for _, tc := range []struct {
		in   string
		want int
	}{
		{get, len(get)},
		{"*11\r\n", -1},
		{"*10\r\n", 0},
		{"*1\r\n$16385\r\n", -1},
		{"*1\r\n$16384\r\n", 4 + 8 + 16386},
	} {
		if got := c.FrameLength([]byte(tc.in)); got != tc.want {
			t.Errorf("before auth, FrameLength(%.60q) = %d, want %d", tc.in, got, tc.want)
		}
	}
}

// TestSubscribeNeedsServe checks that a subscribing command moves the
// connection to Serve, and that a message published meanwhile waits for
// Serve: it comes after the replies the event loop flushes, and the
// delivery does not race with that flush.
func TestSubscribeNeedsServe(t *testing.T) {
	subscribed := "*3\r\n$9\r\nsubscribe\r\n$2\r\nch\r\n:1\r\n"
	message := "*3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$2\r\nm1\r\n"
	for _, tc := range []struct{ input, replies, message string }{
		{"PING\r\nSUBSCRIBE ch\r\n", "+PONG\r\n" + subscribed, message},
		{encodeLines("PSUBSCRIBE c*"), "*3\r\n$10\r\npsubscribe\r\n$2\r\nc*\r\n:1\r\n",
			"*4\r\n$8\r\npmessage\r\n$2\r\nc*\r\n$2\r\nch\r\n$2\r\nm1\r\n"},
		{encodeLines("MULTI", "SUBSCRIBE ch", "EXEC"), "+OK\r\n+QUEUED\r\n*1\r\n" + subscribed, message},
	} {
		t.Run(tc.input, func(t *testing.T) { checkSubscribeNeedsServe(t, tc.input, tc.replies, tc.message) })
	}
}

func checkSubscribeNeedsServe(t *testing.T, input, replies, message string) {
	app := framedApp(t)
	for _, st := range app.stores {
		t.Cleanup(st.Close)
	}
	server, client := net.Pipe()
	t.Cleanup(func() { server.Close() })
	client.SetDeadline(time.Now().Add(10 * time.Second))
	more, moreW := io.Pipe()
	s := listeners.NewSession(server, bufio.NewReader(io.MultiReader(strings.NewReader(input), more)),
		bufio.NewWriter(server), app.stores["default"], app, false)
	c := new(Protocol).NewFramedConn(s)
	t.Cleanup(c.Close)
	// As an event loop does: read once, answer the whole commands.
	if _, err := s.R.Peek(len(input)); err != nil {
		t.Fatal(err)
	}
	var err error
	for err == nil && s.R.Buffered() > 0 {
		buf, _ := s.R.Peek(s.R.Buffered())
		if n := c.FrameLength(buf); n <= 0 || n > len(buf) {
			t.Fatalf("%q: FrameLength(%q) = %d", input, buf, n)
		}
		err = c.ServeCommand()
	}
	if !errors.Is(err, listeners.ErrServeBlocking) || s.R.Buffered() > 0 {
		t.Fatalf("%q: ServeCommand returned %v with %d bytes left, want ErrServeBlocking after the last", input, err, s.R.Buffered())
	}
	if n := hub.publish("ch", "m1"); n != 1 {
		t.Fatalf("%q: published to %d subscribers", input, n)
	}
	flushed := make(chan error, 1)
	go func() { flushed <- s.W.Flush() }() // the event loop's flush of the batch
	rd := bufio.NewReader(client)
	got := make([]byte, len(replies))
	if _, err := io.ReadFull(rd, got); err != nil || string(got) != replies {
		t.Fatalf("%q: replies %q, %v, want %q", input, got, err, replies)
	}
	if err := <-flushed; err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- c.Serve() }()
	got = make([]byte, len(message))
	if _, err := io.ReadFull(rd, got); err != nil || string(got) != message {
		t.Fatalf("%q: message %q, %v, want %q", input, got, err, message)
	}
	moreW.Write([]byte("PING\r\n"))
	want := "*2\r\n$4\r\npong\r\n$0\r\n\r\n"
	got = make([]byte, len(want))
	if _, err := io.ReadFull(rd, got); err != nil || string(got) != want {
		t.Fatalf("%q: PING while subscribed: %q, %v", input, got, err)
	}
	moreW.Close()
	if err := <-served; err != nil {
		t.Fatal(err)
	}
}

// TestSubscriberClosedBeforeServe checks that a connection that subscribed
// in an event loop and ended before Serve ran (its client went away)
// closes without waiting for a delivery that never started.
func TestSubscriberClosedBeforeServe(t *testing.T) {
	app := framedApp(t)
	for _, st := range app.stores {
		t.Cleanup(st.Close)
	}
	input := encodeLines("SUBSCRIBE ch")
	s := listeners.NewSession(nil, bufio.NewReader(strings.NewReader(input)), bufio.NewWriter(io.Discard), app.stores["default"], app, false)
	c := new(Protocol).NewFramedConn(s)
	s.R.Peek(len(input))
	if err := c.ServeCommand(); !errors.Is(err, listeners.ErrServeBlocking) {
		t.Fatalf("SUBSCRIBE: %v", err)
	}
	done := make(chan struct{})
	go func() {
		c.Close()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Close waits for a delivery goroutine that never ran")
	}
	if n := hub.publish("ch", "m"); n != 0 {
		t.Fatalf("still subscribed after Close: %d", n)
	}
}

// TestUnsubscribeStaysFramed checks that leaving channels one never
// joined does not make a connection need Serve.
func TestUnsubscribeStaysFramed(t *testing.T) {
	app := framedApp(t)
	for _, st := range app.stores {
		t.Cleanup(st.Close)
	}
	input := encodeLines("UNSUBSCRIBE ch", "PUNSUBSCRIBE", "PUBLISH ch m")
	var out bytes.Buffer
	w := bufio.NewWriter(&out)
	s := listeners.NewSession(nil, bufio.NewReader(strings.NewReader(input)), w, app.stores["default"], app, false)
	c := new(Protocol).NewFramedConn(s)
	defer c.Close()
	s.R.Peek(len(input))
	for s.R.Buffered() > 0 {
		if err := c.ServeCommand(); err != nil {
			t.Fatalf("ServeCommand: %v", err)
		}
	}
	w.Flush()
	want := "*3\r\n$11\r\nunsubscribe\r\n$2\r\nch\r\n:0\r\n*3\r\n$12\r\npunsubscribe\r\n$-1\r\n:0\r\n:0\r\n"
	if out.String() != want {
		t.Fatalf("replies %q, want %q", out.String(), want)
	}
}
