package resp

import (
	"bufio"
	"bytes"
	"errors"
	"io"

	"github.com/tagcache/caddy-tagcache/listeners"
	"github.com/tagcache/caddy-tagcache/store"
)

// Limits of the request parser. Redis's own: an inline command or a header
// line may be 64 KiB, a command may have 1M arguments (Redis allows up to
// 2^31, but preallocates at most 1024), and until the client authenticates
// a command may have 10 arguments of 16 KiB each.
const (
	defaultMaxLine     = 64 << 10
	maxArgs            = 1 << 20
	preallocArgs       = 1024
	unauthMaxArgs      = 10
	unauthMaxBulk      = 16 << 10
	minCommandBytes    = 64 << 20
	keepArgBufferBytes = 256 << 10
)

// protocolError is a malformed request. Redis answers it with
// "-ERR Protocol error: ..." and closes the connection, since it cannot
// know where the next command starts.
type protocolError string

func (e protocolError) Error() string { return "Protocol error: " + string(e) }

// span locates one argument in reader.buf.
type span struct{ start, end int }

// reader parses commands: RESP arrays of bulk strings, or inline commands
// (a line of space-separated, optionally quoted words, for telnet users).
// The arguments it returns alias its buffer and are valid until the next
// read.
type reader struct {
	r *bufio.Reader
	// maxLine bounds an inline command and a header line; maxBulk one
	// argument; maxCommand the arguments of one command together.
	maxLine, maxBulk, maxCommand int
	// unauthenticated applies Redis's tighter limits to a client that has
	// not authenticated yet.
	unauthenticated func() bool

	argv  [][]byte
	spans []span
	buf   []byte
	line  []byte // a line longer than r's buffer, put together

	// framed is the length of the array request that frameLength last
	// measured whole at the start of r's buffer, and framedSpans its
	// arguments there: read then takes them in place instead of parsing
	// the request again. 0: none.
	framed      int
	framedSpans []span
}

func newReader(r *bufio.Reader, maxLine, maxBulk int, unauthenticated func() bool) *reader {
	if maxLine <= 0 {
		maxLine = defaultMaxLine
	}
	maxCommand := max(minCommandBytes, 4*maxBulk)
	return &reader{r: r, maxLine: maxLine, maxBulk: maxBulk, maxCommand: maxCommand, unauthenticated: unauthenticated}
}

// read returns the arguments of the next request, none for an empty
// inline line or array, which Redis skips. A malformed request is a
// protocolError; other errors come from the connection.
func (p *reader) read() ([][]byte, error) {
	if p.framed > 0 {
		return p.readFramed()
	}
	if cap(p.buf) > keepArgBufferBytes {
		p.buf = nil // an idle connection keeps no large value
	}
	first, err := p.r.Peek(1)
	if err != nil {
		return nil, err
	}
	var n int
	if first[0] == '*' {
		n, err = p.readArray()
	} else {
		n, err = p.readInline()
	}
	if err != nil || n == 0 {
		return nil, err
	}
	return p.args(), nil
}

// readFramed returns the arguments of the request that frameLength
// measured, in place in r's buffer: they stay there, as read's results
// must, until the next read, which is the first to fill the buffer again.
func (p *reader) readFramed() ([][]byte, error) {
	buf, err := p.r.Peek(p.framed)
	if err != nil {
		return nil, err
	}
	p.argv = appendArgs(p.argv[:0], buf, p.framedSpans)
	_, err = p.r.Discard(p.framed)
	p.framed = 0
	if len(p.argv) == 0 {
		return nil, err
	}
	return p.argv, err
}

// args turns the spans into slices of buf; buf may have moved while the
// command was read, so the slices are made at the end.
func (p *reader) args() [][]byte {
	p.argv = appendArgs(p.argv[:0], p.buf, p.spans)
	return p.argv
}

// appendArgs appends the arguments at spans of buf to argv.
func appendArgs(argv [][]byte, buf []byte, spans []span) [][]byte {
	for _, s := range spans {
		argv = append(argv, buf[s.start:s.end:s.end])
	}
	return argv
}

