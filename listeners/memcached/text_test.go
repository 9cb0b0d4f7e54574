package memcached

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/tagcache/caddy-tagcache/listeners"
	"github.com/tagcache/caddy-tagcache/store"
)

func TestTextStorageAndRetrieval(t *testing.T) {
	srv := startServer(t, serverOptions{})
	c := srv.dial(t)
	c.do("set k 42 0 5\r\nhello\r\n", "STORED\r\n")
	c.do("get k\r\n", "VALUE k 42 5\r\nhello\r\nEND\r\n")
	m := c.match("gets k\r\n", `VALUE k 42 5 (\d+)`)
	c.read(len("hello\r\nEND\r\n"))
	c.do("cas k 1 0 3 "+m[1]+"\r\nnew\r\n", "STORED\r\n")
	c.do("cas k 1 0 3 "+m[1]+"\r\nold\r\n", "EXISTS\r\n")
	c.do("cas gone 1 0 3 "+m[1]+"\r\nold\r\n", "NOT_FOUND\r\n")
	c.do("cas k 1 0 3 0\r\nold\r\n", "EXISTS\r\n")
	c.do("add k 0 0 1\r\nx\r\n", "NOT_STORED\r\n")
	c.do("replace none 0 0 1\r\nx\r\n", "NOT_STORED\r\n")
	c.do("append k 0 0 1\r\n!\r\n", "STORED\r\n")
	c.do("prepend k 0 0 1\r\n<\r\n", "STORED\r\n")
	c.do("get k none k\r\n", "VALUE k 1 5\r\n<new!\r\nVALUE k 1 5\r\n<new!\r\nEND\r\n")
	// A value with \r\n inside and an empty value.
	c.do("set bin 0 0 4\r\n\r\n\r\n\r\n", "STORED\r\n")
	c.do("set empty 0 0 0\r\n\r\n", "STORED\r\n")
	c.do("get bin empty\r\n", "VALUE bin 0 4\r\n\r\n\r\n\r\nVALUE empty 0 0\r\n\r\nEND\r\n")
	// Flags are 32 bits.
	c.do("set f 4294967295 0 1\r\nx\r\n", "STORED\r\n")
	c.do("get f\r\n", "VALUE f 4294967295 1\r\nx\r\nEND\r\n")
	c.do("set f 4294967296 0 1\r\nx\r\n", "CLIENT_ERROR bad command line format\r\n")
	// Written through the text protocol, read through the store: same bytes
	// and flags, as every other front sees them.
	if it, ok := srv.st.Get("k"); !ok || string(it.Value) != "<new!" || it.Flags != 1 {
		t.Fatalf("store has %+v %v", it, ok)
	}
}

func TestTextNoreply(t *testing.T) {
	srv := startServer(t, serverOptions{})
	c := srv.dial(t)
	c.send("set a 0 0 1 noreply\r\nx\r\n" +
		"add a 0 0 1 noreply\r\ny\r\n" +
		"replace a 0 0 1 noreply\r\nz\r\n" +
		"append a 0 0 1 noreply\r\n1\r\n" +
		"prepend a 0 0 1 noreply\r\n0\r\n" +
		"set n 0 0 1 noreply\r\n5\r\n" +
		"incr n 2 noreply\r\n" +
		"decr n 1 noreply\r\n" +
		"touch n 100 noreply\r\n" +
		"delete nope noreply\r\n" +
		"incr nope 1 noreply\r\n" +
		"set a 0 0 1 noreply\r\ntoolong\r\n" +
		"verbosity 1 noreply\r\n" +
		"flush_all 100 noreply\r\n")
	// The bad data chunk above consumed "too", leaving "long\r\n", which is
	// not a command: that ERROR is the first reply.
	c.do("get a n\r\n", "ERROR\r\nVALUE a 0 3\r\n0z1\r\nVALUE n 0 1\r\n6\r\nEND\r\n")
}

