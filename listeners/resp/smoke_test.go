package resp

import "testing"

func TestSmoke(t *testing.T) {
	srv := startServer(t, serverOptions{})
	c := dialRaw(t, srv.addr)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"PING"}, "+PONG\r\n"},
		{[]string{"SET", "a", "1"}, "+OK\r\n"},
		{[]string{"GET", "a"}, "$1\r\n1\r\n"},
		{[]string{"INCR", "a"}, ":2\r\n"},
		{[]string{"GET", "nope"}, "$-1\r\n"},
		{[]string{"FOO", "x"}, "-ERR unknown command 'FOO', with args beginning with: 'x' \r\n"},
		{[]string{"HELLO", "3"}, ""},
		{[]string{"GET", "nope"}, "_\r\n"},
	} {
		got := c.do(tc.args...)
		if tc.want != "" && got != tc.want {
			t.Errorf("%q = %q, want %q", tc.args, got, tc.want)
		}
		t.Logf("%q -> %q", tc.args, got)
	}
}
