package tabproto

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tagcache/caddy-tagcache/auth"
	"github.com/tagcache/caddy-tagcache/internal/testutil"
	"github.com/tagcache/caddy-tagcache/listeners"
	"github.com/tagcache/caddy-tagcache/store"
)

// clock is a settable store clock in Unix ms.
type clock struct{ now int64 }

func (c *clock) Now() int64 { return c.now }

func newStore(t testing.TB, clk *clock) *store.Store {
	t.Helper()
	cfg := store.Config{SweepInterval: -1, Shards: 16}
	if clk != nil {
		cfg.Now = clk.Now
	}
	st, err := store.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	return st
}

func noUsers(t testing.TB) *auth.Users {
	u, err := auth.NewUsers(auth.Config{})
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// run feeds input to one session of the protocol and returns its replies.
func run(t testing.TB, app *testutil.App, authRequired bool, limits listeners.Limits, input string) string {
	t.Helper()
	var out bytes.Buffer
	w := bufio.NewWriter(&out)
	s := listeners.NewSession(nil, bufio.NewReaderSize(strings.NewReader(input), 64), w, app.Stores["default"], app, authRequired)
	s.Limits = limits
	if err := (Protocol{}).Serve(s); err != nil {
		t.Fatalf("Serve: %v", err)
	}
	w.Flush()
	return out.String()
}

var defaultLimits = listeners.Limits{MaxLineLength: Protocol{}.DefaultMaxLineLength(store.DefaultMaxItemSize), MaxValueSize: store.DefaultMaxItemSize}

// TestSeedSession replays the example session of TagCache's protocol
// documentation byte for byte.
func TestSeedSession(t *testing.T) {
	input := strings.Join([]string{
		"PUT\tuser:1\t60000\tusers,trial\thello world",
		"ADD\tcounter:new\t-\tcounters\t100",
		"ADD\tcounter:new\t-\t-\t200",
		"INCR\tpage_views\t1\t86400000\tmetrics",
		"INCR\tpage_views\t5",
		"DECR\tuser_quota\t10\t-\tquotas",
		"GET\tuser:1",
		"INV_TAG\ttrial",
		"GET\tuser:1",
	}, "\n") + "\n"
	want := "OK\nADDED\nEXISTS\nVALUE 1\nVALUE 6\nVALUE -10\nVALUE hello world\nINV_TAG 1\nNF\n"
	st := newStore(t, nil)
	if got := run(t, testutil.NewApp(st, noUsers(t)), false, defaultLimits, input); got != want {
		t.Fatalf("replies:\n%q\nwant:\n%q", got, want)
	}
	// What the session wrote is what the other fronts see.
	if tags, _ := st.TagsOf("page_views"); len(tags) != 1 || tags[0] != "metrics" {
		t.Errorf("page_views has tags %q; want [metrics]", tags)
	}
	if tags, _ := st.TagsOf("user_quota"); len(tags) != 1 || tags[0] != "quotas" {
		t.Errorf("user_quota has tags %q; want [quotas]", tags)
	}
	if it, ok := st.Get("counter:new"); !ok || string(it.Value) != "100" || it.Expires != 0 {
		t.Errorf("counter:new = %q, expires %d, %v; want 100 without expiry", it.Value, it.Expires, ok)
	}
}

func TestCommands(t *testing.T) {
	clk := &clock{now: 1_000_000}
	for _, tc := range []struct {
		name, input, want string
	}{
		{"put get", "PUT\tk\t-\t-\tv\nGET\tk\n", "OK\nVALUE v\n"},
		{"value keeps tabs and spaces", "PUT\tk\t-\t-\ta\tb c\nGET\tk\n", "OK\nVALUE a\tb c\n"},
		{"empty value", "PUT\tk\t-\t-\t\nGET\tk\n", "OK\nVALUE \n"},
		{"crlf", "PUT\tk\t-\t-\tv\r\nGET\tk\r\n", "OK\nVALUE v\n"},
		{"lower case", "put\tk\t-\t-\tv\nget\tk\n", "OK\nVALUE v\n"},
		{"empty lines ignored", "\n\nPING\n", "PONG\n"},
		{"get miss", "GET\tnope\n", "NF\n"},
		{"del", "PUT\tk\t-\t-\tv\nDEL\tk\nDEL\tk\nGET\tk\n", "OK\nDEL ok\nDEL nf\nNF\n"},
		{"add", "ADD\tk\t-\t-\t1\nADD\tk\t-\t-\t2\nGET\tk\n", "ADDED\nEXISTS\nVALUE 1\n"},
		{"incr default by", "INCR\tn\nINCR\tn\nDECR\tn\n", "VALUE 1\nVALUE 2\nVALUE 1\n"},
		{"incr dash by", "INCR\tn\t-\t-\tt\nTAGS_OF\tn\n", "VALUE 1\nTAGS t\n"},
		{"incr not a number", "PUT\tk\t-\t-\tabc\nINCR\tk\n", "OK\nERR value is not an integer\n"},
		{"incr overflow", "PUT\tk\t-\t-\t9223372036854775807\nINCR\tk\n", "OK\nERR integer overflow\n"},
		{"decr min", "DECR\tk\t-9223372036854775808\n", "ERR integer overflow\n"},
		{"incr negative by", "INCR\tk\t-5\n", "VALUE -5\n"},
		{"incr bad by", "INCR\tk\tfive\n", "ERR invalid amount\n"},
		{"incr keeps tags", "INCR\tk\t1\t-\ta\nINCR\tk\t1\t-\tb\nTAGS_OF\tk\n", "VALUE 1\nVALUE 2\nTAGS a\n"},
		{"tags", "PUT\tk\t-\ta,b,,c\tv\nTAGS_OF\tk\nKEYS_BY_TAG\tb\nKEYS\tc\n", "OK\nTAGS a,b,c\nKEYS k\nKEYS k\n"},
		{"no tags", "PUT\tk\t-\t-\tv\nTAGS_OF\tk\nTAGS_OF\tnope\n", "OK\nTAGS -\nNF\n"},
		{"keys of unknown tag", "KEYS\tnope\n", "KEYS \n"},
		{"keys bad limit", "KEYS\tt\tmany\n", "ERR invalid limit\n"},
		{"inv_tag", "PUT\ta\t-\tt\tv\nPUT\tb\t-\tt,u\tv\nPUT\tc\t-\tu\tv\nINV_TAG\tt\nGET\tc\nINV_TAG\tt\n", "OK\nOK\nOK\nINV_TAG 2\nVALUE v\nINV_TAG 0\n"},
		{"ttl", "PUT\tk\t1500\t-\tv\nTTL\tk\nPUT\tp\t-\t-\tv\nTTL\tp\nTTL\tnope\n", "OK\nTTL 1500\nOK\nTTL -\nNF\n"},
		{"ttl zero is none", "PUT\tk\t0\t-\tv\nTTL\tk\n", "OK\nTTL -\n"},
		{"touch", "PUT\tk\t-\t-\tv\nTOUCH\tk\t2000\nTTL\tk\nTOUCH\tk\t-\nTTL\tk\nTOUCH\tnope\t5\n", "OK\nOK\nTTL 2000\nOK\nTTL -\nNF\n"},
		{"bad ttl", "PUT\tk\tsoon\t-\tv\nPUT\tk\t-5\t-\tv\nGET\tk\n", "ERR invalid ttl\nERR invalid ttl\nNF\n"},
		{"huge ttl", "PUT\tk\t99999999999999999\t-\tv\n", "ERR invalid ttl\n"},
		{"flush", "PUT\tk\t-\t-\tv\nFLUSH\nGET\tk\n", "OK\nOK\nNF\n"},
		{"stats", "PUT\tk\t-\t-\tv\nGET\tk\nGET\tk\nGET\tnope\nINV_TAG\tx\nSTATS\n", "OK\nVALUE v\nVALUE v\nNF\nINV_TAG 0\nSTATS 2 1 1 0 0.666667\n"},
		{"stats empty", "STATS\n", "STATS 0 0 0 0 0.000000\n"},
		{"unknown", "FROB\tx\nGETT\tk\n", "ERR unknown command\nERR unknown command\n"},
		{"missing args", "GET\nPUT\tk\t-\t-\nINV_TAG\n", "ERR wrong number of arguments\nERR wrong number of arguments\nERR wrong number of arguments\n"},
		{"too many args", "GET\tk\textra\nSTATS\tx\nDEL\ta\tb\n", "ERR wrong number of arguments\nERR wrong number of arguments\nERR wrong number of arguments\n"},
		{"empty key", "PUT\t\t-\t-\tv\n", "ERR empty key\n"},
		{"key too long", "PUT\t" + strings.Repeat("k", 251) + "\t-\t-\tv\n", "ERR key too long: 251 > 250\n"},
		{"auth not enabled", "AUTH\tu\tp\n", "ERR auth is not enabled\n"},
		{"last line without newline", "PING\nPING", "PONG\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			app := testutil.NewApp(newStore(t, clk), noUsers(t))
			if got := run(t, app, false, defaultLimits, tc.input); got != tc.want {
				t.Fatalf("replies:\n%q\nwant:\n%q", got, tc.want)
			}
		})
	}
}

