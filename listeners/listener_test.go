package listeners

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/tagcache/caddy-tagcache/internal/testutil"
	"github.com/tagcache/caddy-tagcache/store"
)

// lineProtocol is a test protocol: it answers each line with "> line",
// except "PANIC", which panics, "SLOW", which blocks until release is
// closed before answering, "BLOB <n>", whose line is followed by n bytes of
// data, "REPEAT <n>", answered with n bytes, "BLOCK", after which an event
// loop hands the connection to a goroutine, and "CLOSE", which closes the
// connection through Session.Conn.
type lineProtocol struct {
	release chan struct{}
	slow    chan struct{} // gets a value when a SLOW command starts
}

func (p *lineProtocol) Serve(s *Session) error {
	for {
		if err := p.answer(s); err != nil && !errors.Is(err, ErrServeBlocking) {
			return err
		}
		if err := s.FlushIfIdle(); err != nil {
			return err
		}
	}
}

func (p *lineProtocol) answer(s *Session) error {
	line, err := s.R.ReadString('\n')
	if err != nil {
		return err
	}
	line = strings.TrimSuffix(line, "\n")
	cmd, arg, _ := strings.Cut(line, " ")
	n, _ := strconv.Atoi(arg)
	switch cmd {
	case "PANIC":
		panic("test panic")
	case "SLOW":
		p.slow <- struct{}{}
		<-p.release
	case "BLOB":
		if _, err := s.R.Discard(n); err != nil {
			return err
		}
	case "REPEAT":
		s.W.WriteString(strings.Repeat("r", n))
	case "CLOSE":
		s.Conn.Close()
	}
	s.W.WriteString("> " + line + "\n")
	s.CountCommand(line == "FAIL")
	if cmd == "BLOCK" {
		return ErrServeBlocking
	}
	return nil
}

// framedLineProtocol is lineProtocol served by the event loops.
type framedLineProtocol struct{ *lineProtocol }

func (p framedLineProtocol) NewFramedConn(s *Session) FramedConn {
	return &framedLine{p.lineProtocol, s}
}

type framedLine struct {
	p *lineProtocol
	s *Session
}

// loopCommands counts the commands answered by ServeCommand, which only
// an event loop calls.
var loopCommands atomic.Int64

func (c *framedLine) FrameLength(buf []byte) int {
	end := bytes.IndexByte(buf, '\n')
	if end < 0 {
		return 0
	}
	n := 0
	if arg, ok := bytes.CutPrefix(buf[:end], []byte("BLOB ")); ok {
		n, _ = strconv.Atoi(string(arg))
	}
	return end + 1 + n
}

func (c *framedLine) ServeCommand() error {
	loopCommands.Add(1)
	return c.p.answer(c.s)
}
func (c *framedLine) Serve() error { return c.p.Serve(c.s) }
func (c *framedLine) Close()       {}

// eachMode runs test with a goroutine per connection and with event loops
// (two, so that two clients are served by different loops).
func eachMode(t *testing.T, test func(t *testing.T, serve func(*lineProtocol) (Protocol, int))) {
	t.Run("goroutines", func(t *testing.T) {
		test(t, func(p *lineProtocol) (Protocol, int) { return p, -1 })
	})
	t.Run("loops", func(t *testing.T) {
		test(t, func(p *lineProtocol) (Protocol, int) { return framedLineProtocol{p}, 2 })
	})
}

func (*lineProtocol) BusyReply() []byte { return []byte("BUSY\n") }

