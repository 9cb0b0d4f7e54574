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
