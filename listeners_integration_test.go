package tagcache

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddytest"

	"github.com/tagcache/caddy-tagcache/internal/testutil"
	"github.com/tagcache/caddy-tagcache/listeners"
)

// Ports of the listener integration test (19100-19199); its Caddy's admin
// endpoint is on 19199, apart from the other integration test's 2999.
const (
	listenAdminPort = 19199
	plainAddr       = "127.0.0.1:19101"
	authAddr        = "127.0.0.1:19102"
	tlsAddr         = "127.0.0.1:19103"
	limitedAddr     = "127.0.0.1:19104"
)

// listenersConfig is a Caddyfile with one listener of each kind; idle is the
// idle timeout of the plain listener, which the reload test changes.
func listenersConfig(socket, users, idle string) string {
	return fmt.Sprintf(`{
	admin localhost:%d
	skip_install_trust
	tagcache {
		auth {
%s
		}
		listen tcp %s {
			idle_timeout %s
		}
		listen tcp %s {
			auth required
		}
		listen tcp %s {
			tls internal
		}
		listen tcp %s {
			max_connections 2
			idle_timeout 1s
			max_line_length 64
		}
		listen tcp unix/%s
	}
}
`, listenAdminPort, users, plainAddr, idle, authAddr, tlsAddr, limitedAddr, socket)
}

// tabClient talks the tab protocol over a raw connection.
type tabClient struct {
	t    *testing.T
	conn net.Conn
	r    *bufio.Reader
}

func newTabClient(t *testing.T, conn net.Conn) *tabClient {
	t.Helper()
	t.Cleanup(func() { conn.Close() })
	// Bounds every exchange, so that a broken server fails the test
	// rather than hanging it.
	conn.SetDeadline(time.Now().Add(30 * time.Second))
	return &tabClient{t: t, conn: conn, r: bufio.NewReader(conn)}
}

func dialTab(t *testing.T, network, addr string) *tabClient {
	t.Helper()
	conn, err := net.Dial(network, addr)
	if err != nil {
		t.Fatal(err)
	}
	return newTabClient(t, conn)
}

func (c *tabClient) send(line string) {
	c.t.Helper()
	if _, err := io.WriteString(c.conn, line+"\n"); err != nil {
		c.t.Fatal(err)
	}
}

func (c *tabClient) read() (string, error) {
	line, err := c.r.ReadString('\n')
	return strings.TrimSuffix(line, "\n"), err
}

// do sends a command line and checks its reply.
func (c *tabClient) do(line, want string) {
	c.t.Helper()
	c.send(line)
	if got, err := c.read(); err != nil || got != want {
		c.t.Fatalf("%q: got %q, %v; want %q", line, got, err, want)
	}
}

func (c *tabClient) expectClosed() {
	c.t.Helper()
	if line, err := c.read(); !errors.Is(err, io.EOF) {
		c.t.Fatalf("read %q, %v; want the connection closed", line, err)
	}
}

func listenerStats(protocol, address string) (listeners.Stats, bool) {
	var found listeners.Stats
	ok := false
	listeners.Range(func(st listeners.Stats) bool {
		if st.Protocol == protocol && st.Address == address {
			found, ok = st, true
		}
		return !ok
	})
	return found, ok
}

