package resp

import (
	"context"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"
)

var authUsers = []testUser{
	{name: "admin"},
	{name: "default", perms: []string{"read", "write"}},
	{name: "reader", perms: []string{"read"}},
	{name: "writer", perms: []string{"read", "write"}},
	{name: "purger", perms: []string{"read", "purge"}},
}

func TestAuthRaw(t *testing.T) {
	srv := startServer(t, serverOptions{users: authUsers, authRequired: true})
	c := dialRaw(t, srv.addr)
	c.expect([]step{
		{"PING", "-NOAUTH Authentication required.\r\n"},
		{"GET k", "-NOAUTH Authentication required.\r\n"},
		{"NOSUCH x", "-ERR unknown command 'NOSUCH', with args beginning with: 'x' \r\n"},
		{"HELLO 3", "-NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time\r\n"},
		{"AUTH reader wrong", "-WRONGPASS invalid username-password pair or user is disabled.\r\n"},
		{"AUTH nobody readerpw", "-WRONGPASS invalid username-password pair or user is disabled.\r\n"},
		{"HELLO 3 AUTH reader wrong", "-WRONGPASS invalid username-password pair or user is disabled.\r\n"},
		{"AUTH reader readerpw", "+OK\r\n"},
		{"GET k", "$-1\r\n"},
		{"SET k v", "-NOPERM this user has no permissions to run the 'set' command\r\n"},
		{"CONFIG GET maxmemory-policy", "*2\r\n$16\r\nmaxmemory-policy\r\n$11\r\nallkeys-lru\r\n"},
		{"CONFIG SET maxmemory 10mb", "-NOPERM this user has no permissions to run the 'config|set' command\r\n"},
		{"MULTI", "+OK\r\n"},
		{"GET k", "+QUEUED\r\n"},
		{"SET k v", "-NOPERM this user has no permissions to run the 'set' command\r\n"},
		{"EXEC", "-EXECABORT Transaction discarded because of previous errors.\r\n"},
		{"AUTH defaultpw", "+OK\r\n"},
		{"SET k v", "+OK\r\n"},
		{"FLUSHDB", "-NOPERM this user has no permissions to run the 'flushdb' command\r\n"},
		{"INVALIDATE t", "-NOPERM this user has no permissions to run the 'invalidate' command\r\n"},
		{"AUTH purger purgerpw", "+OK\r\n"},
		{"INVALIDATE t", ":0\r\n"},
		{"TAGDEL t", ":0\r\n"},
		{"SET k v", "-NOPERM this user has no permissions to run the 'set' command\r\n"},
		{"RESET", "+RESET\r\n"},
		{"GET k", "-NOAUTH Authentication required.\r\n"},
		{"AUTH a b c", "-ERR syntax error\r\n"},
		{"AUTH admin adminpw", "+OK\r\n"},
		{"FLUSHDB", "+OK\r\n"},
		{"CONFIG SET maxmemory 10mb", "+OK\r\n"},
	})
	if got := srv.store("default").Stats().MaxMemory; got != 10<<20 {
		t.Fatalf("CONFIG SET maxmemory made the budget %d", got)
	}
	// HELLO with AUTH authenticates and switches protocol in one step.
	c2 := dialRaw(t, srv.addr)
	if got := c2.do("HELLO", "3", "AUTH", "writer", "writerpw", "SETNAME", "app"); !strings.HasPrefix(got, "%7\r\n") {
		t.Fatalf("HELLO 3 AUTH: %q", got)
	}
	if got := c2.do("CLIENT", "GETNAME"); got != "$3\r\napp\r\n" {
		t.Fatalf("name after HELLO SETNAME: %q", got)
	}
	if got := c2.do("GET", "nope"); got != "_\r\n" {
		t.Fatalf("GET in RESP3: %q", got)
	}
}

// TestAuthUnauthenticatedLimits checks Redis's tighter limits on a client
// that has not authenticated: they close the connection with a protocol
// error.
func TestAuthUnauthenticatedLimits(t *testing.T) {
	srv := startServer(t, serverOptions{users: authUsers, authRequired: true})
	c := dialRaw(t, srv.addr)
	c.send(encode("MSET", "a", "1", "b", "2", "c", "3", "d", "4", "e", "5"))
	if got := c.reply(); got != "-ERR Protocol error: unauthenticated multibulk length\r\n" || !c.closed() {
		t.Fatalf("11 arguments before AUTH: %q", got)
	}
	c = dialRaw(t, srv.addr)
	c.send(encode("AUTH", strings.Repeat("x", 20000)))
	if got := c.reply(); got != "-ERR Protocol error: unauthenticated bulk length\r\n" || !c.closed() {
		t.Fatalf("a 20000-byte argument before AUTH: %q", got)
	}
	// After AUTH, the listener's limits apply.
	c = dialRaw(t, srv.addr)
	c.do("AUTH", "admin", "adminpw")
	if got := c.do("MSET", "a", "1", "b", "2", "c", "3", "d", "4", "e", "5", "f", strings.Repeat("x", 20000)); got != "+OK\r\n" {
		t.Fatalf("MSET after AUTH: %q", got)
	}
}

func TestAuthGoRedis(t *testing.T) {
	ctx := context.Background()
	srv := startServer(t, serverOptions{users: authUsers, authRequired: true})
	for _, proto := range []int{2, 3} {
		// Username and password: HELLO AUTH.
		rdb := newClient(t, srv.addr, proto, func(o *redis.Options) { o.Username, o.Password = "writer", "writerpw" })
		if err := rdb.Set(ctx, "k", "v", 0).Err(); err != nil {
			t.Fatalf("RESP%d with user and password: %v", proto, err)
		}
		// A password alone is the user named default's.
		rdb = newClient(t, srv.addr, proto, func(o *redis.Options) { o.Password = "defaultpw" })
		if s, err := rdb.Get(ctx, "k").Result(); err != nil || s != "v" {
			t.Fatalf("RESP%d with a password: %q, %v", proto, s, err)
		}
		rdb = newClient(t, srv.addr, proto, func(o *redis.Options) { o.Username, o.Password = "writer", "bad" })
		if err := rdb.Ping(ctx).Err(); err == nil || !strings.HasPrefix(err.Error(), "WRONGPASS") {
			t.Fatalf("RESP%d with a bad password: %v", proto, err)
		}
		rdb = newClient(t, srv.addr, proto)
		if err := rdb.Ping(ctx).Err(); err == nil || !strings.HasPrefix(err.Error(), "NOAUTH") {
			t.Fatalf("RESP%d without credentials: %v", proto, err)
		}
	}
}

// TestAuthNotRequired: without auth the client has every right, AUTH can
// still switch to a configured user (with that user's rights), and AUTH
// with a password alone fails as on a Redis without a password.
func TestAuthNotRequired(t *testing.T) {
	srv := startServer(t, serverOptions{users: []testUser{{name: "reader", perms: []string{"read"}}}})
	c := dialRaw(t, srv.addr)
	c.expect([]step{
		{"FLUSHDB", "+OK\r\n"},
		{"AUTH readerpw", "-WRONGPASS invalid username-password pair or user is disabled.\r\n"},
		{"AUTH reader readerpw", "+OK\r\n"},
		{"SET k v", "-NOPERM this user has no permissions to run the 'set' command\r\n"},
		{"RESET", "+RESET\r\n"},
		{"SET k v", "+OK\r\n"},
	})
	open := startServer(t, serverOptions{})
	if got := dialRaw(t, open.addr).do("AUTH", "pw"); got != "-ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?\r\n" {
		t.Fatalf("AUTH without users: %q", got)
	}
}
