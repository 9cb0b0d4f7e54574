package main

import (
	"bufio"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tagcache/caddy-tagcache/internal/testutil"
	"github.com/tagcache/caddy-tagcache/listeners"
	"github.com/tagcache/caddy-tagcache/listeners/tabproto"
	"github.com/tagcache/caddy-tagcache/store"
)

func TestHistogramQuantiles(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var h histogram
	samples := make([]time.Duration, 100000)
	for i := range samples {
		// Log-uniform between 1us and 100ms, like real latencies.
		samples[i] = time.Duration(1e3 * math.Pow(10, rng.Float64()*5))
		h.record(samples[i])
	}
	slices.Sort(samples)
	for _, q := range []float64{0.5, 0.9, 0.99, 0.999} {
		want := samples[int(q*float64(len(samples)))-1]
		got := h.quantile(q)
		if diff := float64(got-want) / float64(want); diff < -0.02 || diff > 0.02 {
			t.Errorf("p%g = %v; want %v within 2%%", q*100, got, want)
		}
	}
	if h.max != samples[len(samples)-1] {
		t.Errorf("max = %v; want %v", h.max, samples[len(samples)-1])
	}
	for i := range 200 {
		if v := bucketValue(bucketOf(uint64(i))); i < 128 && v != uint64(i) {
			t.Errorf("bucketValue(bucketOf(%d)) = %d; want exact below 128", i, v)
		}
	}
}

func TestParseFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"-proto", "redis"}, "-proto must be tab or memcached"},
		{[]string{"-ratio", "1-10"}, "-ratio must be"},
		{[]string{"-ratio", "0:0"}, "-ratio must be"},
		{[]string{"-conns", "0"}, "-conns must be"},
		{[]string{"-duration", "2h"}, "-duration must be"},
		{[]string{"-pipeline", "0"}, "-pipeline must be"},
		{[]string{"extra"}, "unexpected arguments"},
	} {
		if _, err := parseFlags(tc.args, io.Discard); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("parseFlags(%q) = %v; want an error containing %q", tc.args, err, tc.want)
		}
	}
	cfg, err := parseFlags([]string{"-proto", "memcached", "-ratio", "1:4", "-pipeline", "16"}, io.Discard)
	if err != nil || cfg.sets != 1 || cfg.gets != 4 || cfg.pipeline != 16 || cfg.protoName != "memcached" {
		t.Errorf("parseFlags = %+v, %v", cfg, err)
	}
}

// serve accepts connections on a loopback port and runs handle on each
// until the test ends.
func serve(t *testing.T, handle func(net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				handle(c)
			}()
		}
	}()
	return ln.Addr().String()
}

func checkRun(t *testing.T, cfg config) *result {
	t.Helper()
	var log strings.Builder
	res, err := run(cfg, &log)
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	var out strings.Builder
	res.print(&out, cfg)
	t.Logf("%s%s", log.String(), out.String())
	if res.errors != 0 || res.sets == 0 || res.gets == 0 || res.hist.total != res.sets+res.gets {
		t.Fatalf("result %+v; want sets and gets without errors, each timed", res)
	}
	if res.misses != 0 || res.hits != res.gets {
		t.Errorf("%d hits, %d misses; want every get to hit after the prefill", res.hits, res.misses)
	}
	if !strings.Contains(out.String(), "latency us  p50 ") {
		t.Errorf("output lacks the latency line:\n%s", out.String())
	}
	return res
}

func TestRunTab(t *testing.T) {
	st, err := store.New(store.Config{SweepInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	addr := serve(t, func(c net.Conn) {
		s := listeners.NewSession(c, bufio.NewReader(c), bufio.NewWriter(c), st, testutil.NewApp(st, nil), false)
		s.Limits = listeners.Limits{MaxLineLength: 1 << 20, MaxValueSize: 1 << 20}
		tabproto.Protocol{}.Serve(s)
	})
	checkRun(t, config{addr: addr, proto: tab{}, protoName: "tab", conns: 4, duration: 200 * time.Millisecond,
		keys: 100, valueSize: 100, sets: 1, gets: 3, pipeline: 8, prefill: true})
	if st.Stats().Items != 100 {
		t.Errorf("the store has %d items; want the 100 keys", st.Stats().Items)
	}
}

// fakeMemcached answers set and get in memcached's text protocol, with a
// CAS field in VALUE lines as `gets` would send, to exercise the parser.
func fakeMemcached(c net.Conn, mu *sync.Mutex, data map[string][]byte) {
	r, w := bufio.NewReader(c), bufio.NewWriter(c)
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		f := strings.Fields(line)
		switch {
		case len(f) == 5 && f[0] == "set":
			var n int
			fmt.Sscan(f[4], &n)
			buf := make([]byte, n+2)
			if _, err := io.ReadFull(r, buf); err != nil {
				return
			}
			mu.Lock()
			data[f[1]] = buf[:n]
			mu.Unlock()
			w.WriteString("STORED\r\n")
		case len(f) == 2 && f[0] == "get":
			mu.Lock()
			v, ok := data[f[1]]
			mu.Unlock()
			if ok {
				fmt.Fprintf(w, "VALUE %s 0 %d 7\r\n%s\r\n", f[1], len(v), v)
			}
			w.WriteString("END\r\n")
		default:
			w.WriteString("ERROR\r\n")
		}
		if r.Buffered() == 0 {
			w.Flush()
		}
	}
}

func TestRunMemcached(t *testing.T) {
	var mu sync.Mutex
	data := make(map[string][]byte)
	addr := serve(t, func(c net.Conn) { fakeMemcached(c, &mu, data) })
	checkRun(t, config{addr: addr, proto: memcached{}, protoName: "memcached", conns: 3, duration: 200 * time.Millisecond,
		keys: 50, valueSize: 1024, sets: 1, gets: 10, pipeline: 1, prefill: true})
}

func TestErrorRepliesCounted(t *testing.T) {
	addr := serve(t, func(c net.Conn) {
		r := bufio.NewReader(c)
		for {
			if _, err := r.ReadString('\n'); err != nil {
				return
			}
			io.WriteString(c, "ERR nope\n")
		}
	})
	res, err := run(config{addr: addr, proto: tab{}, protoName: "tab", conns: 1, duration: 50 * time.Millisecond,
		keys: 10, valueSize: 1, sets: 0, gets: 1, pipeline: 1}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if res.errors == 0 || res.errors != res.gets || res.firstError == nil || !strings.Contains(res.firstError.Error(), "ERR nope") {
		t.Errorf("%d errors of %d gets, first %v; want every get counted as an error", res.errors, res.gets, res.firstError)
	}
}
