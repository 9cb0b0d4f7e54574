// Package lineclient reads the replies of line-based cache protocols (the
// tab protocol, memcached text) for the load tools.
package lineclient

import (
	"bufio"
	"bytes"
	"strconv"
)

// ReplyError is a well-formed reply that is not the one expected.
type ReplyError struct{ Line string }

func (e ReplyError) Error() string { return "server replied " + strconv.Quote(e.Line) }

// ReadLine returns the next reply line without its line ending; it is
// valid until the next read from r.
func ReadLine(r *bufio.Reader) ([]byte, error) {
	line, err := r.ReadSlice('\n')
	if err != nil {
		return nil, err
	}
	return bytes.TrimRight(line, "\r\n"), nil
}

// Expect reads one line and returns a ReplyError unless it is want.
func Expect(r *bufio.Reader, want string) error {
	line, err := ReadLine(r)
	if err != nil {
		return err
	}
	if string(line) != want {
		return ReplyError{string(line)}
	}
	return nil
}
