// Command tagload fills a cache with many tagged keys and measures a tag
// purge under read load, for bench/compare.sh.
//
//	tagload fill -proto memcached -addr 127.0.0.1:11211 -keys 1000000 -value 100
//	tagload purge -addr 127.0.0.1:1984 -keys 1000000 -tags 1000 -hot-every 10 -rounds 3
//
// Keys are 16 bytes, "key:" and twelve digits. With -tags T, key i carries
// the tag "t<i mod T>"; with -hot-every H, every H-th key also carries the
// tag "hot". fill sets every key once, pipelined over a few connections,
// and checks every reply. purge (tab protocol) fills, then for each round
// runs gets from many connections, invalidates "hot" in the middle of the
// run from one more connection, and prints one line of key=value fields:
// the purge time as the client saw it, and the get latencies before the
// purge and of the gets in flight while it ran.
package main

import (
	"bufio"
	"bytes"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/tagcache/caddy-tagcache/internal/lineclient"
)

// hotTag is the tag carried by every -hot-every'th key, the one purge
// invalidates.
const hotTag = "hot"

type keySpace struct {
	keys     int
	tags     int
	hotEvery int
	value    []byte
}

func (ks *keySpace) key(buf []byte, i int) []byte {
	buf = append(buf[:0], "key:"...)
	s := strconv.Itoa(i)
	for range 12 - len(s) {
		buf = append(buf, '0')
	}
	return append(buf, s...)
}

// tagList appends key i's tags, comma-separated, to buf; nothing if it has
// none.
func (ks *keySpace) tagList(buf []byte, i int) []byte {
	if ks.tags > 0 {
		buf = append(buf, 't')
		buf = strconv.AppendInt(buf, int64(i%ks.tags), 10)
	}
	if ks.isHot(i) {
		if ks.tags > 0 {
			buf = append(buf, ',')
		}
		buf = append(buf, hotTag...)
	}
	return buf
}

func (ks *keySpace) isHot(i int) bool { return ks.hotEvery > 0 && i%ks.hotEvery == 0 }

func (ks *keySpace) hotKeys() int {
	if ks.hotEvery == 0 {
		return 0
	}
	return (ks.keys + ks.hotEvery - 1) / ks.hotEvery
}

// setter writes one set command and reads its reply.
type setter interface {
	writeSet(w *bufio.Writer, key, tags, value []byte)
	readSet(r *bufio.Reader) error
}

type tabProto struct{}

func (tabProto) writeSet(w *bufio.Writer, key, tags, value []byte) {
	w.WriteString("PUT\t")
	w.Write(key)
	w.WriteString("\t-\t")
	if len(tags) == 0 {
		w.WriteByte('-')
	}
	w.Write(tags)
	w.WriteByte('\t')
	w.Write(value)
	w.WriteByte('\n')
}

func (tabProto) readSet(r *bufio.Reader) error { return lineclient.Expect(r, "OK") }

type memcachedProto struct{}

func (memcachedProto) writeSet(w *bufio.Writer, key, tags, value []byte) {
	w.WriteString("set ")
	w.Write(key)
	w.WriteString(" 0 0 ")
	w.WriteString(strconv.Itoa(len(value)))
	if len(tags) > 0 {
		w.WriteString(" tags=")
		w.Write(tags)
	}
	w.WriteString("\r\n")
	w.Write(value)
	w.WriteString("\r\n")
}

func (memcachedProto) readSet(r *bufio.Reader) error { return lineclient.Expect(r, "STORED") }

type conn struct {
	net.Conn
	r *bufio.Reader
	w *bufio.Writer
}

func dial(addr string) (*conn, error) {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return nil, err
	}
	return &conn{Conn: c, r: bufio.NewReaderSize(c, 64<<10), w: bufio.NewWriterSize(c, 64<<10)}, nil
}

// fill sets the keys i for which want(i) is true, in pipelined batches over
// conns connections, and returns how many it set.
func fill(addr string, proto setter, ks *keySpace, conns int, want func(int) bool) (int, error) {
	const batch = 500
	deadline := time.Now().Add(10 * time.Minute)
	var wg sync.WaitGroup
	errs := make([]error, conns)
	counts := make([]int, conns)
	for c := range conns {
		wg.Go(func() {
			cn, err := dial(addr)
			if err != nil {
				errs[c] = err
				return
			}
			defer cn.Close()
			cn.SetDeadline(deadline)
			var key, tags []byte
			for lo := c * batch; lo < ks.keys; lo += conns * batch {
				sent := 0
				for i := lo; i < min(lo+batch, ks.keys); i++ {
					if !want(i) {
						continue
					}
					key = ks.key(key, i)
					tags = ks.tagList(tags[:0], i)
					proto.writeSet(cn.w, key, tags, ks.value)
					sent++
				}
				if err := cn.w.Flush(); err != nil {
					errs[c] = err
					return
				}
				for range sent {
					if err := proto.readSet(cn.r); err != nil {
						errs[c] = err
						return
					}
				}
				counts[c] += sent
			}
		})
	}
	wg.Wait()
	total := 0
	for _, n := range counts {
		total += n
	}
	return total, errors.Join(errs...)
}

