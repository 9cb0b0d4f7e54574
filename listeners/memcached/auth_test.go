package memcached

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
)

// login authenticates c with memcached's text convention.
func (c *client) login(user, password string) {
	c.t.Helper()
	creds := user + " " + password
	c.do(fmt.Sprintf("set any 0 0 %d\r\n%s\r\n", len(creds), creds), "STORED\r\n")
}

func TestTextAuth(t *testing.T) {
	srv := startServer(t, serverOptions{auth: true})
	c := srv.dial(t)
	c.do("get k\r\n", "CLIENT_ERROR unauthenticated\r\n")
	c.do("version\r\n", "CLIENT_ERROR unauthenticated\r\n")
	c.do("set k 0 0 x\r\n", "CLIENT_ERROR unauthenticated\r\n")
	c.do("set k 0 0 11\r\nadmin wrong\r\n", "CLIENT_ERROR authentication failure\r\n")
	c.do("set k 0 0 11\r\nnobody body\r\n", "CLIENT_ERROR authentication failure\r\n")
	c.do("set k 0 0 5\r\nadmin\r\n", "CLIENT_ERROR bad authentication token format\r\n")
	c.do("set k 0 0 5\r\nadmin!!\r\n", "CLIENT_ERROR bad command line termination\r\nCLIENT_ERROR unauthenticated\r\n")
	c.do(fmt.Sprintf("set k 0 0 %d\r\n%s\r\n", maxAuthPayload+1, strings.Repeat("a", maxAuthPayload+1)), "CLIENT_ERROR bad authentication token format\r\n")
	c.login("admin", "admin")
	c.do("set k 0 0 1\r\nx\r\n", "STORED\r\n")
	c.do("get k\r\n", "VALUE k 0 1\r\nx\r\nEND\r\n")
	c.do("flush_all\r\n", "OK\r\n")
	if got := c.stat("", "auth_cmds"); got != "3" {
		t.Errorf("auth_cmds = %s", got)
	}
	if got := c.stat("", "auth_errors"); got != "2" {
		t.Errorf("auth_errors = %s", got)
	}
	if got := c.stat("settings", "auth_enabled_ascii"); got != "yes" {
		t.Errorf("auth_enabled_ascii = %s", got)
	}
}

// TestTextPermissions checks each command against the rights it needs.
func TestTextPermissions(t *testing.T) {
	srv := startServer(t, serverOptions{auth: true})
	admin := srv.dial(t)
	admin.login("admin", "admin")
	admin.do("set k 0 0 1 tags=t\r\nx\r\nset n 0 0 1\r\n1\r\n", "STORED\r\nSTORED\r\n")

	reader := srv.dial(t)
	reader.login("reader", "reader")
	reader.do("get k\r\n", "VALUE k 0 1\r\nx\r\nEND\r\n")
	reader.do("mg k v\r\n", "VA 1\r\nx\r\n")
	reader.do("tag_keys t\r\n", "KEY k\r\nEND\r\n")
	reader.match("me k\r\n", "ME k exp=-1 .*")
	for _, req := range []string{
		"set k 0 0 1\r\ny\r\n", "add z 0 0 1\r\ny\r\n", "ms k 1\r\ny\r\n", "delete k\r\n", "md k\r\n",
		"incr n 1\r\n", "ma n\r\n", "touch k 10\r\n", "gat 10 k\r\n", "mg k T10\r\n", "mg z N10\r\n",
		"tag_invalidate t\r\n", "tag_stale t\r\n", "flush_all\r\n",
	} {
		reader.do(req, replyDenied)
	}
	reader.do("set k 0 0 1 noreply\r\ny\r\nmn\r\n", "MN\r\n")

	writer := srv.dial(t)
	writer.login("writer", "writer")
	writer.do("set k 0 0 1 tags=t\r\ny\r\n", "STORED\r\n")
	writer.do("incr n 1\r\n", "2\r\n")
	writer.do("tag_invalidate t\r\n", replyDenied)
	writer.do("flush_all\r\n", replyDenied)

	purger := srv.dial(t)
	purger.login("purger", "purger")
	purger.do("tag_stale t\r\n", "STALE 1\r\n")
	purger.do("tag_invalidate t\r\n", "INVALIDATED 1\r\n")
	purger.do("flush_all\r\n", replyDenied)
	admin.do("get k n\r\n", "VALUE n 0 1\r\n2\r\nEND\r\n")
}

// saslAuth is a SASL PLAIN request.
func saslAuth(user, password string) binReq {
	return binReq{op: opSASLAuth, key: []byte("PLAIN"), value: []byte("\x00" + user + "\x00" + password), opaque: 7}
}