func TestKeysLimit(t *testing.T) {
	app := testutil.NewApp(newStore(t, nil), noUsers(t))
	got := run(t, app, false, defaultLimits, "PUT\ta\t-\tt\tv\nPUT\tb\t-\tt\tv\nKEYS\tt\t1\nKEYS\tt\t0\n")
	if got != "OK\nOK\nKEYS a\nKEYS a,b\n" && got != "OK\nOK\nKEYS b\nKEYS a,b\n" &&
		got != "OK\nOK\nKEYS a\nKEYS b,a\n" && got != "OK\nOK\nKEYS b\nKEYS b,a\n" {
		t.Fatalf("replies %q; want one key, then both", got)
	}
}

func TestExpiry(t *testing.T) {
	clk := &clock{now: 1_000_000}
	app := testutil.NewApp(newStore(t, clk), noUsers(t))
	if got := run(t, app, false, defaultLimits, "PUT\tk\t100\t-\tv\nINCR\tn\t1\t100\n"); got != "OK\nVALUE 1\n" {
		t.Fatalf("replies %q", got)
	}
	clk.now += 100
	if got := run(t, app, false, defaultLimits, "GET\tk\nGET\tn\n"); got != "NF\nNF\n" {
		t.Fatalf("after the TTL: %q; want both gone", got)
	}
}

