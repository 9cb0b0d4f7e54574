package resp

import (
	"bufio"
	"bytes"
	"io"
	"strings"
	"testing"

	"github.com/tagcache/caddy-tagcache/listeners"
	"github.com/tagcache/caddy-tagcache/store"
)

// benchServe runs b.N pipelined copies of cmd through a connection whose
// replies are discarded: the cost of parsing, dispatch, the store and
// encoding, without the network.
func benchServe(b *testing.B, cmd string, setup func(*store.Store)) {
	st, err := store.New(store.Config{})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	if setup != nil {
		setup(st)
	}
	app := &fakeApp{stores: map[string]*store.Store{"default": st}}
	input := bytes.Repeat([]byte(cmd), b.N)
	s := listeners.NewSession(nil, bufio.NewReaderSize(bytes.NewReader(input), 16<<10), bufio.NewWriterSize(io.Discard, 16<<10), st, app, false)
	c := newConn(s)
	defer c.Close()
	b.SetBytes(int64(len(cmd)))
	b.ReportAllocs()
	b.ResetTimer()
	if err := c.Serve(); err != nil {
		b.Fatal(err)
	}
}

func BenchmarkGet(b *testing.B) {
	benchServe(b, encode("GET", "key:000000000042"), func(st *store.Store) {
		st.Set("key:000000000042", []byte(strings.Repeat("x", 100)), store.Params{})
	})
}

func BenchmarkGetMiss(b *testing.B) { benchServe(b, encode("GET", "key:000000000042"), nil) }

func BenchmarkSet(b *testing.B) {
	benchServe(b, encode("SET", "key:000000000042", strings.Repeat("x", 100)), nil)
}

func BenchmarkIncr(b *testing.B) { benchServe(b, encode("INCR", "counter"), nil) }

func BenchmarkMSet(b *testing.B) {
	args := []string{"MSET"}
	for i := range 10 {
		args = append(args, "key:00000000000"+string(rune('0'+i)), "xxx")
	}
	benchServe(b, encode(args...), nil)
}

func BenchmarkInlinePing(b *testing.B) { benchServe(b, "PING\r\n", nil) }

// framedBench is a connection answering batches of one command as an
// event loop does: as many copies as fit in the read buffer, each
// measured by FrameLength and answered by ServeCommand, with one flush per
// batch.
type framedBench struct {
	fc    listeners.FramedConn
	s     *listeners.Session
	src   *bytes.Reader
	batch []byte
}

func newFramedBench(tb testing.TB, cfg store.Config, cmd string, setup func(*store.Store)) *framedBench {
	st, err := store.New(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(st.Close)
	if setup != nil {
		setup(st)
	}
	app := &fakeApp{stores: map[string]*store.Store{"default": st}}
	batch := bytes.Repeat([]byte(cmd), max(1, 8<<10/len(cmd)))
	src := bytes.NewReader(batch)
	s := listeners.NewSession(nil, bufio.NewReaderSize(src, 8<<10), bufio.NewWriterSize(io.Discard, 8<<10), st, app, false)
	fc := new(Protocol).NewFramedConn(s)
	tb.Cleanup(fc.Close)
	return &framedBench{fc: fc, s: s, src: src, batch: batch}
}

// serve answers the next command, reading a new batch when the last is
// used up.
func (f *framedBench) serve(tb testing.TB) {
	if f.s.R.Buffered() == 0 {
		f.s.W.Flush()
		f.src.Reset(f.batch)
		f.s.R.Peek(1)
	}
	buf, _ := f.s.R.Peek(f.s.R.Buffered())
	if n := f.fc.FrameLength(buf); n <= 0 || n > len(buf) {
		tb.Fatalf("FrameLength(%.40q) = %d", buf, n)
	}
	if err := f.fc.ServeCommand(); err != nil {
		tb.Fatal(err)
	}
}

func benchServeCommand(b *testing.B, cmd string, setup func(*store.Store)) {
	f := newFramedBench(b, store.Config{}, cmd, setup)
	b.SetBytes(int64(len(cmd)))
	b.ReportAllocs()
	for b.Loop() {
		f.serve(b)
	}
}

const (
	benchKey     = "key:000000000042"
	benchValue32 = "0123456789abcdef0123456789abcdef"
)

func setBenchKey(st *store.Store) { st.Set(benchKey, []byte(strings.Repeat("x", 100)), store.Params{}) }

func BenchmarkServeCommandGet(b *testing.B) {
	benchServeCommand(b, encode("GET", benchKey), setBenchKey)
}

func BenchmarkServeCommandSet(b *testing.B) {
	benchServeCommand(b, encode("SET", benchKey, benchValue32), nil)
}

func BenchmarkServeCommandIncr(b *testing.B) { benchServeCommand(b, encode("INCR", "counter"), nil) }

// TestServeCommandAllocs checks that answering GET, SET, INCR and an
// inline PING from an event loop allocates nothing but what the store
// itself allocates for a write (the new entry's key and value).
func TestServeCommandAllocs(t *testing.T) {
	// No background sweep, which could allocate while allocations are
	// counted.
	cfg := store.Config{SweepInterval: -1}
	st, err := store.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	value := []byte(benchValue32)
	storeSet := testing.AllocsPerRun(100, func() { st.Set(benchKey, value, store.Params{}) })
	storeIncr := testing.AllocsPerRun(100, func() { st.IncrBy("counter", 1, store.Params{}) })
	for _, tc := range []struct {
		cmd   string
		setup func(*store.Store)
		store float64
	}{
		{encode("GET", benchKey), setBenchKey, 0},
		{encode("SET", benchKey, benchValue32), nil, storeSet},
		{encode("INCR", "counter"), nil, storeIncr},
		{"PING\r\n", nil, 0},
	} {
		f := newFramedBench(t, cfg, tc.cmd, tc.setup)
		// Counted one command at a time: AllocsPerRun rounds the
		// average down, which would hide an allocation made once per
		// batch.
		const commands = 500
		got := 0.0
		for range commands {
			got += testing.AllocsPerRun(1, func() { f.serve(t) })
		}
		if got != tc.store*commands {
			t.Errorf("%q: %v allocations in %d commands, the store's own are %v per command", tc.cmd, got, commands, tc.store)
		}
	}
}
