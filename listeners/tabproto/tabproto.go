// Package tabproto is the tab-delimited TagCache protocol (TagCache's TCP
// protocol on port 1984), the `tagcache.listeners.tcp` module:
//
//	listen tcp :1984
//
// A command is one line, its fields separated by a TAB and the line ended
// by LF (a CR before it is ignored); every command but an empty line gets a
// one-line reply. Commands are case-insensitive. The value of PUT and ADD is
// the rest of the line after the fourth TAB, so it may contain TABs (but no
// newline); the password of AUTH is the rest of the line after the second.
// `-` stands for no TTL and no tags.
//
//	PUT <key> <ttl_ms|-> <tag1,tag2|-> <value>   OK
//	ADD <key> <ttl_ms|-> <tag1,tag2|-> <value>   ADDED | EXISTS
//	INCR <key> [<by>] [<ttl_ms|->] [<tags|->]    VALUE <n>
//	DECR <key> [<by>] [<ttl_ms|->] [<tags|->]    VALUE <n>
//	GET <key>                                    VALUE <value> | NF
//	DEL <key>                                    DEL ok | DEL nf
//	INV_TAG <tag>                                INV_TAG <count>
//	KEYS_BY_TAG <tag> [<limit>] (alias KEYS)     KEYS <k1,k2,...>
//	STATS                                        STATS <hits> <misses> <puts> <invalidations> <hit_ratio>
//	AUTH <user> <password>                       OK
//	PING                                         PONG
//	TOUCH <key> <ttl_ms|->                       OK | NF
//	TTL <key>                                    TTL <ms> | TTL - | NF
//	TAGS_OF <key>                                TAGS <t1,t2,...> | TAGS - | NF
//	FLUSH                                        OK
//
// INCR and DECR work on signed 64-bit integers (written without '+' or
// leading zeros, as Redis requires too) and create an absent key
// with the value +by or -by and the given TTL and tags; on an existing key
// they keep its TTL and tags. Errors are `ERR <message>`.
package tabproto

import (
	"bufio"
	"bytes"
	"errors"
	"io"

	"github.com/caddyserver/caddy/v2"

	"github.com/tagcache/caddy-tagcache/listeners"
)

func init() {
	caddy.RegisterModule(Protocol{})
}

// Protocol is the tab-delimited TagCache protocol. It has no settings; the
// listener's limits apply.
type Protocol struct{}

// CaddyModule returns the Caddy module information.
func (Protocol) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "tagcache.listeners.tcp",
		New: func() caddy.Module { return new(Protocol) },
	}
}

// lineOverhead is what a PUT line holds besides its value (command, key,
// TTL, tags) in the default max_line_length.
const lineOverhead = 64 << 10

// DefaultMaxLineLength lets a PUT line carry the largest value.
func (Protocol) DefaultMaxLineLength(maxValueSize int) int {
	return maxValueSize + lineOverhead
}

var busyReply = []byte("ERR too many connections\n")

// BusyReply is sent to a client over max_connections.
func (Protocol) BusyReply() []byte { return busyReply }

// Serve answers the commands of one connection.
func (p Protocol) Serve(s *listeners.Session) error {
	c := p.NewFramedConn(s)
	defer c.Close()
	return c.Serve()
}

// NewFramedConn returns the state of one connection, for the listener's
// event loops.
func (Protocol) NewFramedConn(s *listeners.Session) listeners.FramedConn {
	return &client{s: s, w: s.W}
}

// FrameLength measures the command at the start of buf: one line.
func (*client) FrameLength(buf []byte) int {
	return bytes.IndexByte(buf, '\n') + 1
}

// ServeCommand answers one command line.
func (c *client) ServeCommand() error {
	line, err := c.readLine()
	switch {
	case errors.Is(err, errLineTooLong):
		c.fail("line too long")
	case err != nil:
		return err
	default:
		c.exec(line)
	}
	return nil
}

// Serve answers the connection's commands until it ends.
func (c *client) Serve() error {
	for {
		if err := c.ServeCommand(); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
		if err := c.s.FlushIfIdle(); err != nil {
			return err
		}
	}
}

// Close has nothing to release.
func (*client) Close() {}

var errLineTooLong = errors.New("line too long")

// maxKeptLineBuffer is the largest buffer for long lines a session keeps
// between commands; a larger one, grown for one large PUT, is dropped.
const maxKeptLineBuffer = 64 << 10

// readLine returns the next line without its line ending. The line is valid
// until the next call. A line longer than max_line_length is read up to its
// end and thrown away, and errLineTooLong returned, so that the next line
// is read in sync.
func (c *client) readLine() ([]byte, error) {
	max := c.s.Limits.MaxLineLength
	line, err := c.s.R.ReadSlice('\n')
	if err == bufio.ErrBufferFull {
		if cap(c.long) > maxKeptLineBuffer {
			c.long = nil
		}
		c.long = append(c.long[:0], line...)
		for err == bufio.ErrBufferFull {
			if len(c.long) > max+2 {
				return nil, c.discardLine()
			}
			line, err = c.s.R.ReadSlice('\n')
			c.long = append(c.long, line...)
		}
		line = c.long
	}
	if err != nil {
		return nil, err // a last line without LF is not a command
	}
	line = line[:len(line)-1]
	if n := len(line); n > 0 && line[n-1] == '\r' {
		line = line[:n-1]
	}
	if len(line) > max {
		return nil, errLineTooLong
	}
	return line, nil
}

// discardLine skips input up to the end of the current line.
func (c *client) discardLine() error {
	c.long = c.long[:0]
	for {
		_, err := c.s.R.ReadSlice('\n')
		switch err {
		case nil:
			return errLineTooLong
		case bufio.ErrBufferFull:
		default:
			return err
		}
	}
}

// Interface guards
var (
	_ listeners.FramedProtocol = (*Protocol)(nil)
	_ listeners.BusyReplier    = (*Protocol)(nil)
	_ listeners.LineLimiter    = (*Protocol)(nil)
)