// sample is one get: when it was sent, relative to the round's start, and
// how long its reply took.
type sample struct {
	start, latency time.Duration
}

// getLoad sends gets for random keys on one connection until stop is
// closed, one at a time, and returns its samples.
func getLoad(cn *conn, ks *keySpace, seed uint64, t0 time.Time, stop <-chan struct{}) ([]sample, error) {
	rng := rand.New(rand.NewPCG(seed, 0x5eed))
	samples := make([]sample, 0, 1<<16)
	var key []byte
	for {
		select {
		case <-stop:
			return samples, nil
		default:
		}
		key = ks.key(key, rng.IntN(ks.keys))
		start := time.Now()
		cn.w.WriteString("GET\t")
		cn.w.Write(key)
		cn.w.WriteByte('\n')
		if err := cn.w.Flush(); err != nil {
			return samples, err
		}
		line, err := lineclient.ReadLine(cn.r)
		if err != nil {
			return samples, err
		}
		if !bytes.HasPrefix(line, []byte("VALUE ")) && string(line) != "NF" {
			return samples, fmt.Errorf("GET: server replied %q", line)
		}
		samples = append(samples, sample{start: start.Sub(t0), latency: time.Since(start)})
	}
}

// latencies sums up a set of get latencies.
type latencies struct {
	n                  int
	p50, p99, p999, mx time.Duration
}

func summarize(ds []time.Duration) latencies {
	if len(ds) == 0 {
		return latencies{}
	}
	slices.Sort(ds)
	q := func(f float64) time.Duration { return ds[min(len(ds)-1, int(f*float64(len(ds))))] }
	return latencies{n: len(ds), p50: q(0.5), p99: q(0.99), p999: q(0.999), mx: ds[len(ds)-1]}
}

func us(d time.Duration) string { return strconv.FormatFloat(float64(d)/1e3, 'f', 1, 64) }

