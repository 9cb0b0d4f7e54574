package memcached

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"testing"

	"github.com/caddyserver/caddy/v2"

	"github.com/tagcache/caddy-tagcache/internal/testutil"
	"github.com/tagcache/caddy-tagcache/listeners"
	"github.com/tagcache/caddy-tagcache/store"
)

// The benchmarks run the same client over loopback against a harness
// server (tagcache) and, if it is installed, a real memcached, so the two
// can be compared in one run. The client reuses its buffers: -benchmem's
// allocations per operation are the server's (for tagcache; memcached's
// are not Go allocations).

// benchTargets returns the addresses to benchmark against.
func benchTargets(b *testing.B) map[string]string {
	targets := map[string]string{"tagcache": startServer(b, serverOptions{realClock: true}).addr}
	if haveMemcached() {
		targets["memcached"] = startMemcached(b)
	}
	return targets
}

// prepare stores the values a benchmark reads, through the protocol.
func prepare(b *testing.B, nc net.Conn, kv map[string][]byte) {
	b.Helper()
	for k, v := range kv {
		fmt.Fprintf(nc, "set %s 0 0 %d\r\n%s\r\n", k, len(v), v)
		got := make([]byte, len("STORED\r\n"))
		if _, err := io.ReadFull(nc, got); err != nil || string(got) != "STORED\r\n" {
			b.Fatalf("preparing %s: %q %v", k, got, err)
		}
	}
}

// roundTrips sends req b.N/batch times and reads the fixed-size reply.
func roundTrips(b *testing.B, addr string, req, reply []byte, batch int) {
	b.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		b.Fatal(err)
	}
	defer nc.Close()
	got := make([]byte, len(reply))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i += batch {
		if _, err := nc.Write(req); err != nil {
			b.Fatal(err)
		}
		if _, err := io.ReadFull(nc, got); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	if !bytes.Equal(got, reply) {
		b.Fatalf("got %q, want %q", got, reply)
	}
}

// benchEach runs fn against every target after storing kv there.
func benchEach(b *testing.B, kv map[string][]byte, fn func(b *testing.B, addr string)) {
	for name, addr := range benchTargets(b) {
		b.Run(name, func(b *testing.B) {
			nc, err := net.Dial("tcp", addr)
			if err != nil {
				b.Fatal(err)
			}
			prepare(b, nc, kv)
			nc.Close()
			fn(b, addr)
		})
	}
}

func BenchmarkGetHit(b *testing.B) {
	for _, size := range []int{32, 1024} {
		value := bytes.Repeat([]byte("v"), size)
		b.Run(fmt.Sprint(size), func(b *testing.B) {
			benchEach(b, map[string][]byte{"bench:key": value}, func(b *testing.B, addr string) {
				reply := fmt.Appendf(nil, "VALUE bench:key 0 %d\r\n%s\r\nEND\r\n", size, value)
				roundTrips(b, addr, []byte("get bench:key\r\n"), reply, 1)
			})
		})
	}
}

func BenchmarkSet(b *testing.B) {
	value := bytes.Repeat([]byte("v"), 32)
	benchEach(b, nil, func(b *testing.B, addr string) {
		req := fmt.Appendf(nil, "set bench:key 0 0 %d\r\n%s\r\n", len(value), value)
		roundTrips(b, addr, req, []byte("STORED\r\n"), 1)
	})
}

func BenchmarkMetaGetHit(b *testing.B) {
	value := bytes.Repeat([]byte("v"), 32)
	benchEach(b, map[string][]byte{"bench:key": value}, func(b *testing.B, addr string) {
		reply := fmt.Appendf(nil, "VA 32 f0\r\n%s\r\n", value)
		roundTrips(b, addr, []byte("mg bench:key v f\r\n"), reply, 1)
	})
}

func BenchmarkBinaryGetHit(b *testing.B) {
	value := bytes.Repeat([]byte("v"), 32)
	benchEach(b, map[string][]byte{"bench:key": value}, func(b *testing.B, addr string) {
		req := binReq{op: opGet, key: []byte("bench:key"), opaque: 1}.bytes()
		// The reply holds the entry's CAS: learn it from a first request.
		nc, err := net.Dial("tcp", addr)
		if err != nil {
			b.Fatal(err)
		}
		nc.Write(req)
		reply := make([]byte, headerLen+4+len(value))
		if _, err := io.ReadFull(nc, reply); err != nil {
			b.Fatal(err)
		}
		nc.Close()
		roundTrips(b, addr, req, reply, 1)
	})
}

// BenchmarkPipelinedGets sends 16 gets per write, as a pipelining client
// does; one operation is one get.
func BenchmarkPipelinedGets(b *testing.B) {
	const depth = 16
	kv := map[string][]byte{}
	var req, reply []byte
	for i := range depth {
		key := fmt.Sprintf("bench:%d", i)
		kv[key] = bytes.Repeat([]byte{'a' + byte(i)}, 32)
		req = fmt.Appendf(req, "get %s\r\n", key)
		reply = fmt.Appendf(reply, "VALUE %s 0 32\r\n%s\r\nEND\r\n", key, kv[key])
	}
	benchEach(b, kv, func(b *testing.B, addr string) {
		roundTrips(b, addr, req, reply, depth)
	})
}

// cyclicReader repeats data forever.
type cyclicReader struct {
	data []byte
	off  int
}

func (r *cyclicReader) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		c := copy(p[n:], r.data[r.off:])
		n += c
		r.off = (r.off + c) % len(r.data)
	}
	return n, nil
}

// BenchmarkServeCommand answers one request over and over as a listener's
// event loop does (FrameLength, ServeCommand, a flush), in process and
// without a socket: the allocations are the command's own.
func BenchmarkServeCommand(b *testing.B) {
	value := bytes.Repeat([]byte("v"), 32)
	for _, bc := range []struct{ name, req string }{
		{"get-hit", "get bench:key\r\n"},
		{"set-32", fmt.Sprintf("set bench:key 0 0 %d\r\n%s\r\n", len(value), value)},
		{"mg-hit", "mg bench:key v f\r\n"},
		{"ms-32", fmt.Sprintf("ms bench:key %d T0\r\n%s\r\n", len(value), value)},
		{"binary-get-hit", string(binReq{op: opGet, key: []byte("bench:key")}.bytes())},
		{"binary-set-32", string(binReq{op: opSet, key: []byte("bench:key"), extras: setExtras(0, 0), value: value}.bytes())},
	} {
		b.Run(bc.name, func(b *testing.B) {
			st, err := store.New(store.Config{SweepInterval: -1})
			if err != nil {
				b.Fatal(err)
			}
			defer st.Close()
			st.Set("bench:key", value, store.Params{})
			m := &Memcached{}
			m.Provision(caddy.Context{})
			r := bufio.NewReaderSize(&cyclicReader{data: []byte(bc.req)}, 8192)
			s := listeners.NewSession(fuzzConn{}, r, bufio.NewWriterSize(io.Discard, 8192), st, testutil.NewApp(st, nil), false)
			fc := m.NewFramedConn(s)
			defer fc.Close()
			b.ReportAllocs()
			for b.Loop() {
				if r.Buffered() < len(bc.req) {
					r.Peek(len(bc.req))
				}
				buf, _ := r.Peek(r.Buffered())
				if n := fc.FrameLength(buf); n != len(bc.req) {
					b.Fatalf("FrameLength = %d, want %d", n, len(bc.req))
				}
				if err := fc.ServeCommand(); err != nil {
					b.Fatal(err)
				}
				s.W.Flush()
			}
		})
	}
}