func TestListenersIntegration(t *testing.T) {
	socket := filepath.Join(t.TempDir(), "tagcache.sock")
	users := fmt.Sprintf("\t\t\tuser admin %s\n\t\t\tuser reader %s read",
		testutil.BcryptHash(t, "admin-pw"), testutil.BcryptHash(t, "reader-pw"))
	tester := caddytest.NewTester(t).WithDefaultOverrides(caddytest.Config{AdminPort: listenAdminPort})
	tester.InitServer(listenersConfig(socket, users, "5m"), "caddyfile")
	if t.Failed() {
		t.FailNow()
	}

	t.Run("plain", func(t *testing.T) {
		c := dialTab(t, "tcp", plainAddr)
		c.do("PUT\tint:page:1\t-\tint:product:42,int:category:7\t<html>42</html>", "OK")
		c.do("GET\tint:page:1", "VALUE <html>42</html>")
		c.do("KEYS_BY_TAG\tint:product:42", "KEYS int:page:1")

		// The listener serves the app's store, which every front shares.
		st := lookupStore(t, "default")
		if it, ok := st.Get("int:page:1"); !ok || string(it.Value) != "<html>42</html>" {
			t.Fatalf("the store has %q, %v; want what the client put", it.Value, ok)
		}
		if n := st.InvalidateTags("int:category:7"); n != 1 {
			t.Fatalf("InvalidateTags = %d; want 1", n)
		}
		c.do("GET\tint:page:1", "NF")
	})

	t.Run("unix socket", func(t *testing.T) {
		c := dialTab(t, "unix", socket)
		c.do("PING", "PONG")
		c.do("PUT\tint:unix\t-\t-\tvia socket", "OK")
		dialTab(t, "tcp", plainAddr).do("GET\tint:unix", "VALUE via socket")
	})

	t.Run("auth", func(t *testing.T) {
		c := dialTab(t, "tcp", authAddr)
		c.do("PING", "PONG")
		c.do("GET\tint:auth", "ERR auth required")
		c.do("AUTH\tadmin\twrong", "ERR invalid username or password")
		c.do("PUT\tint:auth\t-\t-\tv", "ERR auth required")
		c.do("AUTH\treader\treader-pw", "OK")
		c.do("GET\tint:auth", "NF")
		c.do("PUT\tint:auth\t-\t-\tv", "ERR permission denied")
		c.do("AUTH\tadmin\tadmin-pw", "OK")
		c.do("PUT\tint:auth\t-\t-\tv", "OK")
		c.do("FLUSH", "OK")
		if st, ok := listenerStats("tcp", authAddr); !ok || st.AuthFailures != 1 || st.Errors != 4 {
			t.Errorf("stats = %+v, %v; want 1 auth failure and 4 errors", st, ok)
		}
		// The same counters on Caddy's /metrics.
		resp, err := http.Get("http://localhost:" + strconv.Itoa(listenAdminPort) + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		want := fmt.Sprintf(`caddy_tagcache_listener_auth_failures_total{address=%q,protocol="tcp"} 1`, authAddr)
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	})

	t.Run("tls", func(t *testing.T) {
		rootPEM, err := os.ReadFile(filepath.Join(caddy.AppDataDir(), "pki", "authorities", "local", "root.crt"))
		if err != nil {
			t.Fatalf("reading the internal CA's root: %v", err)
		}
		roots := x509.NewCertPool()
		if !roots.AppendCertsFromPEM(rootPEM) {
			t.Fatal("no certificate in the internal CA's root.crt")
		}
		cfg := &tls.Config{RootCAs: roots, ServerName: "127.0.0.1", NextProtos: []string{"tcp"}}
		// The tls app obtains the certificate in the background; retry
		// the handshake until it has it.
		var conn *tls.Conn
		for i := 0; ; i++ {
			conn, err = tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", tlsAddr, cfg)
			if err == nil {
				break
			}
			if i == 100 {
				t.Fatalf("TLS handshake with a client trusting only the internal CA: %v", err)
			}
			time.Sleep(100 * time.Millisecond)
		}
		if got := conn.ConnectionState().NegotiatedProtocol; got != "tcp" {
			t.Errorf("ALPN negotiated %q; want tcp", got)
		}
		c := newTabClient(t, conn)
		c.do("PING", "PONG")
		c.do("PUT\tint:tls\t-\t-\tsecret", "OK")
		c.do("GET\tint:tls", "VALUE secret")

		plain := dialTab(t, "tcp", tlsAddr)
		plain.send("PING")
		if line, err := plain.read(); err == nil {
			t.Errorf("a plain-text client on the TLS port read %q; want the connection refused", line)
		}
	})

	t.Run("limits", func(t *testing.T) {
		a, b := dialTab(t, "tcp", limitedAddr), dialTab(t, "tcp", limitedAddr)
		a.do("PING", "PONG")
		b.do("PING", "PONG")
		over := dialTab(t, "tcp", limitedAddr)
		if line, err := over.read(); err != nil || line != "ERR too many connections" {
			t.Fatalf("third client read %q, %v; want ERR too many connections", line, err)
		}
		over.expectClosed()

		// A long line gets an error and the connection stays in sync.
		a.do("GET\t"+strings.Repeat("k", 100), "ERR line too long")
		a.do("PUT\tint:limits\t-\t-\tv", "OK")
		a.do("GET\tint:limits", "VALUE v")

		// Idle clients are disconnected.
		a.expectClosed()
		b.expectClosed()
	})

	t.Run("garbage", func(t *testing.T) {
		good := dialTab(t, "tcp", plainAddr)
		bad := dialTab(t, "tcp", plainAddr)
		rng := rand.New(rand.NewPCG(1, 2))
		junk := make([]byte, 64<<10)
		done := make(chan struct{})
		go func() {
			defer close(done)
			for range 32 {
				for i := range junk {
					junk[i] = byte(rng.UintN(256))
				}
				if _, err := bad.conn.Write(junk); err != nil {
					return
				}
			}
		}()
		go io.Copy(io.Discard, bad.conn)
		for i := range 200 {
			good.do(fmt.Sprintf("PUT\tint:good:%d\t-\tint:good\tv%d", i, i), "OK")
			good.do(fmt.Sprintf("GET\tint:good:%d", i), fmt.Sprintf("VALUE v%d", i))
		}
		<-done
		good.do("INV_TAG\tint:good", "INV_TAG 200")
	})

	t.Run("reload", func(t *testing.T) {
		open := dialTab(t, "tcp", plainAddr)
		open.do("PUT\tint:reload\t-\tint:reload\tkept", "OK")
		before, _ := listenerStats("tcp", plainAddr)

		tester.InitServer(listenersConfig(socket, users, "10m"), "caddyfile")
		if t.Failed() {
			t.FailNow()
		}

		// The old config's session ends after its current command; a
		// client of it sees either the reply or the connection closed.
		open.send("GET\tint:reload")
		if line, err := open.read(); err == nil && line != "VALUE kept" {
			t.Fatalf("the open connection read %q after the reload; want its data or the connection closed", line)
		}

		c := dialTab(t, "tcp", plainAddr)
		c.do("GET\tint:reload", "VALUE kept")
		c.do("TAGS_OF\tint:reload", "TAGS int:reload")
		dialTab(t, "unix", socket).do("GET\tint:reload", "VALUE kept")

		after, ok := listenerStats("tcp", plainAddr)
		if !ok || after.TotalConnections <= before.TotalConnections || after.Commands <= before.Commands {
			t.Errorf("stats after the reload %+v; want them continued from %+v", after, before)
		}
	})
}
