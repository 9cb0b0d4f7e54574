package tagcache

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddytest"
	"github.com/redis/go-redis/v9"

	"github.com/tagcache/caddy-tagcache/internal/testutil"
)

// Ports of the Redis integration test (19080-19089).
const (
	respAdminPort = 19088
	respTLSAddr   = "127.0.0.1:19081"
)

func respConfig(hash, idle string) string {
	return fmt.Sprintf(`{
	admin localhost:%d
	skip_install_trust
	tagcache {
		auth {
			user default %s
		}
		listen resp %s {
			tls internal
			auth required
			idle_timeout %s
		}
	}
}
`, respAdminPort, hash, respTLSAddr, idle)
}

// TestRESPIntegration serves Redis from a real Caddy over TLS from the
// internal CA with auth required, and checks that a reload keeps the data
// and the port.
func TestRESPIntegration(t *testing.T) {
	hash := testutil.BcryptHash(t, "s3cret")
	tester := caddytest.NewTester(t).WithDefaultOverrides(caddytest.Config{AdminPort: respAdminPort})
	tester.InitServer(respConfig(hash, "5m"), "caddyfile")
	if t.Failed() {
		t.FailNow()
	}
	rootPEM, err := os.ReadFile(filepath.Join(caddy.AppDataDir(), "pki", "authorities", "local", "root.crt"))
	if err != nil {
		t.Fatalf("reading the internal CA's root: %v", err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(rootPEM)
	client := func(password string) *redis.Client {
		c := redis.NewClient(&redis.Options{
			Addr:       respTLSAddr,
			Password:   password,
			TLSConfig:  &tls.Config{RootCAs: roots, ServerName: "127.0.0.1"},
			MaxRetries: -1,
		})
		t.Cleanup(func() { c.Close() })
		return c
	}
	ctx := context.Background()
	if err := client("wrong").Ping(ctx).Err(); err == nil {
		t.Fatal("a wrong password was accepted")
	}
	rdb := client("s3cret")
	if err := rdb.Set(ctx, "resp:k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}

	tester.InitServer(respConfig(hash, "10m"), "caddyfile")
	if t.Failed() {
		t.FailNow()
	}
	// A new connection after the reload finds the data.
	if v, err := client("s3cret").Get(ctx, "resp:k").Result(); err != nil || v != "v" {
		t.Fatalf("after the reload: %q, %v", v, err)
	}
}
