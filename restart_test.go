package tagcache

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestRestartKeepsData runs a real Caddy built from cmd/caddy with a
// snapshot written on shutdown, stops it with SIGINT as a service manager
// would, starts it again, and reads the keys, tags and TTLs back over the
// tab protocol.
func TestRestartKeepsData(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs cmd/caddy")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "caddy")
	build := exec.Command("go", "build", "-o", bin, "./cmd/caddy")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/caddy: %v\n%s", err, out)
	}
	const addr = "127.0.0.1:19051"
	snap := filepath.Join(dir, "default.snap")
	caddyfile := filepath.Join(dir, "Caddyfile")
	config := fmt.Sprintf(`{
	admin localhost:19058
	storage file_system %s
	tagcache {
		store {
			snapshot {
				path %s
				on_shutdown
			}
		}
		listen tcp %s
	}
}
`, filepath.Join(dir, "data"), snap, addr)
	if err := os.WriteFile(caddyfile, []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	run := func() *exec.Cmd {
		cmd := exec.Command(bin, "run", "--config", caddyfile, "--adapter", "caddyfile")
		cmd.Env = append(os.Environ(), "XDG_DATA_HOME="+filepath.Join(dir, "xdg"), "XDG_CONFIG_HOME="+filepath.Join(dir, "xdg"))
		var log strings.Builder
		cmd.Stdout, cmd.Stderr = &log, &log
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			cmd.Process.Kill()
			if t.Failed() {
				t.Logf("caddy log:\n%s", log.String())
			}
		})
		return cmd
	}
	connect := func() *tabClient {
		deadline := time.Now().Add(30 * time.Second)
		for {
			conn, err := net.Dial("tcp", addr)
			if err == nil {
				return newTabClient(t, conn)
			}
			if time.Now().After(deadline) {
				t.Fatalf("caddy never listened on %s: %v", addr, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	stop := func(cmd *exec.Cmd) {
		cmd.Process.Signal(syscall.SIGINT)
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			t.Fatal("caddy did not exit on SIGINT")
		}
	}

	first := run()
	c := connect()
	c.do("PUT\tpage:1\t3600000\tproduct:42,category:7\t<html>42</html>", "OK")
	c.do("PUT\tpage:2\t-\tproduct:42\t<html>2</html>", "OK")
	c.do("PUT\tgone\t1\t-\tshort-lived", "OK")
	c.send("TTL\tpage:1")
	ttlBefore, _ := c.read()
	stop(first)
	if _, err := os.Stat(snap); err != nil {
		t.Fatalf("no snapshot after shutdown: %v", err)
	}

	run()
	c = connect()
	c.do("GET\tpage:1", "VALUE <html>42</html>")
	c.do("GET\tpage:2", "VALUE <html>2</html>")
	c.do("GET\tgone", "NF")
	c.do("TAGS_OF\tpage:2", "TAGS product:42")
	c.send("TTL\tpage:1")
	ttlAfter, _ := c.read()
	before, _ := strconv.Atoi(strings.TrimPrefix(ttlBefore, "TTL "))
	after, _ := strconv.Atoi(strings.TrimPrefix(ttlAfter, "TTL "))
	// The deadline is absolute: the TTL went on running while Caddy was down.
	if after <= 0 || after > before || before-after > 60_000 {
		t.Fatalf("TTL %q before the restart, %q after", ttlBefore, ttlAfter)
	}
	c.do("INV_TAG\tproduct:42", "INV_TAG 2")
}
