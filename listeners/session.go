// Package listeners serves the tagcache stores over raw protocol listeners
// (the tab-delimited TagCache protocol, memcached, Redis RESP). This package
// holds what every protocol shares; each protocol is a package of its own
// that implements Protocol and registers a module in the
// tagcache.listeners namespace.
package listeners

import (
	"bufio"
	"net"

	"go.uber.org/zap"

	"github.com/tagcache/caddy-tagcache/auth"
	"github.com/tagcache/caddy-tagcache/store"
)

// Protocol is implemented by the modules in the tagcache.listeners
// namespace, one per wire protocol.
type Protocol interface {
	// Serve answers the commands of one connection until the client quits,
	// the connection fails or the listener stops. It returns nil on a
	// clean end. It must flush s.W whenever s.R has no buffered input
	// left (see Session.FlushIfIdle), so that a pipelined batch of
	// commands is answered with one write.
	Serve(s *Session) error
}

// BusyReplier is implemented by protocols that tell a client refused at
// max_connections why, in the protocol's own form. The listener writes the
// reply and closes the connection; without it, the connection is just
// closed.
type BusyReplier interface {
	// BusyReply returns the bytes to send, for example
	// "SERVER_ERROR too many open connections\r\n".
	BusyReply() []byte
}

// LineLimiter is implemented by protocols whose command lines carry values
// (so the default longest line depends on the largest value) or are
// otherwise longer than the framework's default of 2048 bytes.
type LineLimiter interface {
	// DefaultMaxLineLength returns the longest line to accept when
	// max_line_length is not configured, given the largest value the
	// listener accepts.
	DefaultMaxLineLength(maxValueSize int) int
}

// Session is one client connection of a protocol listener.
type Session struct {
	Conn net.Conn
	R    *bufio.Reader
	W    *bufio.Writer
	// Store is the store the listener serves, and StoreName its name ("" is
	// the default store).
	Store     *store.Store
	StoreName string
	// App reaches the other stores (for protocols that select one by name
	// or number) and the users.
	App    auth.App
	Logger *zap.Logger
	Limits Limits

	authRequired bool
	perm         auth.Permission
	username     string

	// counters are the listener's stats (nil for a session made outside
	// a listener); commands and errors are counted here and added to them
	// once per batch, so that the hot path touches no shared memory.
	counters         *counters
	commands, errors uint64
}

// Limits bound what one client may send.
type Limits struct {
	// MaxLineLength is the longest command line, in bytes.
	MaxLineLength int
	// MaxValueSize is the largest value a client may send, in bytes.
	MaxValueSize int
}

// NewSession returns a session over conn. With authRequired the client has
// no rights until it authenticates; otherwise it has all.
func NewSession(conn net.Conn, r *bufio.Reader, w *bufio.Writer, st *store.Store, app auth.App, authRequired bool) *Session {
	s := &Session{Conn: conn, R: r, W: w, Store: st, App: app, authRequired: authRequired, Logger: zap.NewNop()}
	if !authRequired {
		s.perm = auth.PermAll
	}
	return s
}

// AuthRequired reports whether the client must authenticate.
func (s *Session) AuthRequired() bool { return s.authRequired }

// Authenticated reports whether the client has authenticated (always true
// when no auth is required).
func (s *Session) Authenticated() bool { return !s.authRequired || s.username != "" }

// Deauthenticate drops the user's rights, leaving the session as it was
// when it started (Redis's RESET does this).
func (s *Session) Deauthenticate() {
	s.username = ""
	s.perm = 0
	if !s.authRequired {
		s.perm = auth.PermAll
	}
}

// Username is the authenticated user's name, "" if none.
func (s *Session) Username() string { return s.username }

// Authenticate checks credentials against the app's users and, if they are
// good, gives the session the user's rights. Failures count against the
// client's address in the login rate limit that every front shares, so a
// client that fails too often gets an *auth.RateLimitError even with good
// credentials.
func (s *Session) Authenticate(username, password string) error {
	perm, err := s.App.Users().Login(clientAddr(s.Conn), username, password)
	if err != nil {
		if s.counters != nil {
			s.counters.authFailures.Add(1)
		}
		return err
	}
	s.perm, s.username = perm, username
	return nil
}

// Can reports whether the session has every right in p.
func (s *Session) Can(p auth.Permission) bool { return s.perm.Has(p) }

// CountCommand counts one answered command for the listener's stats;
// failed counts it as an error too.
func (s *Session) CountCommand(failed bool) {
	s.commands++
	if failed {
		s.errors++
	}
}

// FlushIfIdle flushes the replies once the client's pipelined input is used
// up, so that a batch of commands is answered with one write.
func (s *Session) FlushIfIdle() error {
	if s.R.Buffered() == 0 {
		s.publishCounts()
		return s.W.Flush()
	}
	return nil
}

// publishCounts adds the commands counted since the last call to the
// listener's stats.
func (s *Session) publishCounts() {
	if s.counters == nil || s.commands == 0 {
		return
	}
	s.counters.commands.Add(s.commands)
	if s.errors > 0 {
		s.counters.errors.Add(s.errors)
	}
	s.commands, s.errors = 0, 0
}

// clientAddr is the client's IP address, or the socket's address for a
// client without one (a unix socket).
func clientAddr(c net.Conn) string {
	if c == nil || c.RemoteAddr() == nil {
		return ""
	}
	addr := c.RemoteAddr()
	if host, _, err := net.SplitHostPort(addr.String()); err == nil {
		return host
	}
	return addr.String()
}
