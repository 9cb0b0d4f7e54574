// Command tagcache-bench is a load generator for the tab-delimited TagCache
// protocol and memcached's text protocol. It opens a number of connections,
// sends a mix of sets and gets over a key space for a fixed time, in
// pipelined batches, and prints the throughput and latency percentiles:
//
//	tagcache-bench -proto memcached -addr 127.0.0.1:11211 -conns 50 -duration 10s -ratio 1:10 -value 32 -pipeline 1
//
// The latency of an operation is the time from writing its batch to
// reading its reply. With -server-pid it also reports the CPU time the
// server process spent per operation (from /proc), so that two servers can
// be compared on the same machine.
package main

import (
	"bufio"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/tagcache/caddy-tagcache/internal/lineclient"
)

type config struct {
	addr      string
	proto     protocol
	protoName string
	conns     int
	duration  time.Duration
	keys      int
	valueSize int
	sets      int // sets per sets+gets
	gets      int
	pipeline  int
	prefill   bool
	auth      string
	useTLS    bool
	serverPID int
}

func main() {
	cfg, err := parseFlags(os.Args[1:], os.Stderr)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		fmt.Fprintln(os.Stderr, "tagcache-bench:", err)
		os.Exit(2)
	}
	res, err := run(cfg, os.Stdout)
	if err != nil {
		fmt.Fprintln(os.Stderr, "tagcache-bench:", err)
		os.Exit(1)
	}
	res.print(os.Stdout, cfg)
	if res.errors > 0 {
		os.Exit(1)
	}
}

