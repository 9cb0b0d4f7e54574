package listeners

import (
	"bytes"
	"errors"
)

// FramedProtocol is implemented by protocols that a listener can answer
// from its event loops instead of a goroutine per connection. On Linux, a
// plain TCP or unix socket connection is served by one of the listener's
// event loops (epoll, one read and one write per batch of commands, no
// goroutine switch), which calls FrameLength on the bytes it has read and
// ServeCommand for each whole command. Anything the loop cannot do without
// blocking (a command larger than the read buffer, a client that does not
// take its replies at once, a protocol mode that writes from elsewhere such
// as pub/sub) moves the connection to a goroutine of its own that calls
// Serve, which goes on from the same state. TLS connections and other
// systems always use a goroutine per connection.
type FramedProtocol interface {
	Protocol
	// NewFramedConn returns the state of one connection. Protocol.Serve(s)
	// must behave as NewFramedConn(s) followed by Serve and Close.
	NewFramedConn(s *Session) FramedConn
}

// FramedConn is one connection of a FramedProtocol.
type FramedConn interface {
	// FrameLength measures the command at the start of buf without
	// consuming it or changing what the connection answers (it may keep
	// what it measured for the ServeCommand that reads those bytes):
	//   - n > 0 and n <= len(buf): the first n bytes are one whole command,
	//     and ServeCommand will read exactly those n bytes;
	//   - n > len(buf): the command is n bytes long, and not all here yet;
	//   - 0: buf holds the start of a command whose length is not known yet
	//     (its first line is not complete);
	//   - n < 0: the command cannot be answered from the loop (for example
	//     it is malformed, so Serve should answer it with the protocol's
	//     error, or the connection needs Serve from now on).
	// buf is never empty.
	FrameLength(buf []byte) int
	// ServeCommand answers the one command that FrameLength measured,
	// reading it from the session's reader, which holds all of it, and
	// writing the replies to the session's writer; the loop flushes the
	// writer once the batch of commands it has read is answered. An error
	// ends the connection after the flush (io.EOF for a client's quit),
	// except ErrServeBlocking: the connection moves to Serve after this
	// command.
	ServeCommand() error
	// Serve answers the connection's commands from now on, blocking, as
	// Protocol.Serve does; its return value is treated as Protocol.Serve's.
	Serve() error
	// Close releases the connection's state. It is called once, when the
	// connection ends, whichever way it was served.
	Close()
}

// FrameStep is what an event loop does with a FrameLength measurement.
type FrameStep int

const (
	// FrameServe: a whole command is buffered; ServeCommand answers it.
	FrameServe FrameStep = iota
	// FrameWait: the rest of the command is on its way.
	FrameWait
	// FrameHandoff: Serve answers the command, from a goroutine (the
	// command cannot be answered from the loop, or cannot fit in the
	// read buffer).
	FrameHandoff
)

// NextFrameStep tells what a loop whose read buffer of size bytes holds
// buffered of them does with FrameLength's measurement n.
func NextFrameStep(n, buffered, size int) FrameStep {
	switch {
	case n < 0 || n > size || n == 0 && buffered == size:
		return FrameHandoff
	case n == 0 || n > buffered:
		return FrameWait
	}
	return FrameServe
}

// FrameLine finds the first line of buf as a line reader limited to max
// bytes reads it. It returns the line without its line end (LF or CRLF)
// and the length of the line with its end: 0 if the line is not complete
// yet, -1 if it is longer than max.
func FrameLine(buf []byte, max int) ([]byte, int) {
	i := bytes.IndexByte(buf, '\n')
	if i < 0 {
		if len(buf) > max+1 { // too long already, unless its last byte is a CR before the LF
			return nil, -1
		}
		return nil, 0
	}
	line := buf[:i]
	if n := len(line); n > 0 && line[n-1] == '\r' {
		line = line[:n-1]
	}
	if len(line) > max {
		return nil, -1
	}
	return line, i + 1
}

// ErrServeBlocking is returned by FramedConn.ServeCommand when the command
// it answered needs the connection served by Serve from now on.
var ErrServeBlocking = errors.New("connection needs a goroutine")