// readLine returns the next line without its CRLF (a bare LF ends a line
// too). tooLong is the error for a line over maxLine. The line aliases the
// reader's buffers until the next read.
func (p *reader) readLine(tooLong string) ([]byte, error) {
	line, err := p.r.ReadSlice('\n')
	if errors.Is(err, bufio.ErrBufferFull) {
		p.line = append(p.line[:0], line...)
		for errors.Is(err, bufio.ErrBufferFull) {
			if len(p.line) > p.maxLine {
				return nil, protocolError(tooLong)
			}
			line, err = p.r.ReadSlice('\n')
			p.line = append(p.line, line...)
		}
		line = p.line
	}
	if err != nil {
		return nil, err
	}
	line = line[:len(line)-1]
	if len(line) > 0 && line[len(line)-1] == '\r' {
		line = line[:len(line)-1]
	}
	if len(line) > p.maxLine {
		return nil, protocolError(tooLong)
	}
	return line, nil
}

// readArray reads "*<n>" and n bulk strings.
func (p *reader) readArray() (int, error) {
	line, err := p.readLine("too big mbulk count string")
	if err != nil {
		return 0, err
	}
	n, ok := store.ParseCanonicalInt(line[1:])
	unauth := p.unauthenticated()
	switch {
	case !ok || n > maxArgs:
		return 0, protocolError("invalid multibulk length")
	case unauth && n > unauthMaxArgs:
		return 0, protocolError("unauthenticated multibulk length")
	case n <= 0:
		return 0, nil
	}
	if cap(p.spans) < int(min(n, preallocArgs)) {
		p.spans = make([]span, 0, min(n, preallocArgs))
	}
	p.spans = p.spans[:0]
	p.buf = p.buf[:0]
	for i := int64(0); i < n; i++ {
		line, err := p.readLine("too big bulk count string")
		if err != nil {
			return 0, err
		}
		if len(line) == 0 || line[0] != '$' {
			got := byte('\r') // what Redis finds on an empty line
			if len(line) > 0 {
				got = line[0]
			}
			return 0, protocolError("expected '$', got '" + string([]byte{got}) + "'")
		}
		size, ok := store.ParseCanonicalInt(line[1:])
		switch {
		case !ok || size < 0 || size > int64(p.maxBulk):
			return 0, protocolError("invalid bulk length")
		case unauth && size > unauthMaxBulk:
			return 0, protocolError("unauthenticated bulk length")
		}
		start := len(p.buf)
		if start+int(size) > p.maxCommand {
			return 0, protocolError("too big command")
		}
		p.buf = grow(p.buf, int(size))
		if _, err := io.ReadFull(p.r, p.buf[start:]); err != nil {
			return 0, unexpectedEOF(err)
		}
		// The CRLF after the data is skipped unchecked, as Redis does.
		if _, err := p.r.Discard(2); err != nil {
			return 0, unexpectedEOF(err)
		}
		p.spans = append(p.spans, span{start, len(p.buf)})
	}
	return int(n), nil
}

// grow extends b by n bytes, reallocating if needed.
func grow(b []byte, n int) []byte {
	if cap(b)-len(b) >= n {
		return b[:len(b)+n]
	}
	nb := make([]byte, len(b)+n, 2*cap(b)+n)
	copy(nb, b)
	return nb
}

func unexpectedEOF(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}

// readInline reads a line and splits it into arguments.
func (p *reader) readInline() (int, error) {
	line, err := p.readLine("too big inline request")
	if err != nil {
		return 0, err
	}
	p.spans = p.spans[:0]
	p.buf = p.buf[:0]
	p.buf, p.spans, err = splitArgs(line, p.buf, p.spans)
	if err != nil {
		return 0, err
	}
	return len(p.spans), nil
}

