package resp

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tagcache/caddy-tagcache/internal/testutil"
)

// These tests send the same commands to this listener and to a real
// redis-server (Debian's redis-server 7.0, started here on a port of this
// package's range) and compare the replies byte for byte: the reference
// for the tricky cases is Redis itself, not expectations written down
// here.

const redisComparePort = 19555

// startRedis starts a redis-server without persistence on port and stops
// it when the test ends.
func startRedis(t testing.TB, port int, extra ...string) string {
	t.Helper()
	bin := testutil.Tool(t, "redis-server", "redis-server")
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	args := append([]string{"--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
		"--dir", t.TempDir(), "--logfile", ""}, extra...)
	cmd := exec.Command(bin, args...)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	for deadline := time.Now().Add(10 * time.Second); ; {
		conn, err := net.Dial("tcp", addr)
		if err == nil {
			conn.Close()
			return addr
		}
		if time.Now().After(deadline) {
			t.Fatalf("redis-server did not start on %s: %v", addr, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// commandsScript exercises the commands' options and errors.
const commandsScript = `
SET k v
GET k
SET k v2 NX
SET k v3 XX GET
SET k v4 NX GET
SET k2 v NX GET
set k v ex 0
SET k v EX -1
SET k v EX abc
SET k v EX 10 PX 10
SET k v EX 10 EX 20
SET k v NX XX
SET k v KEEPTTL EX 10
SET k v EX 10 KEEPTTL
SET k v GET GET
SET k v PERSIST
SET k v EX 100
TTL k
SET k v2 KEEPTTL
TTL k
SET k v3
TTL k
SET k v FOO
SET k v EX
SET k v EX 9223372036854775807
SET k v PX 9223372036854775807
SET k v EXAT 9223372036854775807
SET k v EXAT 1
GET k
SET k v PXAT 9999999999999
PEXPIRETIME k
EXPIRETIME k
SET k v EX 010
SET k v EX +10
SET k v EX 10.5
GETEX k
GETEX k EX 100
TTL k
GETEX k PERSIST
TTL k
GETEX k PX 0
GETEX k EX 10 PX 10
GETEX k PERSIST EX 10
GETEX k EX 10 PERSIST
GETEX k KEEPTTL
GETEX k FOO
GETEX missing EX 10
GETEX k EXAT 1
EXISTS k
SETNX n 1
SETNX n 2
SETEX s 0 v
SETEX s abc v
SETEX s 100 v
TTL s
PSETEX s 0 v
PSETEX s 100000 v
TTL s
MSET a 1 b 2 c 3
MSET a 1 b
MGET a b c d
MSETNX a 1 x 2
MSETNX x 1 y 2
MSETNX x 1 y
MGET x y
GETSET a 10
GETSET zz 1
GETDEL a
GETDEL a
APPEND ap hello
APPEND ap " world"
GET ap
STRLEN ap
STRLEN nope
GETRANGE ap 0 4
GETRANGE ap -5 -1
GETRANGE ap -1 -5
GETRANGE ap 5 1
GETRANGE ap 0 100
GETRANGE ap -100 2
GETRANGE ap 3 -100
GETRANGE nope 0 1
GETRANGE ap a 1
SUBSTR ap 1 3
SETRANGE sr 5 hi
GET sr
SETRANGE sr 0 HELLO
SETRANGE sr -1 x
SETRANGE sr 1 ""
SETRANGE nope2 3 ""
EXISTS nope2
SETRANGE sr 536870912 x
SETRANGE sr abc x
INCR i
INCRBY i 10
DECR i
DECRBY i 5
INCRBY i abc
INCRBY i 9223372036854775807
DECRBY i -9223372036854775808
DECRBY i 9223372036854775807
DECRBY i 9223372036854775807
SET i 9223372036854775807
INCR i
SET i -9223372036854775808
DECR i
SET i 007
INCR i
SET i +1
INCR i
SET i " 1"
INCR i
SET i 1.5
INCR i
SET i 12345678901234567890
INCR i
SET i -0
INCR i
SET i 0
INCRBY i -0
INCRBYFLOAT f 0.1
INCRBYFLOAT f 0.2
INCRBYFLOAT f 10.5
INCRBYFLOAT f -10.8
INCRBYFLOAT f abc
INCRBYFLOAT f 1e400
INCRBYFLOAT f -1e400
INCRBYFLOAT f inf
INCRBYFLOAT f -Infinity
INCRBYFLOAT f nan
INCRBYFLOAT f 0x10
INCRBYFLOAT f 0x1p-2
INCRBYFLOAT f " 1"
INCRBYFLOAT f "1 "
INCRBYFLOAT f 1_0
INCRBYFLOAT f +.5
INCRBYFLOAT f 5.
INCRBYFLOAT f 1e
SET f 1.23456789012345678
INCRBYFLOAT f 0
SET f 3
INCRBYFLOAT f 1.23456789012345678901
INCRBYFLOAT f 1e-400
INCRBYFLOAT f 1e-4000
INCRBYFLOAT f 1e-5000
SET f 5.0e3
INCRBYFLOAT f 0
INCRBYFLOAT f -5000
INCRBYFLOAT f -0.0
SET f 1e4931
INCRBYFLOAT f 1e4931
INCRBYFLOAT f 1e4932
SET f abc
INCRBYFLOAT f 1
SET f 10
INCRBYFLOAT f 0.000000000000000001
INCRBYFLOAT f 123456789.123456789
SET tk 1 EX 100
INCRBYFLOAT tk 1.5
TTL tk
APPEND tk x
TTL tk
SETRANGE tk 0 9
TTL tk
GETSET tk 1
TTL tk
SET tk 1 EX 100
INCR tk
TTL tk
MSET tk 2
TTL tk
SET tk 1 EX 100
GETEX tk
TTL tk
DEL a b c x y zz
DEL nope
EXISTS b c c d
UNLINK b
EXPIRE c 100
TTL c
EXPIRE c 100 NX
EXPIRE c 200 XX
TTL c
EXPIRE c 50 GT
EXPIRE c 500 GT
TTL c
EXPIRE c 600 LT
EXPIRE c 300 LT
TTL c
EXPIRE c 10 NX XX
EXPIRE c 10 GT LT
EXPIRE c 10 NX GT
EXPIRE c 10 FOO
EXPIRE c abc FOO
EXPIRE c abc
EXPIRE c 9223372036854775807
PEXPIRE c 9223372036854775807
EXPIREAT c 9223372036854775807
PEXPIREAT c 9223372036854775807
EXPIRE c -9223372036854775808
PERSIST c
PERSIST c
PERSIST nope
TTL c
EXPIRE c 100 XX
EXPIRE c 100 GT
EXPIRE c 100 LT
TTL c
EXPIRE nope 100
TTL nope
PTTL nope
EXPIRETIME nope
PEXPIRETIME c
EXPIREAT c 4102444800
EXPIRETIME c
PEXPIREAT c 4102444800123
EXPIRETIME c
PEXPIRETIME c
PEXPIREAT c 4102444800999
EXPIRETIME c
EXPIRE c -1
EXISTS c
SET c v
PEXPIREAT c 1
EXISTS c
SET c v
EXPIRE c 0
EXISTS c
SET c v
EXPIRE c -10 LT
EXISTS c
SET c v EX 100
EXPIRE c -10 GT
EXPIRE c -10 LT
EXISTS c
TYPE k
TYPE nope
SET r1 v EX 100
RENAME r1 r2
EXISTS r1
TTL r2
RENAME r1 r2
RENAME r2 r2
RENAMENX r2 r2
RENAMENX nope nope
SET r3 x
RENAMENX r2 r3
RENAMENX r2 r4
RENAMENX nope r4
RENAMENX nope r3
COPY r4 r5
COPY r4 r5
COPY r4 r5 REPLACE
COPY r4 r4
COPY nope r9
COPY r4 r6 DB 0
COPY r4 r6 DB 0 REPLACE
COPY r4 r7 DB 99999
COPY r4 r6 FOO
COPY r4 r6 DB
GET r5
TTL r5
TOUCH r4 r5 nope
~KEYS r*
~KEYS *
~KEYS r[3-5]
KEYS nomatch*
~SCAN 0 COUNT 1000 MATCH r*
~SCAN 0 COUNT 1000 MATCH r* TYPE string
SCAN 0 COUNT 1000 TYPE hash
SCAN abc
SCAN 0 COUNT 0
SCAN 0 COUNT -1
SCAN 0 COUNT abc
SCAN 0 FOO bar
SCAN 0 MATCH
DBSIZE
PING
PING hello
PING a b
ECHO
ECHO hi
FLUSHDB FOO
FLUSHDB ASYNC SYNC
FLUSHALL FOO
GET
SET k
FOO
foo bar baz
foo "a b" 'c d' e
CONFIG FOO
config foo
CONFIG
CONFIG GET
CONFIG SET maxmemory
CONFIG SET foo bar
CONFIG SET databases 3
CONFIG SET maxmemory abc
CONFIG SET maxmemory 100mb maxmemory 200mb
CLIENT
CLIENT FOO
Client foo
CLIENT SETNAME "a b"
CLIENT SETNAME ok-name
CLIENT GETNAME
CLIENT SETNAME ""
CLIENT GETNAME
CLIENT SETNAME
CLIENT LIST TYPE foo
CLIENT LIST ID abc
CLIENT LIST ID 0
CLIENT LIST FOO
MULTI
SET t 1
INCR t
GET
EXEC
MULTI
MULTI
WATCH x
SET t 1
INCR t
FOO
EXEC
MULTI
SET t 1
INCR t
GET t
EXEC
MULTI
SET t abc
INCR t
GET t
EXEC
DISCARD
EXEC
MULTI
DISCARD
UNWATCH
WATCH
WATCH t
SET t 2
MULTI
INCR t
EXEC
WATCH t
MULTI
INCR t
EXEC
WATCH t missing
DEL missing
MULTI
INCR t
EXEC
AUTH x
AUTH a b
AUTH a b c
HELLO 4
HELLO 1
HELLO abc
HELLO 3 FOO
HELLO 2 AUTH a
HELLO 2 AUTH a b
HELLO 2 SETNAME "a b"
HELLO 2 setname
PUBLISH ch msg
PUBSUB NUMSUB a b
PUBSUB NUMSUB
PUBSUB NUMPAT
PUBSUB CHANNELS
PUBSUB FOO
PUBSUB
SELECT -1
DBSIZE x
TIME x
LASTSAVE x
UNSUBSCRIBE
PUNSUBSCRIBE
`

// redisReply is a parsed RESP reply, for normalizing before comparison.
type redisReply struct {
	head  string // the type byte and what follows on the first line
	bulk  string // a bulk string's data
	elems []*redisReply
}

func parseReply(r *bufio.Reader) (*redisReply, error) {
	line, err := r.ReadString('\n')
	if err != nil {
		return nil, err
	}
	rep := &redisReply{head: line}
	n, _ := strconv.Atoi(strings.TrimSpace(line[1:]))
	switch line[0] {
	case '$', '=', '!':
		if n >= 0 {
			buf := make([]byte, n+2)
			if _, err := io.ReadFull(r, buf); err != nil {
				return nil, err
			}
			rep.bulk = string(buf)
		}
	case '*', '~', '>', '%', '|':
		if line[0] == '%' || line[0] == '|' {
			n *= 2
		}
		for range max(n, 0) {
			e, err := parseReply(r)
			if err != nil {
				return nil, err
			}
			rep.elems = append(rep.elems, e)
		}
	}
	return rep, nil
}

func (r *redisReply) String() string {
	s := r.head + r.bulk
	for _, e := range r.elems {
		s += e.String()
	}
	return s
}

// sorted sorts every array in r by its elements' encoding.
func (r *redisReply) sorted() *redisReply {
	for _, e := range r.elems {
		e.sorted()
	}
	slices.SortFunc(r.elems, func(a, b *redisReply) int { return strings.Compare(a.String(), b.String()) })
	return r
}

// scriptClient sends inline lines and reads parsed replies.
type scriptClient struct {
	conn net.Conn
	r    *bufio.Reader
}

func dialScript(t *testing.T, addr string) *scriptClient {
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return &scriptClient{conn: conn, r: bufio.NewReader(conn)}
}

func (c *scriptClient) do(t *testing.T, args []string) *redisReply {
	t.Helper()
	c.conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.conn.Write([]byte(encode(args...))); err != nil {
		t.Fatal(err)
	}
	rep, err := parseReply(c.r)
	if err != nil {
		t.Fatalf("%q: %v", args, err)
	}
	return rep
}

// scriptArgs splits a script line with the inline command splitter.
func scriptArgs(t *testing.T, line string) []string {
	buf, spans, err := splitArgs([]byte(line), nil, nil)
	if err != nil {
		t.Fatalf("script line %q: %v", line, err)
	}
	args := make([]string, len(spans))
	for i, s := range spans {
		args[i] = string(buf[s.start:s.end])
	}
	return args
}

// compareScript runs script against a fresh listener and a fresh
// redis-server. A line is an inline command (quotes as redis-cli takes
// them) and may start with "#n " (the command has n replies, as
// SUBSCRIBE does), then "~" (compare the replies with every array sorted,
// for replies in no defined order) or "!" (send to both, do not compare:
// HELLO's reply names the server).
func compareScript(t *testing.T, script string) {
	redisAddr := startRedis(t, redisComparePort)
	srv := startServer(t, serverOptions{})
	ours, theirs := dialScript(t, srv.addr), dialScript(t, redisAddr)
	for _, line := range strings.Split(script, "\n") {
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		replies := 1
		if strings.HasPrefix(line, "#") {
			n, rest, _ := strings.Cut(line[1:], " ")
			replies, _ = strconv.Atoi(n)
			line = rest
		}
		sortReply, noCompare := strings.HasPrefix(line, "~"), strings.HasPrefix(line, "!")
		args := scriptArgs(t, strings.TrimLeft(line, "~!"))
		for i := range replies {
			var got, want *redisReply
			if i == 0 {
				got, want = ours.do(t, args), theirs.do(t, args)
			} else {
				got, want = ours.next(t), theirs.next(t)
			}
			if sortReply {
				got, want = got.sorted(), want.sorted()
			}
			if !noCompare && got.String() != want.String() {
				t.Errorf("%s (reply %d)\n got  %q\n want %q", line, i+1, got, want)
			}
		}
	}
}

func TestCompareWithRedis(t *testing.T) { compareScript(t, commandsScript) }

// rawCases are sent as they are, each on a fresh connection followed by
// QUIT, and everything both servers answer until they close is compared:
// inline commands, quoting, and the protocol errors that close the
// connection.
var rawCases = []string{
	"PING\r\n",
	"ping\n",
	"  PING   \r\n",
	"\r\n\r\n\nPING\r\n",
	"\tECHO\t x \r\n",
	"SET \"a b\" \"c\\x41\\n\\t\\\\\\\"\\q\"\r\nGET \"a b\"\r\n",
	"ECHO \"a\"b\r\n",
	"ECHO 'a'b\r\n",
	"ECHO 'it\\'s'\r\n",
	"ECHO 'a\\nb'\r\n",
	"ECHO \"unterminated\r\n",
	"ECHO 'unterminated\r\n",
	"ECHO \"\\x4\"\r\n",
	"ECHO \"\"\r\n",
	"*abc\r\n",
	"*-1\r\nPING\r\n",
	"*0\r\nPING\r\n",
	"*1\r\n+PING\r\n",
	"*1\r\n\r\n",
	"*1\r\n$abc\r\n",
	"*1\r\n$-1\r\n",
	"*1\r\n$600000000\r\n",
	"*2\r\n$4\r\nECHO\r\n$3\r\nabcXXPING\r\n",
	"*3\r\n$3\r\nFOO\r\n$5\r\na\x00bcd\r\n$200\r\n" + strings.Repeat("x", 200) + "\r\n",
	"*2\r\n$3\r\nFOO\r\n$6\r\na\r\nb\nc\r\n",
	"*1\r\n$200\r\n" + strings.Repeat("Y", 200) + "\r\n",
	"*2\r\n$4\r\nECHO\r\n$0\r\n\r\n",
	"*1\r\n$4\r\nPING\r\n*1\r\n$4\r\nPING\r\nPING\r\n",
	strings.Repeat("A", 200<<10) + "\r\n",
	"*" + strings.Repeat("1", 200<<10) + "\r\n",
	"*1\r\n$" + strings.Repeat("1", 200<<10) + "\r\n",
	"*1\r\n$01\r\nx\r\n",
	"*01\r\n$4\r\nPING\r\n",
	"*+1\r\n$4\r\nPING\r\n",
}

func readAll(t *testing.T, addr, input string) string {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	go conn.Write([]byte(input + "QUIT\r\n"))
	out, err := io.ReadAll(conn)
	// A server that closes with input unread makes the client's kernel
	// answer a reset: that is a close too.
	if err != nil && !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("%.80q: %v (read %q)", input, err, out)
	}
	return string(out)
}

func TestCompareRawWithRedis(t *testing.T) {
	redisAddr := startRedis(t, redisComparePort)
	srv := startServer(t, serverOptions{})
	for _, in := range rawCases {
		got, want := readAll(t, srv.addr, in), readAll(t, redisAddr, in)
		if got != want {
			t.Errorf("input %.80q\n got  %.300q\n want %.300q", in, got, want)
		}
	}
}

// TestCompareGlobWithRedis checks the glob matcher against Redis's on
// random keys and patterns over an alphabet of the special characters.
func TestCompareGlobWithRedis(t *testing.T) {
	redisAddr := startRedis(t, redisComparePort)
	srv := startServer(t, serverOptions{})
	ours, theirs := dialScript(t, srv.addr), dialScript(t, redisAddr)
	rng := rand.New(rand.NewPCG(7, 42))
	gen := func(alphabet string, n int) string {
		b := make([]byte, 1+rng.IntN(n))
		for i := range b {
			b[i] = alphabet[rng.IntN(len(alphabet))]
		}
		return string(b)
	}
	mset := []string{"MSET"}
	for range 300 {
		k := gen("abcAB-^]\\", 8)
		mset = append(mset, k, "v")
	}
	for _, c := range []*scriptClient{ours, theirs} {
		c.do(t, []string{"FLUSHALL"})
		c.do(t, mset)
	}
	for range 2000 {
		pattern := gen("abcAB*?[]^-\\", 10)
		args := []string{"KEYS", pattern}
		got, want := ours.do(t, args).sorted(), theirs.do(t, args).sorted()
		if got.String() != want.String() {
			t.Fatalf("KEYS %q\n got  %q\n want %q", pattern, got, want)
		}
	}
}

// sessionsScript runs in RESP3 and through subscriptions.
const sessionsScript = `
!HELLO 3
GET nope
SET k v GET
SET k v2 GET
MGET k nope
CLIENT GETNAME
TYPE k
INCRBYFLOAT f 1.5
TTL k
TTL nope
SCAN 0 COUNT 1000 MATCH k
MULTI
SET a 1
GET nope
EXEC
WATCH a
SET a 2
MULTI
GET a
EXEC
PUBSUB NUMSUB a
#2 SUBSCRIBE a b
GET k
PING
PING x
PUBSUB NUMSUB a b c
~PUBSUB CHANNELS
PUBSUB CHANNELS a*
#1 UNSUBSCRIBE a
#1 PSUBSCRIBE p*
PUBSUB NUMPAT
#1 UNSUBSCRIBE
#1 PUNSUBSCRIBE
#1 UNSUBSCRIBE
#1 PUNSUBSCRIBE
!HELLO 2
#2 SUBSCRIBE a b
#2 SUBSCRIBE a b
PING
PING x
GET k
MULTI
#1 PSUBSCRIBE x*
#3 UNSUBSCRIBE a b c
#1 PUNSUBSCRIBE x*
GET k
PING
RESET
GET k
`

func TestCompareSessionsWithRedis(t *testing.T) { compareScript(t, sessionsScript) }

func (c *scriptClient) next(t *testing.T) *redisReply {
	t.Helper()
	c.conn.SetDeadline(time.Now().Add(5 * time.Second))
	rep, err := parseReply(c.r)
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

// TestComparePubSubWithRedis compares the messages subscribers receive,
// in RESP2 and RESP3, for channel and pattern subscriptions.
func TestComparePubSubWithRedis(t *testing.T) {
	redisAddr := startRedis(t, redisComparePort)
	srv := startServer(t, serverOptions{})
	run := func(addr string) []string {
		sub2, sub3, pub := dialScript(t, addr), dialScript(t, addr), dialScript(t, addr)
		sub3.do(t, []string{"HELLO", "3"})
		var out []string
		for _, sub := range []*scriptClient{sub2, sub3} {
			sub.do(t, []string{"SUBSCRIBE", "news"})
			sub.do(t, []string{"PSUBSCRIBE", "n*"})
		}
		out = append(out, pub.do(t, []string{"PUBLISH", "news", "hello\r\nworld"}).String())
		out = append(out, pub.do(t, []string{"PUBLISH", "nothing", ""}).String())
		out = append(out, pub.do(t, []string{"PUBLISH", "other", "x"}).String())
		for _, sub := range []*scriptClient{sub2, sub3} {
			for range 3 {
				out = append(out, sub.next(t).String())
			}
			// What comes after the messages is the reply to this.
			out = append(out, sub.do(t, []string{"PING"}).String())
		}
		return out
	}
	got, want := run(srv.addr), run(redisAddr)
	if strings.Join(got, "") != strings.Join(want, "") {
		t.Errorf("got\n%q\nwant\n%q", got, want)
	}
}
