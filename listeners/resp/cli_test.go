package resp

import (
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/tagcache/caddy-tagcache/internal/testutil"
)

// runCLI runs redis-cli (Debian's redis-tools) against addr, feeding it
// input; without a terminal it prints one reply per line of input.
func runCLI(t *testing.T, addr, input string, args ...string) string {
	t.Helper()
	cli := testutil.Tool(t, "redis-tools", "redis-cli")
	host, port, _ := strings.Cut(addr, ":")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, cli, append([]string{"-h", host, "-p", port}, args...)...)
	cmd.Stdin = strings.NewReader(input)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("redis-cli %q: %v\n%s", args, err, out)
	}
	return string(out)
}

// cliSession is the README's redis-cli session: each command and the
// reply redis-cli prints.
var cliSession = []struct{ command, reply string }{
	{"SET greeting hello EX 60", "OK"},
	{"GET greeting", `"hello"`},
	{"TTL greeting", "(integer) 60"},
	{`SETTAG page:/products/42 "<html>...</html>" product:42 catalog`, "OK"},
	{`SET fragment:42 "<div>...</div>" TAGS product:42`, "OK"},
	{"TAGCOUNT product:42", "(integer) 2"},
	{"INVALIDATE product:42", "(integer) 2"},
	{"EXISTS page:/products/42 fragment:42", "(integer) 0"},
	{"INCR visits", "(integer) 1"},
	{"SELECT 1", "OK"},
	{"NAMESPACES", "1) \"default\"\n2) \"sessions\""},
	{"HSET user:1 name Ann", "(error) ERR unsupported command 'hset': tagcache stores strings only; hashes are not supported yet"},
}

func TestRedisCLISession(t *testing.T) {
	srv := startServer(t, serverOptions{stores: []string{"sessions"}})
	var input, want strings.Builder
	for _, step := range cliSession {
		input.WriteString(step.command + "\n")
		want.WriteString(step.reply + "\n")
	}
	if got := runCLI(t, srv.addr, input.String(), "--no-raw"); got != want.String() {
		t.Fatalf("redis-cli printed\n%s\nwant\n%s", got, want.String())
	}
	// RESP3, SCAN and INFO as redis-cli drives them.
	if got := runCLI(t, srv.addr, "", "-3", "HELLO", "3"); !strings.Contains(got, "proto 3\n") {
		t.Fatalf("redis-cli -3 HELLO 3:\n%s", got)
	}
	if got := runCLI(t, srv.addr, "", "--scan", "--pattern", "gr*"); got != "greeting\n" {
		t.Fatalf("redis-cli --scan:\n%s", got)
	}
	if got := runCLI(t, srv.addr, "", "INFO", "keyspace"); !strings.Contains(got, "db0:keys=2,tags=0,store=default") {
		t.Fatalf("redis-cli INFO keyspace:\n%s", got)
	}
}

// TestRedisCLIHelp runs redis-cli interactively (on a terminal that
// script(1) provides): at start it reads COMMAND DOCS, and its help
// command shows what that returned.
func TestRedisCLIHelp(t *testing.T) {
	testutil.Tool(t, "redis-tools", "redis-cli")
	script := testutil.Tool(t, "bsdutils", "script")
	srv := startServer(t, serverOptions{})
	_, port, _ := strings.Cut(srv.addr, ":")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, script, "-qfec", "redis-cli -p "+port, "/dev/null")
	cmd.Env = append(cmd.Environ(), "TERM=dumb") // no cursor position queries
	cmd.Stdin = strings.NewReader("help get\nhelp @tag\nquit\n")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("interactive redis-cli: %v\n%s", err, out)
	}
	for _, want := range []string{"Returns the string value of a key.", "INVALIDATE", "Returns the keys carrying a tag."} {
		if !strings.Contains(string(out), want) {
			t.Fatalf("redis-cli help lacks %q:\n%s", want, out)
		}
	}
}