func TestBinarySASL(t *testing.T) {
	srv := startServer(t, serverOptions{auth: true})
	nc, r := srv.dialBinary(t)
	for _, tc := range []struct {
		req  binReq
		want string
	}{
		{binReq{op: opVersion, opaque: 1}, `op0b st00 cas0 o1 x"" k"" v"` + Version + `"`},
		{binReq{op: opSASLList, opaque: 2}, `op20 st00 cas0 o2 x"" k"" v"PLAIN"`},
		{saslAuth("admin", "wrong"), `op21 st20 cas0 o7 x"" k"" v"Auth failure."`},
		{binReq{op: opSASLAuth, key: []byte("CRAM-MD5"), value: []byte("x"), opaque: 3}, `op21 st20 cas0 o3 x"" k"" v"Auth failure."`},
		{binReq{op: opSASLAuth, key: []byte("PLAIN"), value: []byte("admin admin"), opaque: 4}, `op21 st20 cas0 o4 x"" k"" v"Auth failure."`},
		{binReq{op: opSASLAuth, key: []byte("PLAIN"), value: []byte("other\x00admin\x00admin"), opaque: 5}, `op21 st20 cas0 o5 x"" k"" v"Auth failure."`},
		{binReq{op: opSASLStep, key: []byte("PLAIN"), value: []byte("x"), opaque: 6}, `op22 st20 cas0 o6 x"" k"" v"Auth failure."`},
		{saslAuth("reader", "reader"), `op21 st00 cas0 o7 x"" k"" v"Authenticated"`},
		{binReq{op: opGet, key: []byte("k"), opaque: 8}, `op00 st01 cas0 o8 x"" k"" v"Not found"`},
		{binReq{op: opSet, key: []byte("k"), extras: setExtras(0, 0), value: []byte("v"), opaque: 9}, `op01 st20 cas0 o9 x"" k"" v"Permission denied"`},
		{binReq{op: opFlush, opaque: 10}, `op08 st20 cas0 oa x"" k"" v"Permission denied"`},
		{binReq{op: opSASLAuth, key: []byte("PLAIN"), value: []byte("admin\x00admin\x00admin"), opaque: 11}, `op21 st00 cas0 ob x"" k"" v"Authenticated"`},
		{binReq{op: opSetQ, key: []byte("k"), extras: setExtras(0, 0), value: []byte("v"), opaque: 12}, ``},
		{binReq{op: opGet, key: []byte("k"), opaque: 13}, `op00 st00 cas od x"\x00\x00\x00\x00" k"" v"v"`},
	} {
		if got := binExchange(t, nc, r, tc.req); got != tc.want {
			t.Errorf("%+v:\n got %s\nwant %s", tc.req, got, tc.want)
		}
	}
	// Before authenticating, any other command ends the connection.
	nc, r = srv.dialBinary(t)
	if got := binExchange(t, nc, r, binReq{op: opGet, key: []byte("k"), opaque: 1}); got != `op00 st20 cas0 o1 x"" k"" v"Auth failure."`+"\n<closed>" {
		t.Fatalf("unauthenticated get: %s", got)
	}
	// As in memcached, every SASL command logs the client out first, even
	// one that fails; a mechanism name over 32 bytes is refused before
	// that, and the connection stays.
	nc, r = srv.dialBinary(t)
	for _, tc := range []struct {
		reqs []binReq
		want string
	}{
		{[]binReq{saslAuth("admin", "admin"), {op: opSASLAuth, key: bytes.Repeat([]byte("P"), 33), value: []byte("x"), opaque: 1}, {op: opGet, key: []byte("k"), opaque: 2}},
			`op21 st00 cas0 o7 x"" k"" v"Authenticated"` + "\n" + `op21 st04 cas0 o1 x"" k"" v"Invalid arguments"` + "\n" + `op00 st00 cas o2 x"\x00\x00\x00\x00" k"" v"v"`},
		{[]binReq{{op: opSASLList, opaque: 3}, {op: opGet, key: []byte("k"), opaque: 4}},
			`op20 st00 cas0 o3 x"" k"" v"PLAIN"` + "\n" + `op00 st20 cas0 o4 x"" k"" v"Auth failure."` + "\n<closed>"},
	} {
		if got := binExchange(t, nc, r, tc.reqs...); got != tc.want {
			t.Errorf("%+v:\n got %s\nwant %s", tc.reqs, got, tc.want)
		}
		nc, r = srv.dialBinary(t)
	}
	for _, fail := range []binReq{saslAuth("admin", "wrong"), {op: opSASLStep, key: []byte("PLAIN"), value: []byte("x"), opaque: 7}} {
		got := binExchange(t, nc, r, saslAuth("admin", "admin"), fail, binReq{op: opGet, key: []byte("k"), opaque: 8})
		want := `op21 st00 cas0 o7 x"" k"" v"Authenticated"` + "\n" + fmt.Sprintf(`op%02x st20 cas0 o7 x"" k"" v"Auth failure."`, fail.op) + "\n" + `op00 st20 cas0 o8 x"" k"" v"Auth failure."` + "\n<closed>"
		if got != want {
			t.Errorf("after %+v:\n got %s\nwant %s", fail, got, want)
		}
		nc, r = srv.dialBinary(t)
	}
	// Authentication is checked before the key's length, as memcached does.
	if got := binExchange(t, nc, r, binReq{op: opGet, key: bytes.Repeat([]byte("k"), 251), opaque: 1}); got != `op00 st20 cas0 o1 x"" k"" v"Auth failure."`+"\n<closed>" {
		t.Fatalf("unauthenticated long key: %s", got)
	}
	// Without auth, SASL is an unknown command, as in a memcached without SASL.
	nc, r = startServer(t, serverOptions{}).dialBinary(t)
	if got := binExchange(t, nc, r, saslAuth("admin", "admin")); got != `op21 st81 cas0 o7 x"" k"" v"Unknown command"` {
		t.Fatalf("SASL without auth: %s", got)
	}
}
