package listeners

import (
	"bufio"
	"errors"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// ErrStopping is returned by a session's reads once its listener stops: the
// session ends after the command it is answering.
var ErrStopping = errors.New("listener stopping")

// Buffer sizes of a session. Reads that do not fit are handled by the
// protocol (bufio.ErrBufferFull); a larger write goes straight to the
// connection.
const (
	readBufferSize  = 8 << 10
	writeBufferSize = 8 << 10
)

var (
	readerPool = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, readBufferSize) }}
	writerPool = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, writeBufferSize) }}
)

// longAgo is a deadline in the past: setting it makes a blocked read return
// at once.
var longAgo = time.Unix(1, 0)

// conn is a client connection as the listener accepted it, under TLS if
// any. Before each read and write it pushes the idle deadline forward, so
// a client that sends nothing, or reads nothing of what it is sent, for
// idle_timeout is disconnected. It counts the bytes on the wire and lets
// the listener end the session between commands when it stops.
type conn struct {
	net.Conn
	idle     time.Duration // 0: no idle timeout
	counters *counters
	stopping atomic.Bool

	// The deadlines last set. A deadline is pushed forward only once it is
	// idle/16 old, which saves most of the timer updates of a busy
	// connection: the idle timeout is then between 15/16 of idle_timeout
	// and idle_timeout.
	readUntil, writeUntil time.Time
}

func (c *conn) Read(p []byte) (int, error) {
	if err := c.extend(&c.readUntil, c.Conn.SetReadDeadline); err != nil {
		return 0, err
	}
	// Checked after the deadline is set: if stop ran before this check,
	// its deadline in the past was set after ours and wins.
	if c.stopping.Load() {
		return 0, ErrStopping
	}
	n, err := c.Conn.Read(p)
	c.counters.bytesRead.Add(uint64(n))
	if err != nil && c.stopping.Load() {
		err = ErrStopping
	}
	return n, err
}

func (c *conn) Write(p []byte) (int, error) {
	if err := c.extend(&c.writeUntil, c.Conn.SetWriteDeadline); err != nil {
		return 0, err
	}
	n, err := c.Conn.Write(p)
	c.counters.bytesWritten.Add(uint64(n))
	return n, err
}

// extend pushes the deadline last set to *until forward with set, if it is
// due.
func (c *conn) extend(until *time.Time, set func(time.Time) error) error {
	if c.idle <= 0 {
		return nil
	}
	next := time.Now().Add(c.idle)
	if next.Sub(*until) <= c.idle/16 {
		return nil
	}
	*until = next
	return set(next)
}

// stop makes the session end once it has answered what it already read:
// its next read fails with ErrStopping, and a read blocked now returns.
func (c *conn) stop() {
	c.stopping.Store(true)
	_ = c.Conn.SetReadDeadline(longAgo)
}

func (c *conn) closeNow() { c.Conn.Close() }

// isTimeout reports whether err is a deadline expiring.
func isTimeout(err error) bool {
	return errors.Is(err, os.ErrDeadlineExceeded)
}
