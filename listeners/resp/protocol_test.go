package resp

import (
	"context"
	"math/rand/v2"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/tagcache/caddy-tagcache/listeners"
	"github.com/tagcache/caddy-tagcache/store"
)

func TestModule(t *testing.T) {
	mod, err := caddy.GetModule("tagcache.listeners.resp")
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := mod.New().(listeners.Protocol); !ok {
		t.Fatalf("%T is not a listeners.Protocol", mod.New())
	}
}

func TestBinarySafe(t *testing.T) {
	srv := startServer(t, serverOptions{})
	rdb := newClient(t, srv.addr, 3)
	ctx := context.Background()
	value := make([]byte, 256)
	for i := range value {
		value[i] = byte(i)
	}
	key := "k\x00\r\n\xff"
	if err := rdb.Set(ctx, key, value, 0).Err(); err != nil {
		t.Fatal(err)
	}
	got, err := rdb.Get(ctx, key).Bytes()
	if err != nil || string(got) != string(value) {
		t.Fatalf("GET = %q, %v", got, err)
	}
	if it, _ := srv.store("default").Get(key); string(it.Value) != string(value) {
		t.Fatalf("stored %q", it.Value)
	}
	keys, _ := rdb.Keys(ctx, "k\x00*").Result()
	if len(keys) != 1 || keys[0] != key {
		t.Fatalf("KEYS with a NUL in the pattern = %q", keys)
	}
}

// TestPartialInput sends commands in pieces as small as a byte: the
// replies are the same as for the whole.
func TestPartialInput(t *testing.T) {
	srv := startServer(t, serverOptions{})
	c := dialRaw(t, srv.addr)
	c.conn.(*net.TCPConn).SetNoDelay(true)
	input := encode("SET", "k", strings.Repeat("v", 3000)) + "GET k\r\n" + encode("STRLEN", "k") + "PING\r\n"
	for i := 0; i < len(input); {
		n := min(1+i%7, len(input)-i)
		c.send(input[i : i+n])
		i += n
	}
	for _, want := range []string{"+OK\r\n", "$3000\r\n" + strings.Repeat("v", 3000) + "\r\n", ":3000\r\n", "+PONG\r\n"} {
		if got := c.reply(); got != want {
			t.Fatalf("reply %.40q, want %.40q", got, want)
		}
	}
}

// TestGarbage sends random bytes on many connections: each gets protocol
// errors or replies, the stored data is untouched, and the server goes on
// serving.
func TestGarbage(t *testing.T) {
	srv := startServer(t, serverOptions{})
	st := srv.store("default")
	st.Set("keep", []byte("safe"), store.Params{})
	rng := rand.New(rand.NewPCG(1, 2))
	alphabet := []byte("*$\r\n0123456789-+:SETGETDELFLUSHALL \"'\\x")
	for range 50 {
		conn, err := net.Dial("tcp", srv.addr)
		if err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 1+rng.IntN(4096))
		for i := range buf {
			if rng.IntN(2) == 0 {
				buf[i] = alphabet[rng.IntN(len(alphabet))]
			} else {
				buf[i] = byte(rng.Uint32())
			}
		}
		conn.SetDeadline(time.Now().Add(time.Second))
		conn.Write(buf)
		conn.Close()
	}
	c := dialRaw(t, srv.addr)
	if got := c.do("PING"); got != "+PONG\r\n" {
		t.Fatalf("PING after garbage: %q", got)
	}
	if it, ok := st.Get("keep"); !ok || string(it.Value) != "safe" {
		// A random FLUSHALL can have come through, spelled right: then
		// the store is empty, not corrupt.
		if st.Stats().Flushes == 0 {
			t.Fatalf("keep = %q, %v", it.Value, ok)
		}
	}
}

