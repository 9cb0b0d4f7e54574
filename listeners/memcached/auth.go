package memcached

import "bytes"

// Authentication. With auth required, the text protocol follows memcached's
// convention (its -Y option): the first command must be a set whose data
// block is "<username> <password>"; key, flags and exptime are ignored. The
// binary protocol uses SASL PLAIN, as memcached's -S option does.

// maxAuthPayload bounds the credentials a client may send.
const maxAuthPayload = 4096

// textAuth answers a command from a client that has not authenticated yet.
func (c *conn) textAuth() error {
	t := c.toks
	size, ok := uint32(0), false
	if len(t) >= 5 && string(t[0]) == "set" {
		size, ok = parseUint32(t[4])
	}
	if !ok {
		c.reply("CLIENT_ERROR unauthenticated\r\n")
		return nil
	}
	n := int(size) + 2
	if size > maxAuthPayload {
		return c.refuse(n, "CLIENT_ERROR bad authentication token format\r\n")
	}
	data, err := c.readData(n)
	if err != nil {
		return err
	}
	if !chunkOK(data) {
		c.reply("CLIENT_ERROR bad command line termination\r\n")
		return nil
	}
	c.tokenize(data[:size])
	if len(c.toks) < 2 {
		c.reply("CLIENT_ERROR bad authentication token format\r\n")
		return nil
	}
	c.m.shared.counters.authCmds.Add(1)
	if err := c.s.Authenticate(string(c.toks[0]), string(c.toks[1])); err != nil {
		c.m.shared.counters.authErrors.Add(1)
		c.reply("CLIENT_ERROR authentication failure\r\n")
		return nil
	}
	c.w.WriteString("STORED\r\n")
	return nil
}

// saslPlain splits a SASL PLAIN message (RFC 4616): an optional
// authorization identity, the username and the password, separated by NUL
// bytes. Acting as another user is not supported: an authorization
// identity must be the username itself.
func saslPlain(msg []byte) (username, password string, ok bool) {
	parts := bytes.SplitN(msg, []byte{0}, 3)
	if len(parts) != 3 || len(parts[1]) == 0 {
		return "", "", false
	}
	if len(parts[0]) > 0 && !bytes.Equal(parts[0], parts[1]) {
		return "", "", false
	}
	return string(parts[1]), string(parts[2]), true
}