// startListener serves p on a loopback port with the given limits; the
// listener is stopped at the end of the test.
func startListener(t *testing.T, p Protocol, loops int, maxConns int, idle time.Duration) *Listener {
	t.Helper()
	st, err := store.New(store.Config{SweepInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr, err := caddy.ParseNetworkAddress(ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	l := &Listener{
		MaxConnections: maxConns,
		EventLoops:     loops,
		addr:           addr,
		protocol:       p,
		protoName:      "test",
		app:            testutil.NewApp(st, nil),
		store:          st,
		idle:           idle,
		limits:         Limits{MaxLineLength: DefaultMaxLineLength, MaxValueSize: store.DefaultMaxItemSize},
		logger:         zap.NewNop(),
	}
	l.run(ln, nil)
	t.Cleanup(func() { l.Stop() })
	return l
}

type testClient struct {
	t    *testing.T
	conn net.Conn
	r    *bufio.Reader
}

func dial(t *testing.T, l *Listener) *testClient {
	t.Helper()
	c, err := net.Dial("tcp", l.ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	// Bounds every read so that a broken server fails the test rather
	// than hanging it.
	c.SetDeadline(time.Now().Add(20 * time.Second))
	return &testClient{t: t, conn: c, r: bufio.NewReader(c)}
}

func (c *testClient) send(s string) {
	c.t.Helper()
	if _, err := io.WriteString(c.conn, s); err != nil {
		c.t.Fatal(err)
	}
}

func (c *testClient) expect(want string) {
	c.t.Helper()
	got, err := c.r.ReadString('\n')
	if err != nil || got != want {
		c.t.Fatalf("read %q, %v; want %q", got, err, want)
	}
}

// expectClosed checks that the server closes the connection.
func (c *testClient) expectClosed() {
	c.t.Helper()
	if line, err := c.r.ReadString('\n'); !errors.Is(err, io.EOF) {
		c.t.Fatalf("read %q, %v; want the connection closed", line, err)
	}
}

func statsOf(t *testing.T, l *Listener) Stats {
	t.Helper()
	var found *Stats
	Range(func(st Stats) bool {
		if st.Protocol == l.protoName && st.Address == l.addr.String() {
			found = &st
			return false
		}
		return true
	})
	if found == nil {
		t.Fatalf("no stats for %s", l.addr)
	}
	return *found
}

func TestPipelinedCommandsAndStats(t *testing.T) {
	eachMode(t, func(t *testing.T, serve func(*lineProtocol) (Protocol, int)) {
		proto, loops := serve(&lineProtocol{})
		l := startListener(t, proto, loops, 10, time.Minute)
		c := dial(t, l)
		c.send("a\nFAIL\nc\n")
		c.expect("> a\n")
		c.expect("> FAIL\n")
		c.expect("> c\n")

		st := statsOf(t, l)
		if st.Commands != 3 || st.Errors != 1 || st.CurrentConnections != 1 || st.TotalConnections != 1 {
			t.Errorf("stats = %+v; want 3 commands, 1 error, 1 current and 1 total connection", st)
		}
		// Written bytes are counted once the write returns, which may be
		// after the client read them; the next command orders the two.
		c.send("d\n")
		c.expect("> d\n")
		if st := statsOf(t, l); st.BytesRead != 11 || st.BytesWritten < 15 {
			t.Errorf("stats count %d bytes read, %d written; want 11 and at least 15", st.BytesRead, st.BytesWritten)
		}
	})
}

func TestMaxConnections(t *testing.T) {
	eachMode(t, func(t *testing.T, serve func(*lineProtocol) (Protocol, int)) {
		proto, loops := serve(&lineProtocol{})
		l := startListener(t, proto, loops, 2, time.Minute)
		a, b := dial(t, l), dial(t, l)
		a.send("a\n")
		a.expect("> a\n")
		b.send("b\n")
		b.expect("> b\n")

		over := dial(t, l)
		over.expect("BUSY\n")
		over.expectClosed()
		if st := statsOf(t, l); st.RejectedConnections != 1 || st.CurrentConnections != 2 {
			t.Errorf("stats = %+v; want 1 rejected and 2 current connections", st)
		}

		// Once a client leaves, its slot is free again.
		a.conn.Close()
		for i := 0; ; i++ {
			c := dial(t, l)
			c.send("c\n")
			line, _ := c.r.ReadString('\n')
			if line == "> c\n" {
				break
			}
			if line != "BUSY\n" || i == 1000 {
				t.Fatalf("after a client left, a new one read %q; want it served", line)
			}
			time.Sleep(time.Millisecond)
		}
	})
}

func TestIdleTimeoutClosesIdleClient(t *testing.T) {
	eachMode(t, func(t *testing.T, serve func(*lineProtocol) (Protocol, int)) {
		proto, loops := serve(&lineProtocol{})
		l := startListener(t, proto, loops, 10, 50*time.Millisecond)
		c := dial(t, l)
		c.send("a\n")
		c.expect("> a\n")
		c.expectClosed()
	})
}

func TestPanicClosesOnlyThatConnection(t *testing.T) {
	eachMode(t, func(t *testing.T, serve func(*lineProtocol) (Protocol, int)) {
		proto, loops := serve(&lineProtocol{})
		l := startListener(t, proto, loops, 10, time.Minute)
		a, b := dial(t, l), dial(t, l)
		b.send("before\n")
		b.expect("> before\n")
		a.send("PANIC\n")
		a.expectClosed()
		b.send("after\n")
		b.expect("> after\n")
		c := dial(t, l)
		c.send("new\n")
		c.expect("> new\n")
	})
}

// TestStopAfterCurrentCommand stops a listener while a client's command is
// being answered: the client gets that reply, then the connection closes,
// and the port no longer accepts.
func TestStopAfterCurrentCommand(t *testing.T) {
	eachMode(t, func(t *testing.T, serve func(*lineProtocol) (Protocol, int)) {
		p := &lineProtocol{release: make(chan struct{}), slow: make(chan struct{}, 1)}
		proto, loops := serve(p)
		l := startListener(t, proto, loops, 10, time.Minute)
		busy, idle := dial(t, l), dial(t, l)
		idle.send("x\n")
		idle.expect("> x\n")
		busy.send("SLOW\n")
		<-p.slow

		stopped := make(chan error)
		go func() { stopped <- l.Stop() }()
		idle.expectClosed()
		close(p.release)
		busy.expect("> SLOW\n")
		busy.expectClosed()
		if err := <-stopped; err != nil {
			t.Fatalf("Stop: %v", err)
		}
		if c, err := net.Dial("tcp", l.addr.JoinHostPort(0)); err == nil {
			c.Close()
			t.Error("the port still accepts after Stop")
		}
		found := false
		Range(func(st Stats) bool {
			found = found || st.Address == l.addr.String()
			return true
		})
		if found {
			t.Error("a stopped listener is still listed by Range")
		}
	})
}

// TestStatsKeptAcrossReload checks that a new listener on the same
// protocol and address continues the counters of the one it replaces.
func TestStatsKeptAcrossReload(t *testing.T) {
	old := acquireCounters("test", "reload:1")
	old.commands.Add(5)
	next := acquireCounters("test", "reload:1")
	releaseCounters("test", "reload:1")
	if next != old || next.commands.Load() != 5 {
		t.Fatalf("the new listener's counters are %p with %d commands; want the old ones %p with 5", next, next.commands.Load(), old)
	}
	releaseCounters("test", "reload:1")
	if again := acquireCounters("test", "reload:1"); again.commands.Load() != 0 {
		t.Errorf("counters of a listener started after all stopped have %d commands; want fresh ones", again.commands.Load())
	}
	releaseCounters("test", "reload:1")
}

func TestDefaultServerName(t *testing.T) {
	for addr, want := range map[string]string{
		":1984":                  "localhost",
		"0.0.0.0:1984":           "localhost",
		"[::]:1984":              "localhost",
		"127.0.0.1:1984":         "127.0.0.1",
		"cache.example.com:1984": "cache.example.com",
		"unix//run/tc.sock":      "localhost",
	} {
		na, err := caddy.ParseNetworkAddress(addr)
		if err != nil {
			t.Fatal(err)
		}
		if got := (&Listener{addr: na}).defaultServerName(); got != want {
			t.Errorf("certificate name for %s = %q; want %q", addr, got, want)
		}
	}
}

// startLoopListener serves lineProtocol from one event loop and checks,
// at the end of the test, that the loop answered commands.
func startLoopListener(t *testing.T) *Listener {
	t.Helper()
	l := startListener(t, framedLineProtocol{&lineProtocol{}}, 1, 10, time.Minute)
	if l.loops == nil {
		t.Fatal("the listener has no event loops")
	}
	before := loopCommands.Load()
	t.Cleanup(func() {
		if loopCommands.Load() == before {
			t.Error("no command was answered by an event loop")
		}
	})
	return l
}

func TestLoopCommandsSplitAcrossReads(t *testing.T) {
	l := startLoopListener(t)
	c := dial(t, l)
	for _, part := range []string{"a", "bc\nd", "\n", "BLOB 3\nx", "y", "ze\n"} {
		c.send(part)
		time.Sleep(5 * time.Millisecond) // separate reads, most of the time
	}
	c.expect("> abc\n")
	c.expect("> d\n")
	c.expect("> BLOB 3\n")
	c.expect("> e\n")
}

// TestLoopHandsOffLargeCommand sends a command larger than the read
// buffer: a goroutine answers it and the commands after it.
func TestLoopHandsOffLargeCommand(t *testing.T) {
	l := startLoopListener(t)
	c := dial(t, l)
	c.send("before\n")
	c.expect("> before\n")
	c.send("BLOB 100000\n" + strings.Repeat("v", 100000) + "after\n")
	c.expect("> BLOB 100000\n")
	c.expect("> after\n")
	if st := statsOf(t, l); st.BytesRead != uint64(7+12+100000+6) {
		t.Errorf("%d bytes read counted; want %d", st.BytesRead, 7+12+100000+6)
	}
}

// TestLoopHandsOffSlowReader asks for more than the socket takes at once
// without reading: the replies arrive whole and in order.
func TestLoopHandsOffSlowReader(t *testing.T) {
	l := startLoopListener(t)
	c := dial(t, l)
	const n = 8 << 20
	c.send("first\nREPEAT 8388608\nlast\n")
	time.Sleep(20 * time.Millisecond) // the loop fills the socket and hands off
	c.expect("> first\n")
	got := make([]byte, n)
	if _, err := io.ReadFull(c.r, got); err != nil || strings.Count(string(got), "r") != n {
		t.Fatalf("read %d bytes of the long reply (%v)", strings.Count(string(got), "r"), err)
	}
	c.expect("> REPEAT 8388608\n")
	c.expect("> last\n")
	c.send("more\n")
	c.expect("> more\n")
}

func TestLoopServeBlockingMovesToGoroutine(t *testing.T) {
	l := startLoopListener(t)
	c := dial(t, l)
	c.send("BLOCK\n")
	c.expect("> BLOCK\n")
	c.send("next\n")
	c.expect("> next\n")
	c.send("again\n")
	c.expect("> again\n")
}

func TestLoopCloseThroughSession(t *testing.T) {
	l := startLoopListener(t)
	a, b := dial(t, l), dial(t, l)
	a.send("CLOSE\n")
	a.expect("> CLOSE\n")
	a.expectClosed()
	b.send("still\n")
	b.expect("> still\n")
	eventually(t, func() (bool, string) {
		n := statsOf(t, l).CurrentConnections
		return n == 1, fmt.Sprintf("%d current connections; want 1", n)
	})
}

// eventually polls cond every millisecond for up to two seconds and fails
// the test with what cond last said if it never holds.
func eventually(t *testing.T, cond func() (ok bool, state string)) {
	t.Helper()
	for i := 0; ; i++ {
		ok, state := cond()
		if ok {
			return
		}
		if i == 2000 {
			t.Fatal(state)
		}
		time.Sleep(time.Millisecond)
	}
}