// TestTextSwallowsRefusedData checks that every refused storage command
// swallows its data block, so the next command is read in step.
func TestTextSwallowsRefusedData(t *testing.T) {
	srv := startServer(t, serverOptions{storeCfg: store.Config{MaxItemSize: 1000}})
	c := srv.dial(t)
	long := strings.Repeat("k", 251)
	c.do("set "+long+" 0 0 3\r\nget\r\n", "CLIENT_ERROR bad command line format\r\n")
	c.do("set a\x00b 0 0 3\r\nget\r\n", "CLIENT_ERROR bad command line format\r\n")
	c.do("set k x 0 3\r\nget\r\n", "CLIENT_ERROR bad command line format\r\n")
	c.do("set k 0 x 3\r\nget\r\n", "CLIENT_ERROR bad command line format\r\n")
	c.do("cas k 0 0 3 x\r\nget\r\n", "CLIENT_ERROR bad command line format\r\n")
	c.do("set k 0 0 3 bogus noreply\r\nget\r\n", "CLIENT_ERROR bad command line format\r\n")
	c.do("set k 0 0 3 tags=,a\r\nget\r\n", "CLIENT_ERROR empty tag\r\n")
	// A too large value also removes the old one, as memcached does.
	c.do("set k 0 0 1\r\nx\r\n", "STORED\r\n")
	c.do("set k 0 0 1001\r\n"+strings.Repeat("v", 1001)+"\r\n", "SERVER_ERROR object too large for cache\r\n")
	c.do("get k\r\n", "END\r\n")
	c.do("set k 0 0 1000\r\n"+strings.Repeat("v", 1000)+"\r\n", "STORED\r\n")
	c.do("append k 0 0 1\r\nv\r\n", "NOT_STORED\r\n")
	// A too large add leaves the old value alone.
	c.do("add k 0 0 5000\r\n"+strings.Repeat("v", 5000)+"\r\n", "SERVER_ERROR object too large for cache\r\n")
	if it, ok := srv.st.Get("k"); !ok || len(it.Value) != 1000 {
		t.Fatalf("k after a too large add: %d bytes, %v", len(it.Value), ok)
	}
	if got := srv.stat(t, "", "store_too_large"); got != "2" {
		t.Fatalf("store_too_large = %s", got)
	}
	// Without a usable length nothing can be swallowed: the data line is
	// then read as a command, as memcached does.
	c.do("set k 0 0 x\r\nabc\r\n", "CLIENT_ERROR bad command line format\r\nERROR\r\n")
}

func TestTextLimits(t *testing.T) {
	srv := startServer(t, serverOptions{
		limits:   listeners.Limits{MaxLineLength: 100, MaxValueSize: 10},
		storeCfg: store.Config{MaxKeyLength: 20},
	})
	c := srv.dial(t)
	c.do("set "+strings.Repeat("k", 20)+" 0 0 10\r\n0123456789\r\n", "STORED\r\n")
	c.do("get "+strings.Repeat("k", 21)+"\r\n", "CLIENT_ERROR bad command line format\r\n")
	c.do("set k 0 0 11\r\n01234567890\r\n", "SERVER_ERROR object too large for cache\r\n")
	c.do("get "+strings.Repeat("k ", 40)+"\r\n", "END\r\n")
	c.send("get " + strings.Repeat("k", 200) + "\r\n")
	if l := c.line(); l != "CLIENT_ERROR line too long\r\n" {
		t.Fatalf("got %q", l)
	}
	c.closed()
	// A garbage line with no end is cut off too, without waiting for one.
	c = srv.dial(t)
	c.send(strings.Repeat("x", 300))
	if l := c.line(); l != "CLIENT_ERROR line too long\r\n" {
		t.Fatalf("got %q", l)
	}
	c.closed()
}

// TestTextLargeValues moves values much larger than the connection's
// buffers, pipelined with small commands.
func TestTextLargeValues(t *testing.T) {
	srv := startServer(t, serverOptions{bufferSize: 4096})
	c := srv.dial(t)
	big := strings.Repeat("0123456789abcdef", 40_000)
	c.send(fmt.Sprintf("set big 0 0 %d\r\n%s\r\nget big\r\nset small 0 0 1\r\nx\r\n", len(big), big))
	c.do("get small big\r\n", fmt.Sprintf("STORED\r\nVALUE big 0 %d\r\n%s\r\nEND\r\nSTORED\r\nVALUE small 0 1\r\nx\r\nVALUE big 0 %[1]d\r\n%[2]s\r\nEND\r\n", len(big), big))
}

