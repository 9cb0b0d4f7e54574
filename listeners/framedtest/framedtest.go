// Package framedtest checks implementations of listeners.FramedConn: it
// answers a client's input the way a listener's event loop does, so that a
// protocol's tests can compare that with its Serve and catch a FrameLength
// that disagrees with what ServeCommand reads.
package framedtest

import (
	"errors"
	"io"
	"testing"

	"github.com/tagcache/caddy-tagcache/listeners"
)

// ErrWouldBlock is what a Feed returns when the bytes released so far are
// used up: the event loop's reader does the same when the socket has
// nothing more.
var ErrWouldBlock = errors.New("framedtest: no more input yet")

// Feed is a client's input, released to the reader piece by piece.
type Feed struct {
	input    []byte
	released int
	read     int
	blocking bool // after a handoff to Serve: everything, then io.EOF
}

// NewFeed returns a feed of input with nothing released yet.
func NewFeed(input []byte) *Feed { return &Feed{input: input} }

func (f *Feed) Read(p []byte) (int, error) {
	limit := f.released
	if f.blocking {
		limit = len(f.input)
	}
	if f.read == limit {
		if f.read == len(f.input) {
			return 0, io.EOF
		}
		return 0, ErrWouldBlock
	}
	n := copy(p, f.input[f.read:limit])
	f.read += n
	return n, nil
}

// Drive answers the feed's input on fc as an event loop does, releasing at
// most chunk bytes at a time and reading once after each release: it calls
// ServeCommand for every whole command that FrameLength measures and
// flushes s.W after each batch. Where the loop would move the connection
// to a goroutine (FrameLength < 0, a command larger than s.R's buffer,
// ErrServeBlocking) it calls Serve on the rest of the input. It returns
// the error that ended the connection, nil at the end of the input, and
// fails t when ServeCommand reads other than the bytes FrameLength
// measured. s.R must read from f; Drive does not call fc.Close.
func Drive(t testing.TB, fc listeners.FramedConn, s *listeners.Session, f *Feed, chunk int) error {
	t.Helper()
	if chunk <= 0 {
		t.Fatalf("chunk must be positive, got %d", chunk)
	}
	serve := func() error {
		f.blocking = true
		err := fc.Serve()
		if ferr := s.W.Flush(); err == nil {
			err = ferr
		}
		return err
	}
	for {
		f.released = min(f.released+chunk, len(f.input))
		_, err := s.R.Peek(s.R.Buffered() + 1)
		atEOF := errors.Is(err, io.EOF)
		for s.R.Buffered() > 0 {
			buf, _ := s.R.Peek(s.R.Buffered())
			n := fc.FrameLength(buf)
			step := listeners.NextFrameStep(n, len(buf), s.R.Size())
			if step == listeners.FrameHandoff {
				return serve()
			}
			if step == listeners.FrameWait {
				break
			}
			before := s.R.Buffered()
			err := fc.ServeCommand()
			if errors.Is(err, ErrWouldBlock) {
				t.Fatalf("ServeCommand read past the %d bytes FrameLength measured in %q", n, buf)
			}
			if used := before - s.R.Buffered(); used != n {
				t.Fatalf("FrameLength measured %d bytes of %q, ServeCommand read %d", n, buf, used)
			}
			switch {
			case errors.Is(err, listeners.ErrServeBlocking):
				return serve()
			case err != nil:
				if ferr := s.W.Flush(); ferr != nil {
					return ferr
				}
				return err
			}
		}
		if err := s.W.Flush(); err != nil {
			return err
		}
		if atEOF {
			return nil
		}
	}
}