func TestQuitAndErrorsKeepConnection(t *testing.T) {
	srv := startServer(t, serverOptions{})
	c := dialRaw(t, srv.addr)
	c.send("NOSUCH\r\nGET\r\nSET k v\r\nQUIT\r\nSET k2 v\r\n")
	for _, want := range []string{
		"-ERR unknown command 'NOSUCH', with args beginning with: \r\n",
		"-ERR wrong number of arguments for 'get' command\r\n",
		"+OK\r\n",
		"+OK\r\n",
	} {
		if got := c.reply(); got != want {
			t.Fatalf("%q, want %q", got, want)
		}
	}
	if !c.closed() {
		t.Fatal("QUIT left the connection open")
	}
	if _, ok := srv.store("default").Get("k2"); ok {
		t.Fatal("a command after QUIT ran")
	}
}

func TestLimits(t *testing.T) {
	srv := startServer(t, serverOptions{storeConfig: store.Config{MaxItemSize: 1000, MaxKeyLength: 10, MaxMemory: 1 << 20}})
	c := dialRaw(t, srv.addr)
	for _, step := range []struct {
		args []string
		want string
	}{
		{[]string{"SET", "k", strings.Repeat("v", 1001)}, "-ERR value too large: 1001 bytes, max_item_size is 1000\r\n"},
		{[]string{"SET", "kkkkkkkkkkk", "v"}, "-ERR key too long: 11 bytes, max_key_length is 10\r\n"},
		{[]string{"SET", "", "v"}, "-ERR empty keys are not supported\r\n"},
		{[]string{"MSET", "a", "1", "kkkkkkkkkkk", "2"}, "-ERR key too long: 11 bytes, max_key_length is 10\r\n"},
		{[]string{"EXISTS", "a"}, ":0\r\n"},
		{[]string{"SET", "k", strings.Repeat("v", 600)}, "+OK\r\n"},
		{[]string{"APPEND", "k", strings.Repeat("v", 600)}, "-ERR value too large: 1200 bytes, max_item_size is 1000\r\n"},
		{[]string{"SETRANGE", "k", "100000000", "x"}, "-ERR value too large: 100000001 bytes, max_item_size is 1000\r\n"},
		{[]string{"SETRANGE", "k", "536870912", "x"}, "-ERR string exceeds maximum allowed size (proto-max-bulk-len)\r\n"},
		{[]string{"STRLEN", "k"}, ":600\r\n"},
	} {
		if got := c.do(step.args...); got != step.want {
			t.Fatalf("%.60q: %q, want %q", step.args, got, step.want)
		}
	}
	// An argument over the reader's limit (the largest value, at least
	// 64 KiB) is a protocol error, as Redis's proto-max-bulk-len is.
	c.send(encode("SET", "k", strings.Repeat("v", 65<<10)))
	if got := c.reply(); got != "-ERR Protocol error: invalid bulk length\r\n" || !c.closed() {
		t.Fatalf("a 65 KiB argument: %q", got)
	}
	// The listener's limits win when set.
	lim := startServer(t, serverOptions{limits: listeners.Limits{MaxLineLength: 100, MaxValueSize: 10}})
	c = dialRaw(t, lim.addr)
	c.send(encode("SET", "k", "01234567890"))
	if got := c.reply(); got != "-ERR Protocol error: invalid bulk length\r\n" {
		t.Fatalf("over MaxValueSize: %q", got)
	}
	c = dialRaw(t, lim.addr)
	c.send("ECHO " + strings.Repeat("x", 200) + "\r\n")
	if got := c.reply(); got != "-ERR Protocol error: too big inline request\r\n" {
		t.Fatalf("over MaxLineLength: %q", got)
	}
}

func TestOutOfMemory(t *testing.T) {
	srv := startServer(t, serverOptions{storeConfig: store.Config{MaxMemory: 32 << 10}})
	c := dialRaw(t, srv.addr)
	if got := c.do("SET", "k", strings.Repeat("v", 40<<10)); got != "-OOM command not allowed when used memory > 'maxmemory'.\r\n" {
		t.Fatalf("a value over the whole budget: %q", got)
	}
	// Values that fit evict older ones instead.
	for i := range 100 {
		if got := c.do("SET", "k"+string(rune('a'+i%26))+string(rune('a'+i/26)), strings.Repeat("v", 1<<10)); got != "+OK\r\n" {
			t.Fatalf("SET %d: %q", i, got)
		}
	}
}