// TestTextPipelining sends many commands in one write and reads every
// reply, in order.
func TestTextPipelining(t *testing.T) {
	srv := startServer(t, serverOptions{bufferSize: 1024})
	c := srv.dial(t)
	var req, want strings.Builder
	for i := range 500 {
		fmt.Fprintf(&req, "set k%d 0 0 %d\r\n%d\r\nget k%d\r\n", i, len(fmt.Sprint(i)), i, i)
		fmt.Fprintf(&want, "STORED\r\nVALUE k%d 0 %d\r\n%d\r\nEND\r\n", i, len(fmt.Sprint(i)), i)
	}
	c.do(req.String(), want.String())
}

// TestTextExpiry checks memcached's exptime rules on the harness's manual
// clock: relative seconds up to 30 days, absolute Unix times beyond,
// negative times already expired.
func TestTextExpiry(t *testing.T) {
	srv := startServer(t, serverOptions{})
	c := srv.dial(t)
	now := srv.clock.UnixSeconds()
	c.do("set rel 0 10 1\r\nx\r\n", "STORED\r\n")
	c.do("set month 0 2592000 1\r\nx\r\n", "STORED\r\n")
	c.do(fmt.Sprintf("set abs 0 %d 1\r\nx\r\n", now+20), "STORED\r\n")
	c.do(fmt.Sprintf("set past 0 %d 1\r\nx\r\n", now-20), "STORED\r\n")
	c.do("set neg 0 -1 1\r\nx\r\n", "STORED\r\n")
	c.do("get rel month abs past neg\r\n", "VALUE rel 0 1\r\nx\r\nVALUE month 0 1\r\nx\r\nVALUE abs 0 1\r\nx\r\nEND\r\n")
	srv.clock.Advance(10)
	c.do("get rel abs\r\n", "VALUE abs 0 1\r\nx\r\nEND\r\n")
	c.do("touch abs 0\r\n", "TOUCHED\r\n")
	c.do("gat 5 month\r\n", "VALUE month 0 1\r\nx\r\nEND\r\n")
	srv.clock.Advance(20)
	c.do("get abs month\r\n", "VALUE abs 0 1\r\nx\r\nEND\r\n")
	// A delayed flush_all takes effect when its time comes.
	c.do("flush_all 60\r\n", "OK\r\n")
	c.do("get abs\r\n", "VALUE abs 0 1\r\nx\r\nEND\r\n")
	srv.clock.Advance(60)
	c.do("get abs\r\n", "END\r\n")
}

