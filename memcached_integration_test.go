package tagcache

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/bradfitz/gomemcache/memcache"
	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddytest"

	"github.com/tagcache/caddy-tagcache/internal/testutil"
)

// Ports of the memcached integration test (19060-19069).
const (
	mcAdminPort = 19068
	mcPlainAddr = "127.0.0.1:19061"
	mcTabAddr   = "127.0.0.1:19062"
	mcAuthAddr  = "127.0.0.1:19063"
	mcTLSAddr   = "127.0.0.1:19064"
)

// TestMemcachedIntegration serves the memcached protocol from a real Caddy:
// a stock client, memccapable, the tab protocol on the same store, text
// auth and TLS.
func TestMemcachedIntegration(t *testing.T) {
	tester := caddytest.NewTester(t).WithDefaultOverrides(caddytest.Config{AdminPort: mcAdminPort})
	tester.InitServer(fmt.Sprintf(`{
	admin localhost:%d
	skip_install_trust
	tagcache {
		auth {
			user app %s read write
		}
		listen memcached %s
		listen tcp %s
		listen memcached %s {
			auth required
		}
		listen memcached %s {
			tls internal
		}
	}
}
`, mcAdminPort, testutil.BcryptHash(t, "app-pw"), mcPlainAddr, mcTabAddr, mcAuthAddr, mcTLSAddr), "caddyfile")
	if t.Failed() {
		t.FailNow()
	}

	t.Run("gomemcache and the tab protocol share the store", func(t *testing.T) {
		mc := memcache.New(mcPlainAddr)
		if err := mc.Set(&memcache.Item{Key: "mci:page", Value: []byte("<p>hi</p>"), Flags: 3}); err != nil {
			t.Fatal(err)
		}
		it, err := mc.Get("mci:page")
		if err != nil || string(it.Value) != "<p>hi</p>" || it.Flags != 3 {
			t.Fatalf("Get = %+v, %v", it, err)
		}
		tab := dialTab(t, "tcp", mcTabAddr)
		tab.do("GET\tmci:page", "VALUE <p>hi</p>")
		tab.do("PUT\tmci:tagged\t-\tmci:product:1\tfrom tab", "OK")
		if it, err := mc.Get("mci:tagged"); err != nil || string(it.Value) != "from tab" {
			t.Fatalf("a value written over the tab protocol, read over memcached: %+v, %v", it, err)
		}
		// The tag extension, as a raw command any client can send.
		c := dialMemcached(t, mcPlainAddr, nil)
		c.do("tag_invalidate mci:product:1", "INVALIDATED 1")
		tab.do("GET\tmci:tagged", "NF")
	})

	t.Run("memccapable", func(t *testing.T) {
		bin := testutil.Tool(t, "libmemcached-tools", "memccapable", "memcapable")
		host, port, _ := strings.Cut(mcPlainAddr, ":")
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		out, err := exec.CommandContext(ctx, bin, "-h", host, "-p", port, "-t", "5").CombinedOutput()
		results := regexp.MustCompile(`(?m)^((?:ascii|binary) [a-z ]+?)\s+\[(pass|FAIL|skip)\]$`).FindAllStringSubmatch(string(out), -1)
		for _, r := range results {
			if r[2] != "pass" {
				t.Errorf("memccapable %s: %s", r[1], r[2])
			}
		}
		if len(results) < 54 || err != nil {
			t.Fatalf("memccapable through Caddy: %v, %d results:\n%s", err, len(results), out)
		}
	})

	t.Run("text auth", func(t *testing.T) {
		c := dialMemcached(t, mcAuthAddr, nil)
		c.do("get mci:page", "CLIENT_ERROR unauthenticated")
		c.send("set auth 0 0 10\r\napp wrong!")
		c.expect("CLIENT_ERROR authentication failure")
		c.send("set auth 0 0 10\r\napp app-pw")
		c.expect("STORED")
		c.send("set mci:auth 3 0 9\r\n<p>hi</p>")
		c.expect("STORED")
		c.do("get mci:auth", "VALUE mci:auth 3 9", "<p>hi</p>", "END")
		c.do("flush_all", "CLIENT_ERROR permission denied")
	})

	t.Run("tls", func(t *testing.T) {
		rootPEM, err := os.ReadFile(filepath.Join(caddy.AppDataDir(), "pki", "authorities", "local", "root.crt"))
		if err != nil {
			t.Fatalf("reading the internal CA's root: %v", err)
		}
		roots := x509.NewCertPool()
		roots.AppendCertsFromPEM(rootPEM)
		c := dialMemcached(t, mcTLSAddr, &tls.Config{RootCAs: roots, ServerName: "127.0.0.1"})
		c.send("set mci:tls 0 0 2\r\nok")
		c.expect("STORED")
		c.do("get mci:tls", "VALUE mci:tls 0 2", "ok", "END")
	})
}

// mcClient talks the memcached text protocol over a raw connection.
type mcClient struct {
	t    *testing.T
	conn net.Conn
	r    *bufio.Reader
}

func dialMemcached(t *testing.T, addr string, tlsConfig *tls.Config) *mcClient {
	t.Helper()
	var conn net.Conn
	var err error
	if tlsConfig != nil {
		conn, err = tls.Dial("tcp", addr, tlsConfig)
	} else {
		conn, err = net.Dial("tcp", addr)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	conn.SetDeadline(time.Now().Add(30 * time.Second))
	return &mcClient{t: t, conn: conn, r: bufio.NewReader(conn)}
}

func (c *mcClient) send(data string) {
	c.t.Helper()
	if _, err := io.WriteString(c.conn, data+"\r\n"); err != nil {
		c.t.Fatal(err)
	}
}

// expect reads one reply line per want.
func (c *mcClient) expect(want ...string) {
	c.t.Helper()
	for _, w := range want {
		line, err := c.r.ReadString('\n')
		if got := strings.TrimSuffix(line, "\r\n"); err != nil || got != w {
			c.t.Fatalf("got %q, %v; want %q", got, err, w)
		}
	}
}

// do sends a command line and checks its reply lines.
func (c *mcClient) do(line string, want ...string) {
	c.t.Helper()
	c.send(line)
	c.expect(want...)
}
