package tagcache

import (
	"context"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddytest"
	"github.com/redis/go-redis/v9"

	"github.com/tagcache/caddy-tagcache/internal/testutil"
)

// Ports of the event loop test (19090-19099).
const (
	loopsAdminPort = 19098
	loopsRESP      = "127.0.0.1:19091"
)

// TestEventLoopsUnderLoad sends redis-benchmark's pipelined and unpipelined
// load to a plain listener, which the event loops serve, and checks that
// no command was lost or answered twice: the INCRs add up.
func TestEventLoopsUnderLoad(t *testing.T) {
	bench := testutil.Tool(t, "redis-tools", "redis-benchmark")
	tester := caddytest.NewTester(t).WithDefaultOverrides(caddytest.Config{AdminPort: loopsAdminPort})
	tester.InitServer(fmt.Sprintf(`{
	admin localhost:%d
	skip_install_trust
	tagcache {
		listen resp %s {
			event_loops 2
		}
	}
}
`, loopsAdminPort, loopsRESP), "caddyfile")
	if t.Failed() {
		t.FailNow()
	}
	host, port, _ := strings.Cut(loopsRESP, ":")
	rdb := redis.NewClient(&redis.Options{Addr: loopsRESP})
	t.Cleanup(func() { rdb.Close() })
	ctx := context.Background()

	const requests = 20000
	for _, pipeline := range []int{1, 16} {
		if err := rdb.FlushAll(ctx).Err(); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command(bench, "-h", host, "-p", port, "-c", "20", "-n", strconv.Itoa(requests),
			"-r", "1000", "-P", strconv.Itoa(pipeline), "-t", "set,get,incr,mset", "--csv").CombinedOutput()
		if err != nil {
			t.Fatalf("redis-benchmark -P %d: %v\n%s", pipeline, err, out)
		}
		for _, test := range []string{"SET", "GET", "INCR", "MSET (10 keys)"} {
			if !strings.Contains(string(out), `"`+test+`",`) {
				t.Errorf("redis-benchmark -P %d reported no %s results:\n%s", pipeline, test, out)
			}
		}
		keys, err := rdb.Keys(ctx, "counter:*").Result()
		if err != nil || len(keys) == 0 {
			t.Fatalf("counter keys: %v, %v", keys, err)
		}
		sum := 0
		for _, v := range rdb.MGet(ctx, keys...).Val() {
			n, err := strconv.Atoi(v.(string))
			if err != nil {
				t.Fatalf("counter value %q: %v", v, err)
			}
			sum += n
		}
		if sum != requests {
			t.Errorf("pipeline %d: the INCRs add up to %d; want %d", pipeline, sum, requests)
		}
	}
}
