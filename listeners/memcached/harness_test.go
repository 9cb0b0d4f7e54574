package memcached

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"regexp"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/tagcache/caddy-tagcache/auth"
	"github.com/tagcache/caddy-tagcache/internal/testutil"
	"github.com/tagcache/caddy-tagcache/listeners"
	"github.com/tagcache/caddy-tagcache/store"
)

// The harness serves the protocol on 127.0.0.1 the way the listener
// framework does, one listeners.Session per accepted connection, so these
// tests need no Caddy config.

// Test ports: 19200-19249 for harness servers (19250 is left for a real
// memcached to compare with by hand).
const firstPort, lastPort = 19200, 19249

var nextPort atomic.Int32

// listen binds the next free port of the test range.
func listen(t testing.TB) net.Listener {
	t.Helper()
	for range lastPort - firstPort + 1 {
		port := firstPort + int(nextPort.Add(1)-1)%(lastPort-firstPort+1)
		ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err == nil {
			return ln
		}
	}
	t.Fatal("no free port in the test range")
	return nil
}

// testUsers are the users of servers that require auth; their passwords
// are their names.
var testUsers = []struct {
	name  string
	perms []string
}{
	{"admin", nil},
	{"reader", []string{"read"}},
	{"writer", []string{"read", "write"}},
	{"purger", []string{"read", "purge"}},
}

func newUsers(t testing.TB) *auth.Users {
	t.Helper()
	var cfg auth.Config
	for _, u := range testUsers {
		cfg.Users = append(cfg.Users, auth.UserConfig{Username: u.name, Password: testutil.BcryptHash(t, u.name), Permissions: u.perms})
	}
	users, err := auth.NewUsers(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return users
}

// testClock is a manual store clock, so that expiry tests need no sleeps.
type testClock struct{ ms atomic.Int64 }

func (c *testClock) Now() int64       { return c.ms.Load() }
func (c *testClock) Advance(s int64)  { c.ms.Add(s * 1000) }
func (c *testClock) UnixSeconds() int { return int(c.ms.Load() / 1000) }

type serverOptions struct {
	auth       bool
	binding    string
	noFlush    bool
	storeCfg   store.Config
	limits     listeners.Limits
	bufferSize int
	// realClock runs the store on the wall clock instead of testClock.
	realClock bool
}

// server is a harness server.
type server struct {
	addr  string
	st    *store.Store
	m     *Memcached
	clock *testClock
}

func startServer(t testing.TB, o serverOptions) *server {
	t.Helper()
	clock := new(testClock)
	clock.ms.Store(1_700_000_000_000)
	cfg := o.storeCfg
	if !o.realClock {
		cfg.Now = clock.Now
	}
	cfg.SweepInterval = -1
	st, err := store.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	m := &Memcached{Binding: o.binding, DisableFlush: o.noFlush}
	if err := m.Validate(); err != nil {
		t.Fatal(err)
	}
	if err := m.Provision(caddy.Context{}); err != nil {
		t.Fatal(err)
	}
	app := testutil.NewApp(st, newUsers(t))
	size := o.bufferSize
	if size == 0 {
		size = 16 << 10
	}
	ln := listen(t)
	var wg sync.WaitGroup
	var mu sync.Mutex
	conns := map[net.Conn]bool{}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns[nc] = true
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				s := listeners.NewSession(nc, bufio.NewReaderSize(nc, size), bufio.NewWriterSize(nc, size), st, app, o.auth)
				s.Limits = o.limits
				m.Serve(s)
				nc.Close()
				mu.Lock()
				delete(conns, nc)
				mu.Unlock()
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for nc := range conns {
			nc.Close()
		}
		mu.Unlock()
		wg.Wait()
		st.Close()
	})
	return &server{addr: ln.Addr().String(), st: st, m: m, clock: clock}
}

// client is a raw protocol connection for tests.
type client struct {
	t  testing.TB
	nc net.Conn
	r  *bufio.Reader
}

func (s *server) dial(t testing.TB) *client {
	t.Helper()
	nc, err := net.Dial("tcp", s.addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	return &client{t: t, nc: nc, r: bufio.NewReader(nc)}
}

func (c *client) send(s string) {
	c.t.Helper()
	if _, err := c.nc.Write([]byte(s)); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

// read reads exactly n bytes.
func (c *client) read(n int) []byte {
	c.t.Helper()
	c.nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, n)
	if _, err := io.ReadFull(c.r, buf); err != nil {
		c.t.Fatalf("read %d bytes: %v (got %q)", n, err, buf)
	}
	return buf
}

// line reads one reply line, \r\n included.
func (c *client) line() string {
	c.t.Helper()
	c.nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	l, err := c.r.ReadString('\n')
	if err != nil {
		c.t.Fatalf("read line: %v (got %q)", err, l)
	}
	return l
}

// do sends req and checks that the reply is exactly want.
func (c *client) do(req, want string) {
	c.t.Helper()
	c.send(req)
	if got := string(c.read(len(want))); got != want {
		c.t.Fatalf("%q:\n got %q\nwant %q", req, got, want)
	}
}

// match sends req and checks that the next reply line matches the regexp.
func (c *client) match(req, pattern string) []string {
	c.t.Helper()
	c.send(req)
	l := c.line()
	m := regexp.MustCompile("^" + pattern + "\r\n$").FindStringSubmatch(l)
	if m == nil {
		c.t.Fatalf("%q: got %q, want /%s/", req, l, pattern)
	}
	return m
}

// closed checks that the server closed the connection.
func (c *client) closed() {
	c.t.Helper()
	c.nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	rest, err := io.ReadAll(c.r)
	if err != nil || len(rest) > 0 {
		c.t.Fatalf("connection not closed: %q %v", rest, err)
	}
}

// quiet checks that nothing more arrives before a version reply.
func (c *client) quiet() {
	c.t.Helper()
	c.do("version\r\n", "VERSION "+Version+"\r\n")
}

// stat returns one stat of the server, read over a new connection.
func (s *server) stat(t testing.TB, group, name string) string {
	t.Helper()
	c := s.dial(t)
	defer c.nc.Close()
	return c.stat(group, name)
}

// stat returns one stat of a group.
func (c *client) stat(group, name string) string {
	c.t.Helper()
	c.send("stats " + group + "\r\n")
	value := ""
	for {
		l := c.line()
		if l == "END\r\n" {
			return value
		}
		if f := bytes.Fields([]byte(l)); len(f) == 3 && string(f[1]) == name {
			value = string(f[2])
		}
	}
}