func parseFlags(args []string, stderr io.Writer) (config, error) {
	fs := flag.NewFlagSet("tagcache-bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cfg config
	var ratio string
	fs.StringVar(&cfg.addr, "addr", "127.0.0.1:1984", "server address, host:port")
	fs.StringVar(&cfg.protoName, "proto", "tab", "protocol: tab (TagCache tab-delimited) or memcached (text)")
	fs.IntVar(&cfg.conns, "conns", 50, "number of connections")
	fs.DurationVar(&cfg.duration, "duration", 10*time.Second, "how long to send load (at most 1h)")
	fs.IntVar(&cfg.keys, "keys", 10000, "number of distinct keys")
	fs.IntVar(&cfg.valueSize, "value", 32, "value size in bytes")
	fs.StringVar(&ratio, "ratio", "1:10", "sets:gets ratio, e.g. 1:10, 1:0 (sets only), 0:1 (gets only)")
	fs.IntVar(&cfg.pipeline, "pipeline", 1, "requests sent per batch on a connection before reading the replies")
	fs.BoolVar(&cfg.prefill, "prefill", true, "set every key once before the timed run, so that gets hit")
	fs.StringVar(&cfg.auth, "auth", "", "user:password to authenticate each connection with")
	fs.BoolVar(&cfg.useTLS, "tls", false, "connect with TLS, without verifying the server's certificate")
	fs.IntVar(&cfg.serverPID, "server-pid", 0, "pid of the server process, to report its CPU time per operation (Linux /proc)")
	if err := fs.Parse(args); err != nil {
		return cfg, err
	}
	if fs.NArg() > 0 {
		return cfg, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	var ok bool
	if cfg.proto, ok = protocols[cfg.protoName]; !ok {
		return cfg, fmt.Errorf("-proto must be tab or memcached, got %q", cfg.protoName)
	}
	sets, gets, found := strings.Cut(ratio, ":")
	var err1, err2 error
	cfg.sets, err1 = strconv.Atoi(sets)
	cfg.gets, err2 = strconv.Atoi(gets)
	if !found || err1 != nil || err2 != nil || cfg.sets < 0 || cfg.gets < 0 || cfg.sets+cfg.gets == 0 {
		return cfg, fmt.Errorf("-ratio must be <sets>:<gets>, such as 1:10, got %q", ratio)
	}
	switch {
	case cfg.conns < 1 || cfg.conns > 10000:
		return cfg, fmt.Errorf("-conns must be between 1 and 10000")
	case cfg.duration <= 0 || cfg.duration > time.Hour:
		return cfg, fmt.Errorf("-duration must be positive and at most 1h")
	case cfg.keys < 1 || cfg.keys > 100_000_000:
		return cfg, fmt.Errorf("-keys must be between 1 and 100000000")
	case cfg.valueSize < 0 || cfg.valueSize > 64<<20:
		return cfg, fmt.Errorf("-value must be between 0 and 64 MiB")
	case cfg.pipeline < 1 || cfg.pipeline > 10000:
		return cfg, fmt.Errorf("-pipeline must be between 1 and 10000")
	}
	return cfg, nil
}

// result sums up the run of every connection.
type result struct {
	elapsed        time.Duration
	sets, gets     uint64
	hits, misses   uint64
	errors         uint64
	firstError     error
	hist           histogram
	serverCPU      time.Duration // -1 if not measured
	clientCPU      time.Duration
	prefilled      int
	prefillElapsed time.Duration
}

// worker is one connection.
type worker struct {
	conn net.Conn
	r    *bufio.Reader
	w    *bufio.Writer
	rng  *rand.Rand
	ops  []bool // the batch in flight: true for a set
	res  result
}

func run(cfg config, log io.Writer) (*result, error) {
	keys := make([][]byte, cfg.keys)
	for i := range keys {
		keys[i] = []byte("bench:" + strconv.Itoa(i))
	}
	value := make([]byte, cfg.valueSize)
	for i := range value {
		value[i] = 'a' + byte(i%26)
	}

	workers := make([]*worker, cfg.conns)
	for i := range workers {
		w, err := dial(cfg, uint64(i))
		if err != nil {
			for _, w := range workers[:i] {
				w.conn.Close()
			}
			return nil, fmt.Errorf("connection %d: %v", i+1, err)
		}
		defer w.conn.Close()
		workers[i] = w
	}

	total := &result{serverCPU: -1}
	if cfg.prefill {
		start := time.Now()
		if err := prefill(workers, cfg, keys, value); err != nil {
			return nil, fmt.Errorf("prefill: %v", err)
		}
		total.prefilled, total.prefillElapsed = len(keys), time.Since(start)
	}

	fmt.Fprintf(log, "tagcache-bench: %s on %s, %d connections, pipeline %d, %d keys, %d-byte values, sets:gets %d:%d, %s\n",
		cfg.protoName, cfg.addr, cfg.conns, cfg.pipeline, cfg.keys, cfg.valueSize, cfg.sets, cfg.gets, cfg.duration)

	serverBefore, serverErr := processCPU(cfg.serverPID)
	clientBefore := selfCPU()
	start := time.Now()
	end := start.Add(cfg.duration)
	var wg sync.WaitGroup
	for _, w := range workers {
		// A server that stops answering cannot hold the run past this.
		w.conn.SetDeadline(end.Add(10 * time.Second))
		wg.Add(1)
		go func() {
			defer wg.Done()
			w.load(cfg, keys, value, end)
		}()
	}
	wg.Wait()
	total.elapsed = time.Since(start)
	total.clientCPU = selfCPU() - clientBefore
	if serverAfter, err := processCPU(cfg.serverPID); cfg.serverPID > 0 && err == nil && serverErr == nil {
		total.serverCPU = serverAfter - serverBefore
	}
	for _, w := range workers {
		r := &w.res
		total.sets += r.sets
		total.gets += r.gets
		total.hits += r.hits
		total.misses += r.misses
		total.errors += r.errors
		if total.firstError == nil {
			total.firstError = r.firstError
		}
		total.hist.merge(&r.hist)
	}
	return total, nil
}

func dial(cfg config, seed uint64) (*worker, error) {
	d := net.Dialer{Timeout: 5 * time.Second}
	var conn net.Conn
	var err error
	if cfg.useTLS {
		conn, err = tls.DialWithDialer(&d, "tcp", cfg.addr, &tls.Config{InsecureSkipVerify: true})
	} else {
		conn, err = d.Dial("tcp", cfg.addr)
	}
	if err != nil {
		return nil, err
	}
	w := &worker{
		conn: conn,
		r:    bufio.NewReaderSize(conn, 64<<10),
		w:    bufio.NewWriterSize(conn, 64<<10),
		rng:  rand.New(rand.NewPCG(seed, 0x7a6cac8e)),
		ops:  make([]bool, cfg.pipeline),
	}
	if cfg.auth != "" {
		user, password, _ := strings.Cut(cfg.auth, ":")
		conn.SetDeadline(time.Now().Add(10 * time.Second))
		cfg.proto.writeAuth(w.w, user, password)
		if err := w.w.Flush(); err != nil {
			conn.Close()
			return nil, err
		}
		if err := cfg.proto.readAuth(w.r); err != nil {
			conn.Close()
			return nil, fmt.Errorf("auth: %v", err)
		}
	}
	return w, nil
}

// prefill sets every key once, the key space split over the connections.
func prefill(workers []*worker, cfg config, keys [][]byte, value []byte) error {
	deadline := time.Now().Add(5 * time.Minute)
	errs := make(chan error, len(workers))
	for i, w := range workers {
		go func() {
			w.conn.SetDeadline(deadline)
			const batch = 100
			for lo := i * batch; lo < len(keys); lo += len(workers) * batch {
				hi := min(lo+batch, len(keys))
				for _, k := range keys[lo:hi] {
					cfg.proto.writeSet(w.w, k, value)
				}
				if err := w.w.Flush(); err != nil {
					errs <- err
					return
				}
				for range hi - lo {
					if err := cfg.proto.readSet(w.r); err != nil {
						errs <- err
						return
					}
				}
			}
			errs <- nil
		}()
	}
	var first error
	for range workers {
		if err := <-errs; err != nil && first == nil {
			first = err
		}
	}
	return first
}

// load sends batches until end.
func (w *worker) load(cfg config, keys [][]byte, value []byte, end time.Time) {
	r := &w.res
	share := uint64(cfg.sets + cfg.gets)
	for time.Now().Before(end) {
		for i := range w.ops {
			set := w.rng.Uint64N(share) < uint64(cfg.sets)
			w.ops[i] = set
			key := keys[w.rng.IntN(len(keys))]
			if set {
				cfg.proto.writeSet(w.w, key, value)
			} else {
				cfg.proto.writeGet(w.w, key)
			}
		}
		sent := time.Now()
		if err := w.w.Flush(); err != nil {
			w.fail(err)
			return
		}
		for _, set := range w.ops {
			var err error
			if set {
				r.sets++
				err = cfg.proto.readSet(w.r)
			} else {
				r.gets++
				var hit bool
				hit, err = cfg.proto.readGet(w.r)
				if err == nil && hit {
					r.hits++
				} else if err == nil {
					r.misses++
				}
			}
			r.hist.record(time.Since(sent))
			if err != nil {
				var reply lineclient.ReplyError
				if !errors.As(err, &reply) {
					w.fail(err)
					return
				}
				r.errors++
				if r.firstError == nil {
					r.firstError = err
				}
			}
		}
	}
}

// fail ends the worker on a connection error.
func (w *worker) fail(err error) {
	w.res.errors++
	if w.res.firstError == nil {
		w.res.firstError = err
	}
}

func (r *result) print(out io.Writer, cfg config) {
	ops := r.sets + r.gets
	secs := r.elapsed.Seconds()
	if r.prefilled > 0 {
		fmt.Fprintf(out, "prefill     %d keys in %s\n", r.prefilled, r.prefillElapsed.Round(time.Millisecond))
	}
	fmt.Fprintf(out, "ops         %d in %s: %.0f ops/s (sets %d, gets %d)\n", ops, r.elapsed.Round(time.Millisecond), float64(ops)/secs, r.sets, r.gets)
	fmt.Fprintf(out, "gets        %d hits, %d misses\n", r.hits, r.misses)
	fmt.Fprintf(out, "errors      %d", r.errors)
	if r.firstError != nil {
		fmt.Fprintf(out, " (first: %v)", r.firstError)
	}
	fmt.Fprintln(out)
	us := func(d time.Duration) string { return strconv.FormatFloat(float64(d)/1e3, 'f', 1, 64) }
	fmt.Fprintf(out, "latency us  p50 %s  p90 %s  p99 %s  p99.9 %s  max %s\n",
		us(r.hist.quantile(0.5)), us(r.hist.quantile(0.9)), us(r.hist.quantile(0.99)), us(r.hist.quantile(0.999)), us(r.hist.max))
	if ops > 0 {
		fmt.Fprintf(out, "client cpu  %.2fs, %.2f us/op\n", r.clientCPU.Seconds(), float64(r.clientCPU)/1e3/float64(ops))
		if r.serverCPU >= 0 {
			fmt.Fprintf(out, "server cpu  %.2fs, %.2f us/op (pid %d)\n", r.serverCPU.Seconds(), float64(r.serverCPU)/1e3/float64(ops), cfg.serverPID)
		}
	}
}

// selfCPU is the CPU time (user and system) this process has used.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// clockTicks is Linux's USER_HZ, the unit of CPU times in /proc.
const clockTicks = 100

// processCPU is the CPU time (user and system) process pid has used, from
// /proc/<pid>/stat.
func processCPU(pid int) (time.Duration, error) {
	if pid <= 0 {
		return 0, nil
	}
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name, field 2, is in parentheses and may hold spaces;
	// utime and stime are fields 14 and 15.
	i := strings.LastIndexByte(string(data), ')')
	if i < 0 {
		return 0, fmt.Errorf("malformed /proc/%d/stat", pid)
	}
	fields := strings.Fields(string(data[i+1:]))
	if len(fields) < 13 {
		return 0, fmt.Errorf("malformed /proc/%d/stat", pid)
	}
	utime, err1 := strconv.ParseInt(fields[11], 10, 64)
	stime, err2 := strconv.ParseInt(fields[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("malformed /proc/%d/stat", pid)
	}
	return time.Duration(utime+stime) * time.Second / clockTicks, nil
}