func TestLimits(t *testing.T) {
	app := testutil.NewApp(newStore(t, nil), noUsers(t))
	limits := listeners.Limits{MaxLineLength: 100, MaxValueSize: 10}
	long := strings.Repeat("x", 1000)
	for _, tc := range []struct {
		name, input, want string
	}{
		{"long line skipped in sync", "GET\t" + long + "\nPING\n", "ERR line too long\nPONG\n"},
		{"line just over", "GET\t" + strings.Repeat("k", 97) + "\nPING\n", "ERR line too long\nPONG\n"},
		{"line at limit", "GET\t" + strings.Repeat("k", 96) + "\n", "NF\n"},
		{"value too large", "PUT\tk\t-\t-\t" + strings.Repeat("v", 11) + "\nPUT\tk\t-\t-\t" + strings.Repeat("v", 10) + "\n", "ERR value too large\nOK\n"},
		{"long line at end without newline", "PING\n" + long, "PONG\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := run(t, app, false, limits, tc.input); got != tc.want {
				t.Fatalf("replies:\n%q\nwant:\n%q", got, tc.want)
			}
		})
	}

	// A value larger than the read buffer is read whole.
	big := strings.Repeat("b", 200<<10)
	got := run(t, app, false, defaultLimits, "PUT\tbig\t-\t-\t"+big+"\nGET\tbig\n")
	if got != "OK\nVALUE "+big+"\n" {
		t.Fatalf("a 200 KiB value came back as %d bytes of reply", len(got))
	}
}

