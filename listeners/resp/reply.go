package resp

import (
	"bufio"
	"strconv"
)

// writer encodes replies into the session's buffered writer, in the
// connection's protocol version: RESP3 has its own null, map, set, push and
// verbatim types, which RESP2 spells as arrays and bulk strings.
//
// Each method encodes into the writer's free buffer (free), so a reply
// costs no allocation.
type writer struct {
	w     *bufio.Writer
	resp3 bool
	// failed records that an error was written since the last command
	// was counted, for the listener's command and error counts.
	failed bool
}

func (w *writer) write(b []byte) { w.w.Write(b) }

// headerRoom is room enough for a type byte, a length and CRLF.
const headerRoom = 24

// free returns the writer's free buffer to encode a reply of n bytes
// into. If it has less room, the writer is flushed first, so that the
// reply does not outgrow the buffer (and allocate); writing it would flush
// the writer anyway. A flush error stays in the writer, which returns it
// from the next write.
func (w *writer) free(n int) []byte {
	if w.w.Available() < n && w.w.Buffered() > 0 {
		w.w.Flush()
	}
	return w.w.AvailableBuffer()
}

// simple writes a simple string (+OK).
func (w *writer) simple(s string) {
	w.write(appendSimple(w.free(len(s)+3), s))
}

// errorReply writes an error; msg starts with its code (ERR, WRONGTYPE, ...).
func (w *writer) errorReply(msg string) {
	w.failed = true
	w.write(appendError(w.free(len(msg)+3), msg))
}

func (w *writer) integer(n int64) {
	w.write(appendPrefixed(w.free(headerRoom), ':', n))
}

// bulk writes a bulk string; a large one is copied straight from b.
func (w *writer) bulk(b []byte) {
	small := len(b) <= 512
	room := headerRoom
	if small {
		room += len(b) + 2
	}
	buf := appendPrefixed(w.free(room), '$', int64(len(b)))
	if small {
		buf = append(buf, b...)
		w.write(append(buf, '\r', '\n'))
		return
	}
	w.write(buf)
	w.write(b)
	w.w.WriteString("\r\n")
}

func (w *writer) bulkString(s string) {
	buf := appendPrefixed(w.free(headerRoom+len(s)+2), '$', int64(len(s)))
	buf = append(buf, s...)
	w.write(append(buf, '\r', '\n'))
}

// bulkInt writes n as a bulk string, as SCAN's cursor and TIME's fields are.
func (w *writer) bulkInt(n int64) {
	var digits [20]byte
	w.bulk(strconv.AppendInt(digits[:0], n, 10))
}

// null writes a missing value: RESP2's null bulk string, RESP3's null.
func (w *writer) null() {
	if w.resp3 {
		w.w.WriteString("_\r\n")
		return
	}
	w.w.WriteString("$-1\r\n")
}

// nullArray writes RESP2's null array (an aborted EXEC), RESP3's null.
func (w *writer) nullArray() {
	if w.resp3 {
		w.w.WriteString("_\r\n")
		return
	}
	w.w.WriteString("*-1\r\n")
}

func (w *writer) array(n int) {
	w.write(appendPrefixed(w.free(headerRoom), '*', int64(n)))
}

// mapHeader starts a map of n pairs; RESP2 gets an array of 2n elements.
func (w *writer) mapHeader(n int) {
	if w.resp3 {
		w.write(appendPrefixed(w.free(headerRoom), '%', int64(n)))
		return
	}
	w.array(2 * n)
}

// setHeader starts a set of n elements; RESP2 gets an array.
func (w *writer) setHeader(n int) {
	if w.resp3 {
		w.write(appendPrefixed(w.free(headerRoom), '~', int64(n)))
		return
	}
	w.array(n)
}

// verbatim writes text as RESP3's verbatim string of format txt, a bulk
// string in RESP2 (INFO, CLIENT INFO and CLIENT LIST do this).
func (w *writer) verbatim(text string) {
	if !w.resp3 {
		w.bulkString(text)
		return
	}
	buf := appendPrefixed(w.free(headerRoom+len(text)+6), '=', int64(len(text)+4))
	buf = append(buf, "txt:"...)
	buf = append(buf, text...)
	w.write(append(buf, '\r', '\n'))
}

// stringArray writes a list of strings as an array of bulk strings.
func (w *writer) stringArray(list []string) {
	w.array(len(list))
	for _, s := range list {
		w.bulkString(s)
	}
}

func appendSimple(b []byte, s string) []byte {
	b = append(b, '+')
	b = append(b, s...)
	return append(b, '\r', '\n')
}

// appendError appends an error reply. CR and LF in msg become spaces, as
// Redis makes them, so that client bytes quoted in a message cannot break
// the protocol.
func appendError(b []byte, msg string) []byte {
	b = append(b, '-')
	for i := 0; i < len(msg); i++ {
		c := msg[i]
		if c == '\r' || c == '\n' {
			c = ' '
		}
		b = append(b, c)
	}
	return append(b, '\r', '\n')
}

// appendPrefixed appends a type byte, n and CRLF: an integer or a length.
func appendPrefixed(b []byte, prefix byte, n int64) []byte {
	b = append(b, prefix)
	b = strconv.AppendInt(b, n, 10)
	return append(b, '\r', '\n')
}

func appendBulk(b []byte, s string) []byte {
	b = appendPrefixed(b, '$', int64(len(s)))
	b = append(b, s...)
	return append(b, '\r', '\n')
}
