// Package memcached serves a tagcache store over the memcached protocol:
// the text protocol with the meta commands, and the binary protocol with
// SASL PLAIN. A connection's first byte tells the two apart, as memcached's
// own auto-negotiation does. Entries are the store's: a value set here is
// the same bytes and client flags over every other front, and the tag
// extension (documented in the README) gives memcached clients the tags.
package memcached

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"sync/atomic"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/tagcache/caddy-tagcache/listeners"
	"github.com/tagcache/caddy-tagcache/store"
)

func init() {
	caddy.RegisterModule(Memcached{})
}

// Version is what the version command and stats report: the memcached
// protocol version this server speaks, and who it is.
const Version = "1.6.0-tagcache"

// Memcached is the memcached protocol for tagcache listeners, module
// tagcache.listeners.memcached. Stock memcached clients and tools work
// against it unchanged.
type Memcached struct {
	// Binding restricts the protocols clients may speak, as memcached's -B
	// option does: "auto" (text or binary, told apart by each connection's
	// first byte), "ascii" or "binary". A connection speaking another
	// protocol is closed. Default: auto.
	Binding string `json:"binding,omitempty"`

	// DisableFlush refuses flush_all and the binary Flush whatever the
	// client's permissions, as memcached's -F option does. Default: false.
	DisableFlush bool `json:"disable_flush,omitempty"`

	// shared is what the connections of this listener share; Provision
	// creates it.
	shared *shared
}

// shared is the state of a listener that its connections share.
type shared struct {
	counters  counters
	verbosity atomic.Uint32
}

// Bindings accepted by Memcached.Binding.
const (
	bindingAuto   = "auto"
	bindingASCII  = "ascii"
	bindingBinary = "binary"
)

// CaddyModule returns the Caddy module information.
func (Memcached) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "tagcache.listeners.memcached",
		New: func() caddy.Module { return new(Memcached) },
	}
}

// Provision creates the listener's shared state.
func (m *Memcached) Provision(caddy.Context) error {
	m.shared = new(shared)
	return nil
}

// Validate checks the configuration.
func (m *Memcached) Validate() error {
	switch m.Binding {
	case "", bindingAuto, bindingASCII, bindingBinary:
		return nil
	}
	return fmt.Errorf("binding must be auto, ascii or binary, got %q", m.Binding)
}

// errBinding ends a connection that speaks a protocol the binding refuses.
var errBinding = errors.New("memcached: protocol not allowed by the listener's binding")

// Serve answers one client connection in the text or the binary protocol,
// chosen by its first byte (0x80 starts a binary request).
func (m *Memcached) Serve(s *listeners.Session) error {
	c := m.NewFramedConn(s)
	defer c.Close()
	return c.Serve()
}

// NewFramedConn returns the state of one client connection, which Serve
// and a listener's event loops answer.
func (m *Memcached) NewFramedConn(s *listeners.Session) listeners.FramedConn {
	cnt := &m.shared.counters
	cnt.currConns.Add(1)
	cnt.totalConns.Add(1)
	return &conn{m: m, s: s, r: s.R, w: s.W, st: s.Store}
}

// protocolOf returns the protocol of a connection whose first byte is
// first, or errBinding if the listener's binding refuses it.
func (m *Memcached) protocolOf(first byte) (protocol, error) {
	p := protoText
	if first == magicRequest {
		p = protoBinary
	}
	if p == protoBinary && m.Binding == bindingASCII || p == protoText && m.Binding == bindingBinary {
		return protoUnknown, errBinding
	}
	return p, nil
}

// protocol is what a connection speaks.
type protocol uint8

const (
	protoUnknown protocol = iota // no byte received yet
	protoText
	protoBinary
)

