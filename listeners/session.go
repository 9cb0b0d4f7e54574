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

// Session is one client connection of a protocol listener.
type Session struct {
	Conn net.Conn
	R    *bufio.Reader
	W    *bufio.Writer
	// Store is the store the listener serves.
	Store *store.Store
	// App reaches the other stores (for protocols that select one by name
	// or number) and the users.
	App    auth.App
	Logger *zap.Logger
	Limits Limits

	authRequired bool
	perm         auth.Permission
	username     string
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
// good, gives the session the user's rights.
func (s *Session) Authenticate(username, password string) error {
	perm, err := s.App.Users().Authenticate(username, password)
	if err != nil {
		return err
	}
	s.perm, s.username = perm, username
	return nil
}

// Can reports whether the session has every right in p.
func (s *Session) Can(p auth.Permission) bool { return s.perm.Has(p) }

// FlushIfIdle flushes the replies once the client's pipelined input is used
// up, so that a batch of commands is answered with one write.
func (s *Session) FlushIfIdle() error {
	if s.R.Buffered() == 0 {
		return s.W.Flush()
	}
	return nil
}
