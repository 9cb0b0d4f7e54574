package resp

import (
	"bufio"
	"errors"
	"io"
	"net"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// rawClient speaks RESP over a plain socket, to check replies byte for
// byte.
type rawClient struct {
	t    testing.TB
	conn net.Conn
	r    *bufio.Reader
}

func dialRaw(t testing.TB, addr string) *rawClient {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return &rawClient{t: t, conn: conn, r: bufio.NewReader(conn)}
}

func (c *rawClient) send(s string) {
	c.t.Helper()
	c.conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c.conn, s); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

// encode spells args as a RESP array of bulk strings.
func encode(args ...string) string {
	var b strings.Builder
	b.WriteString("*" + strconv.Itoa(len(args)) + "\r\n")
	for _, a := range args {
		b.WriteString("$" + strconv.Itoa(len(a)) + "\r\n" + a + "\r\n")
	}
	return b.String()
}

// do sends one command and returns its reply as raw RESP.
func (c *rawClient) do(args ...string) string {
	c.t.Helper()
	c.send(encode(args...))
	return c.reply()
}

// reply reads one complete reply, of any RESP2 or RESP3 type, as raw RESP.
func (c *rawClient) reply() string {
	c.t.Helper()
	c.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	var b strings.Builder
	if err := readRawReply(c.r, &b); err != nil {
		c.t.Fatalf("reading reply (so far %q): %v", b.String(), err)
	}
	return b.String()
}

func readRawReply(r *bufio.Reader, b *strings.Builder) error {
	line, err := r.ReadString('\n')
	b.WriteString(line)
	if err != nil {
		return err
	}
	if len(line) < 3 {
		return io.ErrUnexpectedEOF
	}
	n, _ := strconv.Atoi(strings.TrimSpace(line[1:]))
	switch line[0] {
	case '$', '=', '!':
		if n < 0 {
			return nil
		}
		buf := make([]byte, n+2)
		if _, err := io.ReadFull(r, buf); err != nil {
			return err
		}
		b.Write(buf)
	case '*', '~', '>', '%', '|':
		if line[0] == '%' || line[0] == '|' {
			n *= 2
		}
		for range max(n, 0) {
			if err := readRawReply(r, b); err != nil {
				return err
			}
		}
	}
	return nil
}

// closed reports whether the server closed the connection (after reading
// what is left). A server that closes with input unread makes the kernel
// answer a reset, which is a close too.
func (c *rawClient) closed() bool {
	c.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err := io.ReadAll(c.r)
	return err == nil || errors.Is(err, syscall.ECONNRESET)
}

// step is an inline command and its expected raw reply.
type step struct{ args, want string }

// expect sends each step's command and checks its reply.
func (c *rawClient) expect(steps []step) {
	c.t.Helper()
	for _, st := range steps {
		c.send(st.args + "\r\n")
		if got := c.reply(); got != st.want {
			c.t.Fatalf("%s: %q, want %q", st.args, got, st.want)
		}
	}
}