// conn is the state of one client connection. Its buffers are reused from
// command to command, so that answering a command allocates nothing.
type conn struct {
	m  *Memcached
	s  *listeners.Session
	r  *bufio.Reader
	w  *bufio.Writer
	st *store.Store

	// proto is chosen by the connection's first byte.
	proto protocol
	// req is the binary request being answered.
	req request
	// line holds the current command line; it stays valid while the
	// command reads its data block.
	line []byte
	toks [][]byte
	// peeked is how many bytes of r the current data block occupies: it is
	// read in place (bufio.Reader.Peek) and discarded once used.
	peeked int
	// value receives data blocks larger than r's buffer.
	value []byte
	// keyBuf and tagBuf hold base64-decoded keys and tags; out holds the
	// base64-encoded keys and tags of replies.
	keyBuf, tagBuf, out []byte
	tags                []string
	// head holds a binary request's extras and key.
	head []byte
	// noreply suppresses the reply of the current text command.
	noreply bool
	// failed records that the current command was answered with an error,
	// for the listener's command and error counts.
	failed bool
}

// endOfInput maps the end of the client's input to a clean end.
func endOfInput(err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return nil
	}
	return err
}

// maxKeyLength is the longest key accepted: the store's limit, which is
// memcached's 250 bytes unless the store is configured otherwise.
func (c *conn) maxKeyLength() int { return c.st.MaxKeyLength() }

// maxValueSize is the largest value accepted: the store's item limit, or
// the listener's if that is lower.
func (c *conn) maxValueSize() int {
	n := c.st.MaxItemSize()
	if l := c.s.Limits.MaxValueSize; l > 0 && l < n {
		n = l
	}
	return n
}

// await flushes the replies so far if fewer than n bytes of input are
// buffered, before a read waits for more.
func (c *conn) await(n int) error {
	if c.r.Buffered() < n && c.w.Buffered() > 0 {
		return c.w.Flush()
	}
	return nil
}

// readData reads an n-byte data block. It is read in place when it fits
// r's buffer, and is valid until release.
func (c *conn) readData(n int) ([]byte, error) {
	if err := c.await(n); err != nil {
		return nil, err
	}
	if n <= c.r.Size() {
		b, err := c.r.Peek(n)
		if err != nil {
			return nil, err
		}
		c.peeked = n
		return b, nil
	}
	buf := c.value
	if cap(buf) < n {
		buf = make([]byte, n)
		if n <= maxKeptBuffer {
			c.value = buf
		}
	}
	buf = buf[:n]
	if _, err := io.ReadFull(c.r, buf); err != nil {
		return nil, err
	}
	return buf, nil
}

// maxKeptBuffer bounds the buffer a connection keeps for large values;
// larger ones are allocated for their command only.
const maxKeptBuffer = 256 << 10

// release discards the data block read in place by readData.
func (c *conn) release() {
	if c.peeked > 0 {
		c.r.Discard(c.peeked)
		c.peeked = 0
	}
}

// swallow discards an n-byte data block the command refused, keeping the
// connection in step with the client.
func (c *conn) swallow(n int) error {
	if err := c.await(n); err != nil {
		return err
	}
	_, err := c.r.Discard(n)
	return err
}

// BusyReply is what memcached sends a client over its connection limit.
func (*Memcached) BusyReply() []byte { return []byte("ERROR Too many open connections\r\n") }

// DefaultMaxLineLength leaves room for multi-key gets of a few thousand
// keys; values travel in data blocks, not on the line.
func (*Memcached) DefaultMaxLineLength(int) int { return defaultMaxLine }

// Interface guards
var (
	_ caddy.Provisioner        = (*Memcached)(nil)
	_ caddy.Validator          = (*Memcached)(nil)
	_ caddyfile.Unmarshaler    = (*Memcached)(nil)
	_ listeners.Protocol       = (*Memcached)(nil)
	_ listeners.FramedProtocol = (*Memcached)(nil)
	_ listeners.BusyReplier    = (*Memcached)(nil)
	_ listeners.LineLimiter    = (*Memcached)(nil)
)
