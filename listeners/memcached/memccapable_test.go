package memcached

import (
	"context"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/tagcache/caddy-tagcache/internal/testutil"
)

var memccapableResult = regexp.MustCompile(`(?m)^((?:ascii|binary) [a-z ]+?)\s+\[(pass|FAIL|skip)\]$`)

// TestMemccapable runs every ascii and binary test of memccapable against
// the protocol and wants them all to pass.
func TestMemccapable(t *testing.T) {
	bin := testutil.Tool(t, "libmemcached-tools", "memccapable", "memcapable")
	srv := startServer(t, serverOptions{})
	host, port, _ := strings.Cut(srv.addr, ":")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, "-h", host, "-p", port, "-t", "5").CombinedOutput()
	results := memccapableResult.FindAllStringSubmatch(string(out), -1)
	passed := 0
	for _, r := range results {
		if r[2] == "pass" {
			passed++
		} else {
			t.Errorf("memccapable %s: %s", r[1], r[2])
		}
	}
	t.Logf("memccapable: %d of %d tests passed", passed, len(results))
	// 27 ascii and 27 binary tests in libmemcached 1.1.
	if len(results) < 54 || err != nil {
		t.Fatalf("memccapable: %v, %d results:\n%s", err, len(results), out)
	}
}
