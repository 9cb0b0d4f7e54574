// Package resp serves the tagcache stores over the Redis protocol, RESP2 and
// RESP3, so that redis-cli, redis-benchmark and the Redis client libraries
// work against them: strings, counters, keys and expiry, tags, pub/sub
// (with invalidation events from every front) and transactions. It is the
// tagcache.listeners.resp module; the listener framework accepts the
// connections and serves each from its event loops (FrameLength and
// ServeCommand) or by Serve.
package resp

import (
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/tagcache/caddy-tagcache/listeners"
	"github.com/tagcache/caddy-tagcache/store"
)

func init() {
	caddy.RegisterModule(Protocol{})
}

// Protocol is the Redis protocol. It has no settings: the listener's
// address, TLS, auth and limits are the framework's, and the store it
// serves first is the listener's store (SELECT changes it).
type Protocol struct{}

// CaddyModule returns the Caddy module information.
func (Protocol) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "tagcache.listeners.resp",
		New: func() caddy.Module { return new(Protocol) },
	}
}

// Serve answers one client's commands until it quits or the connection
// fails.
func (p *Protocol) Serve(s *listeners.Session) error {
	c := p.NewFramedConn(s)
	defer c.Close()
	return c.Serve()
}

// NewFramedConn returns the state of one client connection, which the
// listener's event loops serve command by command.
func (*Protocol) NewFramedConn(s *listeners.Session) listeners.FramedConn { return newConn(s) }

// conn is the state of one client connection.
type conn struct {
	s  *listeners.Session
	rd *reader
	w  writer
	// mu serializes writes to the session's writer between the command
	// loop and the delivery of pub/sub messages.
	mu sync.Mutex

	db      *store.Store
	dbIndex int
	dbName  string
	client  *client
	multi   *transaction
	watched []watchedKey
	sub     *subscriber
	// hooks are the stores whose invalidation hooks the connection holds,
	// from its first subscription on (hooked).
	hooks  []*store.Store
	hooked bool
	quit   bool
	// idle says the next command starts a batch: the client's input was
	// used up after the last one.
	idle bool
	// blocking says the connection is served by Serve, which may block:
	// pub/sub messages are delivered from then on.
	blocking bool
}

func newConn(s *listeners.Session) *conn {
	c := &conn{s: s, w: writer{w: s.W}, client: registerClient(s.Conn), idle: true}
	c.setDB(s.Store)
	maxBulk := s.Limits.MaxValueSize
	if maxBulk <= 0 {
		maxBulk = max(s.Store.Config().MaxItemSize, defaultMaxLine)
	}
	c.rd = newReader(s.R, s.Limits.MaxLineLength, maxBulk, func() bool { return !s.Authenticated() })
	return c
}

// setDB makes st the selected store and finds its index and name.
func (c *conn) setDB(st *store.Store) {
	c.db, c.dbIndex, c.dbName = st, 0, ""
	for i, name := range c.s.App.StoreNames() {
		if other, err := c.s.App.Store(name); err == nil && other == st {
			c.dbIndex, c.dbName = i, name
			break
		}
	}
	c.client.setDB(c.dbIndex)
}

// Close ends the connection's pub/sub delivery (without holding c.mu,
// which the delivery goroutine may be waiting for) and its registrations.
func (c *conn) Close() {
	if c.sub != nil {
		c.sub.close()
	}
	c.unsubscribeAll()
	c.releaseHooks()
	unregisterClient(c.client)
}

// Serve is the command loop: answer each command, and flush the replies
// once the client's pipelined input is used up.
func (c *conn) Serve() error {
	c.blocking = true
	c.startDelivery()
	for {
		err := c.serveCommand()
		end := errors.Is(err, io.EOF)
		if err != nil && !end {
			return err
		}
		c.mu.Lock()
		if end {
			err = c.s.W.Flush()
		} else {
			err = c.s.FlushIfIdle()
		}
		c.mu.Unlock()
		if err != nil || end {
			return err
		}
	}
}

// FrameLength measures the request at the start of buf for the event
// loop (see reader.frameLength).
func (c *conn) FrameLength(buf []byte) int { return c.rd.frameLength(buf) }

// ServeCommand answers the request that FrameLength measured. Once the
// connection has a subscriber it needs Serve: messages are then written by
// a goroutine of their own, which must not race with the event loop's use
// of the session, and are delivered while the client sends nothing.
func (c *conn) ServeCommand() error {
	if err := c.serveCommand(); err != nil {
		return err
	}
	if c.sub != nil {
		return listeners.ErrServeBlocking
	}
	return nil
}