// purgeRound runs gets from conns connections for before, invalidates the
// hot tag, lets the gets run for after more, and prints the round's line.
func purgeRound(round int, addr string, ks *keySpace, conns int, before, after time.Duration) error {
	workers := make([]*conn, conns)
	for i := range workers {
		cn, err := dial(addr)
		if err != nil {
			return err
		}
		defer cn.Close()
		cn.SetDeadline(time.Now().Add(before + after + time.Minute))
		workers[i] = cn
	}
	purger, err := dial(addr)
	if err != nil {
		return err
	}
	defer purger.Close()
	purger.SetDeadline(time.Now().Add(before + after + time.Minute))

	t0 := time.Now()
	stop := make(chan struct{})
	results := make([][]sample, conns)
	errs := make([]error, conns)
	var wg sync.WaitGroup
	for i, cn := range workers {
		wg.Go(func() { results[i], errs[i] = getLoad(cn, ks, uint64(round*conns+i), t0, stop) })
	}

	time.Sleep(before)
	purgeStart := time.Since(t0)
	fmt.Fprintf(purger.w, "INV_TAG\t%s\n", hotTag)
	var line []byte
	if err = purger.w.Flush(); err == nil {
		line, err = lineclient.ReadLine(purger.r)
	}
	purgeEnd := time.Since(t0)
	time.Sleep(after)
	close(stop)
	wg.Wait()
	if err != nil {
		return fmt.Errorf("INV_TAG: %v", err)
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	invalidated, ok := bytes.CutPrefix(line, []byte("INV_TAG "))
	if !ok {
		return fmt.Errorf("INV_TAG: server replied %q", line)
	}
	if n, err := strconv.Atoi(string(invalidated)); err != nil || n != ks.hotKeys() {
		return fmt.Errorf("INV_TAG removed %s keys, want %d", invalidated, ks.hotKeys())
	}

	// Before: gets answered before the purge began, after a warm-up of a
	// fifth of that time. During: gets in flight at any moment of the purge.
	var base, during []time.Duration
	total := 0
	for _, samples := range results {
		total += len(samples)
		for _, s := range samples {
			end := s.start + s.latency
			switch {
			case end < purgeStart && s.start > before/5:
				base = append(base, s.latency)
			case s.start <= purgeEnd && end >= purgeStart:
				during = append(during, s.latency)
			}
		}
	}
	b, d := summarize(base), summarize(during)
	fmt.Printf("round=%d purge_ms=%.1f invalidated=%s gets_per_s=%.0f base_n=%d base_p50_us=%s base_p99_us=%s base_p999_us=%s during_n=%d during_p50_us=%s during_p99_us=%s during_max_us=%s\n",
		round, float64(purgeEnd-purgeStart)/1e6, invalidated, float64(total)/(before+after).Seconds(),
		b.n, us(b.p50), us(b.p99), us(b.p999), d.n, us(d.p50), us(d.p99), us(d.mx))
	return nil
}

func main() {
	if len(os.Args) < 2 || (os.Args[1] != "fill" && os.Args[1] != "purge") {
		fmt.Fprintln(os.Stderr, "usage: tagload fill|purge [flags]; tagload fill -h for the flags")
		os.Exit(2)
	}
	mode := os.Args[1]
	fs := flag.NewFlagSet("tagload "+mode, flag.ExitOnError)
	addr := fs.String("addr", "127.0.0.1:1984", "server address, host:port")
	protoName := fs.String("proto", "tab", "fill: protocol, tab or memcached (purge always uses tab)")
	keys := fs.Int("keys", 1_000_000, "number of keys")
	valueSize := fs.Int("value", 100, "value size in bytes")
	tags := fs.Int("tags", 0, "number of tags the keys are spread over (0: no tags)")
	hotEvery := fs.Int("hot-every", 0, "every n-th key also carries the tag \"hot\" (0: none)")
	fillConns := fs.Int("fill-conns", 8, "connections to fill with")
	conns := fs.Int("conns", 50, "purge: connections sending gets")
	rounds := fs.Int("rounds", 3, "purge: rounds (the hot keys are set again before each round after the first)")
	before := fs.Duration("before", 3*time.Second, "purge: gets sent before the purge")
	after := fs.Duration("after", 2*time.Second, "purge: gets sent after the purge")
	fs.Parse(os.Args[2:])

	var proto setter
	switch {
	case mode == "purge" || *protoName == "tab":
		proto = tabProto{}
	case *protoName == "memcached":
		proto = memcachedProto{}
	default:
		fatalf("-proto must be tab or memcached")
	}
	switch {
	case *keys < 1 || *keys > 100_000_000:
		fatalf("-keys must be between 1 and 100000000")
	case *valueSize < 0 || *valueSize > 1<<20:
		fatalf("-value must be between 0 and 1 MiB")
	case *tags < 0 || *hotEvery < 0:
		fatalf("-tags and -hot-every must not be negative")
	case *fillConns < 1 || *fillConns > 1000 || *conns < 1 || *conns > 1000:
		fatalf("-fill-conns and -conns must be between 1 and 1000")
	case *rounds < 1 || *rounds > 100:
		fatalf("-rounds must be between 1 and 100")
	case *before <= 0 || *after <= 0 || *before+*after > 10*time.Minute:
		fatalf("-before and -after must be positive and at most 10m together")
	case mode == "purge" && *hotEvery == 0:
		fatalf("purge needs -hot-every")
	}
	ks := &keySpace{keys: *keys, tags: *tags, hotEvery: *hotEvery, value: bytes.Repeat([]byte("v"), *valueSize)}

	start := time.Now()
	n, err := fill(*addr, proto, ks, *fillConns, func(int) bool { return true })
	if err != nil {
		fatalf("fill: %v", err)
	}
	elapsed := time.Since(start)
	fmt.Printf("filled=%d fill_s=%.2f fill_per_s=%.0f\n", n, elapsed.Seconds(), float64(n)/elapsed.Seconds())
	if mode == "fill" {
		return
	}
	for round := 1; round <= *rounds; round++ {
		if round > 1 {
			if _, err := fill(*addr, proto, ks, *fillConns, ks.isHot); err != nil {
				fatalf("refill of the hot keys: %v", err)
			}
		}
		if err := purgeRound(round, *addr, ks, *conns, *before, *after); err != nil {
			fatalf("round %d: %v", round, err)
		}
	}
}

func fatalf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "tagload: "+format+"\n", args...)
	os.Exit(1)
}
