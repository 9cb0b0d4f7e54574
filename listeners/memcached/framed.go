package memcached

import (
	"encoding/binary"
	"errors"
	"io"

	"github.com/tagcache/caddy-tagcache/listeners"
)

// A connection as a listeners.FramedConn. FrameLength measures a command
// without reading it; ServeCommand and Serve answer commands with the same
// functions (answer, then answerText or answerBinary), so the two only
// differ in when the replies are flushed. FrameLength measures a command
// as its line or header plus the data block it announces, which every
// command that is answered reads whole (a refused one swallows it before
// answering). It returns -1 for the rest, which Serve answers with the
// error paths the blocking reads were written for: a line too long, a
// malformed or too large length, a binary request that ends the
// connection.

// Serve answers the connection's commands until the client quits or goes
// away, flushing the replies whenever the client's input is used up.
func (c *conn) Serve() error {
	err := c.serve()
	if ferr := c.w.Flush(); err == nil {
		err = endOfInput(ferr)
	}
	return err
}

func (c *conn) serve() error {
	for {
		if err := c.ServeCommand(); err != nil {
			return endOfInput(err) // a quit is io.EOF
		}
		if err := c.s.FlushIfIdle(); err != nil {
			return err
		}
	}
}

// ServeCommand answers the command FrameLength measured, which is all
// buffered; a quit ends the connection with io.EOF.
func (c *conn) ServeCommand() error {
	if err := c.chooseProtocol(); err != nil {
		return err
	}
	err := c.answer()
	if errors.Is(err, errQuit) {
		return io.EOF
	}
	return err
}

// chooseProtocol sets the connection's protocol from its first byte, if it
// is not set yet.
func (c *conn) chooseProtocol() error {
	if c.proto != protoUnknown {
		return nil
	}
	first, err := c.r.Peek(1)
	if err != nil {
		return err
	}
	c.proto, err = c.m.protocolOf(first[0])
	return err
}

// answer reads one command and answers it, counting it for the listener's
// stats unless it ended the connection.
func (c *conn) answer() error {
	var err error
	if c.proto == protoBinary {
		err = c.answerBinary()
	} else {
		err = c.answerText()
	}
	if err == nil {
		c.s.CountCommand(c.failed)
	}
	c.failed = false
	return err
}

// Close ends the connection's count.
func (c *conn) Close() {
	c.m.shared.counters.currConns.Add(-1)
}

// FrameLength measures the command at the start of buf as answerText or
// answerBinary will read it.
func (c *conn) FrameLength(buf []byte) int {
	p := c.proto
	if p == protoUnknown {
		var err error
		if p, err = c.m.protocolOf(buf[0]); err != nil {
			return -1
		}
	}
	if p == protoBinary {
		return c.frameBinary(buf)
	}
	return c.frameText(buf)
}

// frameText measures a text command: its line, and the data block that
// follows the line of a storage command.
func (c *conn) frameText(buf []byte) int {
	line, end := listeners.FrameLine(buf, c.maxLineLength())
	if end <= 0 {
		return end
	}
	data := c.dataLength(line)
	if data < 0 {
		return -1
	}
	return end + data
}

// dataLength returns the length of the data block, \r\n included, that
// follows a text command line: 0 for a command without one, -1 if the
// command announces one but is refused before it is read (a malformed or
// too large length, a wrong number of arguments), or is an auth token
// larger than the limit.
func (c *conn) dataLength(line []byte) int {
	cmd, args := cutToken(line)
	if !c.s.Authenticated() {
		// As textAuth.
		if string(cmd) != "set" {
			return 0
		}
		n, length := countArgs(args, 3, 4)
		if n < 4 {
			return 0
		}
		size, ok := parseUint32(length)
		switch {
		case !ok:
			return 0
		case size > maxAuthPayload:
			return -1
		}
		return int(size) + 2
	}
	// As storage and metaSet: the argument that holds the length, and the
	// allowed numbers of arguments.
	var lenArg, minArgs, maxArgs int
	switch string(cmd) {
	case "set", "add", "replace", "append", "prepend":
		lenArg, minArgs, maxArgs = 3, 4, 6
	case "cas":
		lenArg, minArgs, maxArgs = 3, 5, 7
	case "ms":
		lenArg, minArgs, maxArgs = 1, 2, len(args) // any number of flags
	default:
		return 0
	}
	n, length := countArgs(args, lenArg, maxArgs+1)
	if n < minArgs || n > maxArgs {
		return -1
	}
	vlen, ok := parseInt32(length)
	if !ok || vlen < 0 || int(vlen) > c.maxValueSize() {
		return -1
	}
	return int(vlen) + 2
}

// countArgs counts the tokens of args, up to limit, and returns the one at
// index i (nil if there are fewer).
func countArgs(args []byte, i, limit int) (n int, arg []byte) {
	for tok, rest := cutToken(args); len(tok) > 0 && n < limit; tok, rest = cutToken(rest) {
		if n == i {
			arg = tok
		}
		n++
	}
	return n, arg
}

// frameBinary measures a binary request: its header and body.
func (c *conn) frameBinary(buf []byte) int {
	if buf[0] != magicRequest {
		return -1
	}
	if len(buf) < headerLen {
		return 0
	}
	op, _ := plainOpcode(buf[1])
	keyLen, extLen := int(binary.BigEndian.Uint16(buf[2:])), int(buf[4])
	bodyLen := int(binary.BigEndian.Uint32(buf[8:]))
	value := bodyLen - extLen - keyLen
	if value < 0 || bodyLen > maxBodyLen || keyLen > c.maxKeyLength() || !c.binAllowed(op) {
		return -1 // answered with an error that ends the connection
	}
	known, valid := requestShape(op, extLen, keyLen, value)
	switch {
	case !known:
		// Answered with an error; the body is skipped.
	case !valid:
		return -1
	case op == opSet || op == opAdd || op == opReplace || op == opAppend || op == opPrepend:
		if value > c.maxValueSize() {
			return -1
		}
	case op == opSASLAuth || op == opSASLStep:
		if value > maxAuthPayload {
			return -1
		}
	}
	return headerLen + bodyLen
}