// serveCommand reads one request and answers it, for Serve and
// ServeCommand alike. It returns io.EOF when the connection is to end once
// the replies are flushed: the client quit or went away, or sent a
// malformed request, which is answered with Redis's protocol error (Redis
// closes the connection, since it cannot know where the next command
// starts).
func (c *conn) serveCommand() error {
	args, err := c.rd.read()
	if err != nil {
		var perr protocolError
		switch {
		case errors.As(err, &perr):
			c.mu.Lock()
			c.w.errorReply("ERR " + perr.Error())
			c.mu.Unlock()
			return io.EOF
		case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, net.ErrClosed):
			// The client went away, possibly in the middle of a command.
			return io.EOF
		}
		return err
	}
	if len(args) > 0 {
		if c.idle {
			c.client.lastActive.Store(time.Now().UnixMilli())
		}
		c.mu.Lock()
		c.execute(args)
		c.s.CountCommand(c.w.failed)
		c.w.failed = false
		c.mu.Unlock()
	}
	c.idle = c.s.R.Buffered() == 0
	if c.quit {
		return io.EOF
	}
	return nil
}

// execute checks a command as Redis does (existence and arity, auth,
// permissions, the pub/sub context) and runs it, or queues it inside
// MULTI.
func (c *conn) execute(args [][]byte) {
	c.client.commands.Add(1)
	if c.sub != nil {
		c.sub.drain() // messages published before this command come before its reply
	}
	cmd, msg := lookup(args)
	switch {
	case cmd == nil:
	case !c.s.Authenticated() && cmd.flags&flagNoAuth == 0:
		msg = "NOAUTH Authentication required."
	case !c.s.Can(cmd.perm):
		msg = "NOPERM this user has no permissions to run the '" + cmd.fullName + "' command"
	case !c.w.resp3 && c.subscriptions() > 0 && cmd.flags&flagPubSubContext == 0:
		msg = "ERR Can't execute '" + cmd.fullName + "': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context"
	}
	if msg != "" {
		if c.multi != nil {
			c.multi.dirty = true
		}
		c.w.errorReply(msg)
		return
	}
	c.client.lastCommand.Store(cmd)
	if c.multi != nil && cmd.flags&flagNoQueue == 0 {
		c.multi.enqueue(cmd, args)
		c.w.simple("QUEUED")
		return
	}
	cmd.run(c, args)
}

// Errors in Redis's words.
const (
	errSyntax       = "ERR syntax error"
	errNotInteger   = "ERR value is not an integer or out of range"
	errNotFloat     = "ERR value is not a valid float"
	errOverflow     = "ERR increment or decrement would overflow"
	errNoSuchKey    = "ERR no such key"
	errWrongPass    = "WRONGPASS invalid username-password pair or user is disabled."
	errDBOutOfRange = "ERR DB index is out of range"
	errOOM          = "OOM command not allowed when used memory > 'maxmemory'."
)

// storeError words an error of a store write for a Redis client.
func storeError(st *store.Store, err error) string {
	var lim *store.LimitError
	switch {
	case errors.As(err, &lim) && errors.Is(lim.Err, store.ErrValueTooLarge) && lim.Max != int64(st.Config().MaxItemSize):
		// The entry does not fit in the whole memory budget.
		return errOOM
	case lim != nil:
		// Named by the Caddyfile options that set the limits.
		what, option := "value too large", "max_item_size"
		switch {
		case errors.Is(lim.Err, store.ErrKeyTooLong):
			what, option = "key too long", "max_key_length"
		case errors.Is(lim.Err, store.ErrTagTooLong):
			what, option = "tag too long", "the tag length limit"
		case errors.Is(lim.Err, store.ErrTooManyTags):
			return fmt.Sprintf("ERR too many tags: %d, max_tags_per_key is %d", lim.Size, lim.Max)
		}
		return fmt.Sprintf("ERR %s: %d bytes, %s is %d", what, lim.Size, option, lim.Max)
	case errors.Is(err, store.ErrEmptyKey):
		return "ERR empty keys are not supported"
	}
	return "ERR " + err.Error()
}

// BusyReply is what Redis tells a client over its maxclients.
func (*Protocol) BusyReply() []byte { return []byte("-ERR max number of clients reached\r\n") }

// DefaultMaxLineLength is Redis's limit on an inline command; values in
// bulk strings are not bound by it.
func (*Protocol) DefaultMaxLineLength(int) int { return defaultMaxLine }

// Interface guards
var (
	_ listeners.Protocol       = (*Protocol)(nil)
	_ listeners.FramedProtocol = (*Protocol)(nil)
	_ listeners.BusyReplier    = (*Protocol)(nil)
	_ listeners.LineLimiter    = (*Protocol)(nil)
	_ listeners.FramedConn     = (*conn)(nil)
)