// frameLength measures the request at the start of buf as read would
// read it, without reading: the contract is listeners.FramedConn's
// FrameLength. It returns -1 for every request that read would not just
// return (anything malformed or over a limit, so that the blocking path
// answers it with the reader's protocol error) and for inline commands
// with quotes, which only splitArgs can check.
func (p *reader) frameLength(buf []byte) int {
	p.framed = 0
	if buf[0] != '*' {
		line, end := p.frameLine(buf, 0)
		if end > 0 && bytes.IndexAny(line, `"'`) >= 0 {
			return -1
		}
		return end
	}
	line, pos := p.frameLine(buf, 0)
	if pos <= 0 {
		return pos
	}
	n, ok := store.ParseCanonicalInt(line[1:])
	unauth := p.unauthenticated()
	switch {
	case !ok || n > maxArgs || unauth && n > unauthMaxArgs:
		return -1
	}
	p.framedSpans = p.framedSpans[:0]
	if n <= 0 {
		p.framed = pos
		return pos
	}
	data := 0 // the arguments' bytes, which maxCommand bounds
	for range n {
		line, next := p.frameLine(buf, pos)
		if next <= 0 {
			return next
		}
		if len(line) == 0 || line[0] != '$' {
			return -1
		}
		size, ok := store.ParseCanonicalInt(line[1:])
		if !ok || size < 0 || size > int64(p.maxBulk) || unauth && size > unauthMaxBulk ||
			data+int(size) > p.maxCommand {
			return -1
		}
		data += int(size)
		p.framedSpans = append(p.framedSpans, span{next, next + int(size)})
		pos = next + int(size) + 2
		// The reader skips the two bytes after the data unchecked;
		// anything but CRLF there is left to it.
		for i := pos - 2; i < min(pos, len(buf)); i++ {
			if buf[i] != "\r\n"[i-(pos-2)] {
				return -1
			}
		}
	}
	if pos <= len(buf) {
		p.framed = pos
	}
	return pos
}

// frameLine finds the line that starts at buf[start] as readLine reads
// it. It returns the line without its line end and the offset after it;
// the offset is 0 if the line is not complete yet and -1 if it is longer
// than maxLine.
func (p *reader) frameLine(buf []byte, start int) ([]byte, int) {
	line, n := listeners.FrameLine(buf[min(start, len(buf)):], p.maxLine)
	if n > 0 {
		n += start
	}
	return line, n
}

// splitArgs splits an inline command line as Redis's sdssplitargs does:
// words are separated by spaces and tabs; "double quotes" take the escapes
// \n \r \t \b \a \xHH and \<any char>; 'single quotes' take \' only. A
// closing quote must be followed by a space or the end of the line. The
// words are appended to buf and located by spans. A NUL byte ends the
// line, as it ends Redis's C string.
func splitArgs(line, buf []byte, spans []span) ([]byte, []span, error) {
	at := func(i int) byte {
		if i < len(line) {
			return line[i]
		}
		return 0
	}
	i := 0
	for {
		for at(i) != 0 && isSpace(at(i)) {
			i++
		}
		if at(i) == 0 {
			return buf, spans, nil
		}
		start := len(buf)
		quote := byte(0) // the quote the word is in, if any
		for done := false; !done; {
			c := at(i)
			switch {
			case quote == '"' && c == '\\' && at(i+1) == 'x' && isHex(at(i+2)) && isHex(at(i+3)):
				buf = append(buf, unhex(at(i+2))<<4|unhex(at(i+3)))
				i += 3
			case quote == '"' && c == '\\' && at(i+1) != 0:
				i++
				buf = append(buf, unescape(at(i)))
			case quote == '\'' && c == '\\' && at(i+1) == '\'':
				i++
				buf = append(buf, '\'')
			case quote != 0 && c == quote:
				if at(i+1) != 0 && !isSpace(at(i+1)) {
					return buf, spans, protocolError("unbalanced quotes in request")
				}
				done = true
			case quote != 0 && c == 0:
				return buf, spans, protocolError("unbalanced quotes in request")
			case quote != 0:
				buf = append(buf, c)
			case c == ' ' || c == '\n' || c == '\r' || c == '\t' || c == 0:
				done = true
			case c == '"' || c == '\'':
				quote = c
			default:
				buf = append(buf, c)
			}
			if at(i) != 0 {
				i++
			}
		}
		spans = append(spans, span{start, len(buf)})
	}
}

// isSpace is C's isspace in the C locale.
func isSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r'
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case c >= '0' && c <= '9':
		return c - '0'
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10
	}
	return c - 'A' + 10
}

func unescape(c byte) byte {
	switch c {
	case 'n':
		return '\n'
	case 'r':
		return '\r'
	case 't':
		return '\t'
	case 'b':
		return '\b'
	case 'a':
		return '\a'
	}
	return c
}