func TestTextMisc(t *testing.T) {
	srv := startServer(t, serverOptions{})
	c := srv.dial(t)
	c.do("version extra args\r\n", "VERSION "+Version+"\r\n")
	c.do("verbosity 2\r\n", "OK\r\n")
	if got := srv.stat(t, "settings", "verbosity"); got != "2" {
		t.Fatalf("verbosity %s", got)
	}
	c.do("mn\r\n", "MN\r\n")
	c.do("gat 10\r\n", "END\r\n")
	c.do("stats detail on\r\n", "ERROR\r\n")
	c.send("quit\r\n")
	c.closed()
	// memcached hangs up on HTTP clients.
	c = srv.dial(t)
	c.send("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	c.closed()
}

func TestTextStats(t *testing.T) {
	srv := startServer(t, serverOptions{})
	c := srv.dial(t)
	if cur, total := c.stat("", "curr_connections"), c.stat("", "total_connections"); cur != "1" || total != "1" {
		t.Errorf("connections: %s current, %s in total; want 1 and 1", cur, total)
	}
	c.do("stats items\r\n", "END\r\n")
	c.do("stats slabs\r\n", "STAT active_slabs 0\r\nSTAT total_malloced 0\r\nEND\r\n")
	c.do("set a 0 0 1\r\nx\r\nset b 0 0 1\r\ny\r\n", "STORED\r\nSTORED\r\n")
	c.do("get a b c\r\n", "VALUE a 0 1\r\nx\r\nVALUE b 0 1\r\ny\r\nEND\r\n")
	c.do("delete c\r\ndelete b\r\n", "NOT_FOUND\r\nDELETED\r\n")
	st := srv.st.Stats()
	want := map[string]string{
		"curr_items":     "1",
		"total_items":    "2",
		"cmd_get":        "3",
		"cmd_set":        "2",
		"get_hits":       "2",
		"get_misses":     "1",
		"delete_hits":    "1",
		"delete_misses":  "1",
		"bytes":          fmt.Sprint(st.Bytes),
		"limit_maxbytes": fmt.Sprint(st.MaxMemory),
		"version":        Version,
	}
	for name, value := range want {
		if got := c.stat("", name); got != value {
			t.Errorf("stat %s = %q, want %q", name, got, value)
		}
	}
	if got := srv.stat(t, "items", "items:1:number"); got != "1" {
		t.Errorf("items:1:number = %q", got)
	}
	// memcdump's listing: class 1 holds the store; reading does not count
	// as a hit.
	c.do("set t 0 1000000 2\r\nab\r\n", "STORED\r\n")
	dump := func(req string) (items []string) {
		c.send(req)
		for l := c.line(); l != "END\r\n"; l = c.line() {
			items = append(items, l)
		}
		return items
	}
	exp := srv.st.Stats()
	tItem, _ := srv.st.Peek("t")
	got := dump("stats cachedump 1 0\r\n")
	wantItems := []string{"ITEM a [1 b; 0 s]\r\n", fmt.Sprintf("ITEM t [2 b; %d s]\r\n", tItem.Expires/1000)}
	slices.Sort(got)
	if !slices.Equal(got, wantItems) {
		t.Errorf("stats cachedump 1 0: %q, want %q", got, wantItems)
	}
	if n := len(dump("stats cachedump 1 1\r\n")); n != 1 {
		t.Errorf("stats cachedump 1 1 listed %d keys", n)
	}
	c.do("stats cachedump 2 0\r\n", "END\r\n")
	if st := srv.st.Stats(); st.Hits != exp.Hits || st.Misses != exp.Misses {
		t.Errorf("cachedump counted hits or misses: %d/%d, then %d/%d", exp.Hits, exp.Misses, st.Hits, st.Misses)
	}
	c.do("delete t\r\n", "DELETED\r\n")
	st = srv.st.Stats()
	// memcached_exporter's scrape: three groups on one connection, each
	// read up to its END.
	c.do("stats slabs\r\nstats sizes\r\n", fmt.Sprintf("STAT 1:used_chunks 1\r\nSTAT 1:mem_requested %d\r\nSTAT 1:get_hits 2\r\nSTAT 1:cmd_set 3\r\n"+
		"STAT active_slabs 1\r\nSTAT total_malloced %[1]d\r\nEND\r\nSTAT sizes_status disabled\r\nEND\r\n", st.Bytes))
	if got := srv.stat(t, "settings", "item_size_max"); got != fmt.Sprint(store.DefaultMaxItemSize) {
		t.Errorf("item_size_max = %q", got)
	}
}

func TestTextFlushDisabled(t *testing.T) {
	srv := startServer(t, serverOptions{noFlush: true})
	c := srv.dial(t)
	c.do("set a 0 0 1\r\nx\r\n", "STORED\r\n")
	c.do("flush_all\r\n", "CLIENT_ERROR flush_all not allowed\r\n")
	c.do("get a\r\n", "VALUE a 0 1\r\nx\r\nEND\r\n")
}

func TestBinding(t *testing.T) {
	ascii := startServer(t, serverOptions{binding: bindingASCII})
	c := ascii.dial(t)
	c.send(string(binReq{op: opNoop}.bytes()))
	c.closed()
	binaryOnly := startServer(t, serverOptions{binding: bindingBinary})
	c = binaryOnly.dial(t)
	c.send("version\r\n")
	c.closed()
	if err := (&Memcached{Binding: "udp"}).Validate(); err == nil {
		t.Fatal("a bad binding validated")
	}
}
