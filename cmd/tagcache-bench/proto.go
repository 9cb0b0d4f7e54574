package main

import (
	"bufio"
	"bytes"
	"fmt"
	"strconv"

	"github.com/tagcache/caddy-tagcache/internal/lineclient"
)

// protocol writes requests and reads their replies. A reply the protocol
// defines as a failure (an error line) is returned as lineclient.ReplyError; anything
// else that goes wrong is an I/O or framing error that ends the connection.
type protocol interface {
	writeSet(w *bufio.Writer, key, value []byte)
	writeGet(w *bufio.Writer, key []byte)
	writeAuth(w *bufio.Writer, user, password string)
	readSet(r *bufio.Reader) error
	readGet(r *bufio.Reader) (hit bool, err error)
	readAuth(r *bufio.Reader) error
}

// tab is the tab-delimited TagCache protocol.
type tab struct{}

func (tab) writeSet(w *bufio.Writer, key, value []byte) {
	w.WriteString("PUT\t")
	w.Write(key)
	w.WriteString("\t-\t-\t")
	w.Write(value)
	w.WriteByte('\n')
}

func (tab) writeGet(w *bufio.Writer, key []byte) {
	w.WriteString("GET\t")
	w.Write(key)
	w.WriteByte('\n')
}

func (tab) writeAuth(w *bufio.Writer, user, password string) {
	fmt.Fprintf(w, "AUTH\t%s\t%s\n", user, password)
}

func (tab) readSet(r *bufio.Reader) error  { return lineclient.Expect(r, "OK") }
func (tab) readAuth(r *bufio.Reader) error { return lineclient.Expect(r, "OK") }

func (tab) readGet(r *bufio.Reader) (bool, error) {
	line, err := lineclient.ReadLine(r)
	switch {
	case err != nil:
		return false, err
	case bytes.HasPrefix(line, []byte("VALUE ")):
		return true, nil
	case string(line) == "NF":
		return false, nil
	}
	return false, lineclient.ReplyError{Line: string(line)}
}

// memcached is memcached's text protocol.
type memcached struct{}

func (memcached) writeSet(w *bufio.Writer, key, value []byte) {
	w.WriteString("set ")
	w.Write(key)
	w.WriteString(" 0 0 ")
	w.Write(strconv.AppendInt(w.AvailableBuffer(), int64(len(value)), 10))
	w.WriteString("\r\n")
	w.Write(value)
	w.WriteString("\r\n")
}

func (memcached) writeGet(w *bufio.Writer, key []byte) {
	w.WriteString("get ")
	w.Write(key)
	w.WriteString("\r\n")
}

// writeAuth uses memcached's text-protocol authentication: a set whose
// data is "user password".
func (memcached) writeAuth(w *bufio.Writer, user, password string) {
	data := user + " " + password
	fmt.Fprintf(w, "set auth 0 0 %d\r\n%s\r\n", len(data), data)
}

func (memcached) readSet(r *bufio.Reader) error  { return lineclient.Expect(r, "STORED") }
func (memcached) readAuth(r *bufio.Reader) error { return lineclient.Expect(r, "STORED") }

func (memcached) readGet(r *bufio.Reader) (bool, error) {
	line, err := lineclient.ReadLine(r)
	if err != nil {
		return false, err
	}
	if string(line) == "END" {
		return false, nil
	}
	if !bytes.HasPrefix(line, []byte("VALUE ")) {
		return false, lineclient.ReplyError{Line: string(line)}
	}
	// VALUE <key> <flags> <bytes> [<cas>]
	n, ok := atoi(field(line, 3))
	if !ok {
		return false, fmt.Errorf("malformed reply %q", line)
	}
	if _, err := r.Discard(n + 2); err != nil {
		return false, err
	}
	if err := lineclient.Expect(r, "END"); err != nil {
		if _, ok := err.(lineclient.ReplyError); ok {
			return false, fmt.Errorf("get reply not ended by END: %v", err)
		}
		return false, err
	}
	return true, nil
}

var protocols = map[string]protocol{"tab": tab{}, "memcached": memcached{}}

// field returns the i-th space-separated field of line, nil if it has
// fewer.
func field(line []byte, i int) []byte {
	for ; ; i-- {
		line = bytes.TrimLeft(line, " ")
		f, rest, _ := bytes.Cut(line, []byte{' '})
		if i == 0 || len(f) == 0 {
			return f
		}
		line = rest
	}
}

// atoi parses a non-negative decimal int without allocating.
func atoi(b []byte) (int, bool) {
	if len(b) == 0 || len(b) > 9 {
		return 0, false
	}
	n := 0
	for _, d := range b {
		if d < '0' || d > '9' {
			return 0, false
		}
		n = n*10 + int(d-'0')
	}
	return n, true
}