// TestNewlineInValue checks that a value written by another front with a
// newline in it, which this protocol cannot frame, gets an error rather
// than a reply the client would misread.
func TestNewlineInValue(t *testing.T) {
	app := testutil.NewApp(newStore(t, nil), noUsers(t))
	if _, err := app.Stores["default"].Set("bin", []byte("a\nb"), store.Params{Tags: []string{"t"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := app.Stores["default"].Set("line\nkey", []byte("v"), store.Params{Tags: []string{"t"}}); err != nil {
		t.Fatal(err)
	}
	got := run(t, app, false, defaultLimits, "GET\tbin\nKEYS\tt\nPING\n")
	want := "ERR value contains a newline; read it over another protocol\nKEYS bin\nPONG\n"
	if got != want {
		t.Fatalf("replies:\n%q\nwant:\n%q", got, want)
	}
}

func TestAuth(t *testing.T) {
	users, err := auth.NewUsers(auth.Config{Users: []auth.UserConfig{
		{Username: "admin", Password: testutil.BcryptHash(t, "s3cret")},
		{Username: "reader", Password: testutil.BcryptHash(t, "pw\twith tab"), Permissions: []string{"read"}},
		{Username: "purger", Password: testutil.BcryptHash(t, "p"), Permissions: []string{"read", "purge"}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	app := testutil.NewApp(newStore(t, nil), users)
	for _, tc := range []struct {
		name, input, want string
	}{
		{"unauthenticated", "PING\nGET\tk\nPUT\tk\t-\t-\tv\nSTATS\n", "PONG\nERR auth required\nERR auth required\nERR auth required\n"},
		{"bad password", "AUTH\tadmin\twrong\nGET\tk\n", "ERR invalid username or password\nERR auth required\n"},
		{"unknown user", "AUTH\tnobody\ts3cret\n", "ERR invalid username or password\n"},
		{"admin", "AUTH\tadmin\ts3cret\nPUT\tk\t-\tt\tv\nGET\tk\nINV_TAG\tt\nFLUSH\n", "OK\nOK\nVALUE v\nINV_TAG 1\nOK\n"},
		{"reader", "AUTH\treader\tpw\twith tab\nGET\tk\nPUT\tk\t-\t-\tv\nINV_TAG\tt\nFLUSH\n",
			"OK\nNF\nERR permission denied\nERR permission denied\nERR permission denied\n"},
		{"purger", "AUTH\tpurger\tp\nINV_TAG\tt\nDEL\tk\nINCR\tn\n", "OK\nINV_TAG 0\nERR permission denied\nERR permission denied\n"},
		{"missing password", "AUTH\tadmin\n", "ERR wrong number of arguments\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := run(t, app, true, defaultLimits, tc.input); got != tc.want {
				t.Fatalf("replies:\n%q\nwant:\n%q", got, tc.want)
			}
		})
	}
}

// FuzzSession feeds arbitrary input to a session: it must not panic, must
// answer every non-empty complete line with exactly one reply line, and
// every reply must be one the protocol defines.
func FuzzSession(f *testing.F) {
	for _, seed := range []string{
		"PUT\tuser:1\t60000\tusers,trial\thello world\nGET\tuser:1\n",
		"ADD\tk\t-\t-\t1\nINCR\tk\t5\nDECR\tk\nINV_TAG\tt\nKEYS\tt\n",
		"STATS\nFLUSH\nTTL\tk\nTOUCH\tk\t5\nTAGS_OF\tk\nAUTH\tu\tp\nPING\n",
		"GET\t" + strings.Repeat("x", 300) + "\nDEL\tk\n\r\n\n",
		"put\tk\t-1\t,,\t\tv\nINCR\tk\t9223372036854775807\nINCR\tk\n",
	} {
		f.Add(seed)
	}
	prefixes := []string{"OK", "ADDED", "EXISTS", "VALUE ", "NF", "DEL ok", "DEL nf", "INV_TAG ", "KEYS ", "STATS ", "PONG", "TTL ", "TAGS ", "ERR "}
	f.Fuzz(func(t *testing.T, input string) {
		app := testutil.NewApp(newStore(t, nil), noUsers(t))
		limits := listeners.Limits{MaxLineLength: 256, MaxValueSize: 128}
		got := run(t, app, false, limits, input)

		lines := 0
		complete := input[:strings.LastIndexByte(input, '\n')+1]
		for _, l := range strings.Split(complete, "\n") {
			if strings.TrimSuffix(l, "\r") != "" {
				lines++
			}
		}
		replies := strings.Split(strings.TrimSuffix(got, "\n"), "\n")
		if got == "" {
			replies = nil
		}
		if len(replies) != lines {
			t.Fatalf("%d non-empty lines got %d replies: %q", lines, len(replies), got)
		}
		for _, r := range replies {
			ok := false
			for _, p := range prefixes {
				ok = ok || strings.HasPrefix(r, p)
			}
			if !ok {
				t.Fatalf("reply %q is not one of the protocol's", r)
			}
		}
	})
}

func BenchmarkGet(b *testing.B) {
	for _, size := range []int{32, 1024} {
		b.Run(fmt.Sprintf("value=%d", size), func(b *testing.B) {
			st := newStore(b, nil)
			if _, err := st.Set("bench:key:0001", bytes.Repeat([]byte("v"), size), store.Params{Tags: []string{"t"}}); err != nil {
				b.Fatal(err)
			}
			c := &client{w: bufio.NewWriterSize(discard{}, 64<<10)}
			c.s = listeners.NewSession(nil, bufio.NewReader(strings.NewReader("")), c.w, st, testutil.NewApp(st, nil), false)
			c.s.Limits = defaultLimits
			line := []byte("GET\tbench:key:0001")
			b.ReportAllocs()
			for b.Loop() {
				c.exec(line)
			}
		})
	}
}

func BenchmarkPut(b *testing.B) {
	st := newStore(b, nil)
	c := &client{w: bufio.NewWriterSize(discard{}, 64<<10)}
	c.s = listeners.NewSession(nil, bufio.NewReader(strings.NewReader("")), c.w, st, testutil.NewApp(st, nil), false)
	c.s.Limits = defaultLimits
	line := []byte("PUT\tbench:key:0001\t60000\ta,b\t" + strings.Repeat("v", 32))
	b.ReportAllocs()
	for b.Loop() {
		c.exec(line)
	}
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

// BenchmarkPipeGet runs GETs through a whole session over net.Pipe, in
// batches of depth pipelined commands, counting the allocations of both
// ends.
func BenchmarkPipeGet(b *testing.B) {
	for _, depth := range []int{1, 16} {
		b.Run(fmt.Sprintf("pipeline=%d", depth), func(b *testing.B) {
			st := newStore(b, nil)
			if _, err := st.Set("bench:key:0001", bytes.Repeat([]byte("v"), 32), store.Params{}); err != nil {
				b.Fatal(err)
			}
			server, client := net.Pipe()
			s := listeners.NewSession(server, bufio.NewReaderSize(server, 8<<10), bufio.NewWriterSize(server, 8<<10), st, testutil.NewApp(st, nil), false)
			s.Limits = defaultLimits
			done := make(chan error, 1)
			go func() { done <- (Protocol{}).Serve(s) }()

			batch := []byte(strings.Repeat("GET\tbench:key:0001\n", depth))
			reply := "VALUE " + strings.Repeat("v", 32) + "\n"
			r := bufio.NewReader(client)
			b.ReportAllocs()
			for b.Loop() {
				if _, err := client.Write(batch); err != nil {
					b.Fatal(err)
				}
				for range depth {
					line, err := r.ReadSlice('\n')
					if err != nil || string(line) != reply {
						b.Fatalf("read %q, %v", line, err)
					}
				}
			}
			b.StopTimer()
			client.Close()
			<-done
		})
	}
}

func TestSave(t *testing.T) {
	app := testutil.NewApp(newStore(t, nil), noUsers(t))
	if got := run(t, app, false, defaultLimits, "SAVE\n"); got != "ERR no snapshot configured\n" {
		t.Fatalf("SAVE without a snapshot = %q", got)
	}
	app.SnapshotDir = t.TempDir()
	if got := run(t, app, false, defaultLimits, "PUT\ta\t-\tt\t1\nPUT\tb\t-\t-\t2\nSAVE\n"); got != "OK\nOK\nSAVE 2\n" {
		t.Fatalf("SAVE = %q", got)
	}
	loaded := newStore(t, nil)
	if st, err := loaded.LoadFile(filepath.Join(app.SnapshotDir, "default.snap")); err != nil || st.Entries != 2 {
		t.Fatalf("the file SAVE wrote: %+v, %v", st, err)
	}
}
