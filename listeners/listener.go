package listeners

import (
	"bufio"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/tagcache/caddy-tagcache/auth"
	"github.com/tagcache/caddy-tagcache/store"
)

// Defaults of a Listener.
const (
	DefaultMaxConnections = 10000
	DefaultIdleTimeout    = 5 * time.Minute
	DefaultMaxLineLength  = 2048
)

// AuthRequired is the value of Listener.Auth that makes clients
// authenticate.
const AuthRequired = "required"

// Listener serves one store over one wire protocol on one network address.
// The tagcache app provisions, starts and stops its listeners; a config
// reload binds the new listener to the same socket before the old one
// stops, so the port keeps accepting, and the old listener's connections
// are closed after the command they are answering (the data is in the
// store, which the reload keeps).
type Listener struct {
	// Address is the network address to listen on, in Caddy's network
	// address form: "host:port" (":11211", "127.0.0.1:1984", "[::1]:1984")
	// or a unix socket ("unix//run/tagcache.sock"). Exactly one port.
	// Required.
	Address string `json:"address,omitempty"`

	// ProtocolRaw is the wire protocol, a module in the
	// tagcache.listeners namespace named by its "protocol" key: "tcp"
	// for the tab-delimited TagCache protocol, "memcached". Required.
	ProtocolRaw json.RawMessage `json:"protocol,omitempty" caddy:"namespace=tagcache.listeners inline_key=protocol"`

	// Store is the name of the store the listener serves. Default:
	// "default".
	Store string `json:"store,omitempty"`

	// TLS makes the listener speak TLS, with certificates from Caddy's
	// tls app. Default: plain TCP.
	TLS *TLS `json:"tls,omitempty"`

	// Auth is "required" to make clients authenticate as one of the
	// users of the app's auth block before any command, each with that
	// user's permissions; it is a config error when no user is
	// configured. Default: "" (every client has every permission).
	Auth string `json:"auth,omitempty"`

	// MaxConnections is the largest number of open client connections.
	// A client over it is sent the protocol's error, if it has one, and
	// disconnected. Default: 10000.
	MaxConnections int `json:"max_connections,omitempty"`

	// IdleTimeout disconnects a client that sends nothing, or reads
	// nothing of its replies, for this long. A negative value disables
	// it. Default: 5m.
	IdleTimeout caddy.Duration `json:"idle_timeout,omitempty"`

	// MaxLineLength is the longest command line in bytes; a longer one
	// gets the protocol's error and is skipped. Default: per protocol;
	// 2048 unless the protocol says otherwise (the tcp protocol, whose
	// lines carry values, takes max_value_size plus 64 KiB).
	MaxLineLength int `json:"max_line_length,omitempty"`

	// MaxValueSize is the largest value in bytes a client may send.
	// Default: the store's max_item_size.
	MaxValueSize int `json:"max_value_size,omitempty"`

	// EventLoops is the number of event loops that serve the plain (not
	// TLS) connections of a protocol that supports them (memcached, resp)
	// on Linux: each loop is a goroutine that waits on epoll for all of its
	// connections and answers them in turn, which costs less CPU per
	// request than a goroutine per connection. A connection that sends a
	// command larger than its read buffer (8 KiB), or does not take its
	// replies at once, or enters pub/sub, moves to a goroutine of its own.
	// 0 starts with one loop and adds loops, up to GOMAXPROCS, while every
	// loop is busy, a CPU is idle and another loop raises the commands
	// answered per second (and removes them after 30 s of low load); a count
	// runs that many loops from the start; -1 serves every connection from
	// a goroutine of its own. Default: 0.
	EventLoops int `json:"event_loops,omitempty"`

	ctx          caddy.Context
	addr         caddy.NetworkAddress
	protocol     Protocol
	protoName    string
	app          auth.App
	store        *store.Store
	authRequired bool
	idle         time.Duration
	limits       Limits
	tls          *listenerTLS
	logger       *zap.Logger

	// Set by Start.
	ln        net.Listener
	loops     *eventLoops // nil: a goroutine per connection
	counters  *counters
	stopping  atomic.Bool
	rejecting atomic.Int32
	wg        sync.WaitGroup
	mu        sync.Mutex
	conns     map[tracked]struct{}
}

// tracked is an open client connection, as Stop sees it.
type tracked interface {
	// stop ends the connection once it has answered the command it is on.
	stop()
	// closeNow closes it at once: Stop's last resort for a client that does
	// not read its replies.
	closeNow()
}

// maxItemSizer is implemented by the tagcache app: it tells how large a
// value a store accepts, the default of max_value_size.
type maxItemSizer interface {
	MaxItemSize(store string) int
}

// stopGrace bounds how long Stop waits for sessions to finish the command
// they are answering before it closes their connections.
const stopGrace = 5 * time.Second

// rejectTimeout bounds writing the busy reply to a client over
// max_connections (with TLS, the handshake comes first); beyond
// maxRejecting such replies in flight, clients over the limit are just
// disconnected.
const (
	rejectTimeout = 2 * time.Second
	maxRejecting  = 64
)

// Provision loads the protocol, resolves the store and checks the settings.
// It binds nothing and starts nothing: `caddy validate` runs it.
func (l *Listener) Provision(ctx caddy.Context, app auth.App) error {
	l.ctx = ctx
	l.app = app
	repl := caddy.NewReplacer()
	addr, err := caddy.ParseNetworkAddress(repl.ReplaceAll(l.Address, ""))
	if err != nil {
		return fmt.Errorf("address %q: %v", l.Address, err)
	}
	switch {
	case addr.Network == "tcp" || addr.Network == "tcp4" || addr.Network == "tcp6":
		if addr.PortRangeSize() != 1 || addr.StartPort == 0 {
			return fmt.Errorf("address %q: want exactly one port", l.Address)
		}
	case addr.Network == "unix":
	default:
		return fmt.Errorf("address %q: network %q is not supported (want tcp, tcp4, tcp6 or unix)", l.Address, addr.Network)
	}
	l.addr = addr

	if l.ProtocolRaw == nil {
		return fmt.Errorf("no protocol")
	}
	mod, err := ctx.LoadModule(l, "ProtocolRaw")
	if err != nil {
		return fmt.Errorf("loading protocol: %v", err)
	}
	l.protocol = mod.(Protocol)
	l.protoName = caddy.GetModuleName(mod)
	l.logger = ctx.Logger().Named("listeners").With(zap.String("protocol", l.protoName), zap.String("address", l.addr.String()))

	if l.store, err = app.Store(l.Store); err != nil {
		return err
	}

	switch l.Auth {
	case "":
	case AuthRequired:
		if !app.Users().Enabled() {
			return fmt.Errorf("auth required, but no users are configured in the tagcache auth block")
		}
		l.authRequired = true
	default:
		return fmt.Errorf("auth must be %q or empty, got %q", AuthRequired, l.Auth)
	}

	if l.MaxConnections < 0 || l.MaxLineLength < 0 || l.MaxValueSize < 0 {
		return fmt.Errorf("max_connections, max_line_length and max_value_size must not be negative")
	}
	if l.EventLoops < -1 {
		return fmt.Errorf("event_loops must be -1 (none), 0 (automatic) or a count, got %d", l.EventLoops)
	}
	if l.MaxConnections == 0 {
		l.MaxConnections = DefaultMaxConnections
	}
	switch {
	case l.IdleTimeout == 0:
		l.idle = DefaultIdleTimeout
	case l.IdleTimeout > 0:
		l.idle = time.Duration(l.IdleTimeout)
	}
	l.limits = Limits{MaxLineLength: l.MaxLineLength, MaxValueSize: l.MaxValueSize}
	if l.limits.MaxValueSize == 0 {
		l.limits.MaxValueSize = store.DefaultMaxItemSize
		if s, ok := app.(maxItemSizer); ok {
			l.limits.MaxValueSize = s.MaxItemSize(l.Store)
		}
	}
	if l.limits.MaxLineLength == 0 {
		l.limits.MaxLineLength = DefaultMaxLineLength
		if ll, ok := l.protocol.(LineLimiter); ok {
			l.limits.MaxLineLength = ll.DefaultMaxLineLength(l.limits.MaxValueSize)
		}
	}

	if l.TLS != nil {
		if l.tls, err = l.TLS.provision(ctx, l.defaultServerName(), l.protoName); err != nil {
			return fmt.Errorf("tls: %v", err)
		}
	}
	return nil
}

// NetworkAddress returns the parsed address; valid after Provision.
func (l *Listener) NetworkAddress() caddy.NetworkAddress { return l.addr }

// defaultServerName is the certificate name used when TLS names none: the
// listener's host, or localhost for a unix socket or all interfaces.
func (l *Listener) defaultServerName() string {
	if ip := net.ParseIP(l.addr.Host); l.addr.IsUnixNetwork() || l.addr.Host == "" || ip != nil && ip.IsUnspecified() {
		return "localhost"
	}
	return l.addr.Host
}

// Start binds the address (sharing the socket with the previous config's
// listener on a reload) and starts accepting clients.
func (l *Listener) Start() error {
	lnAny, err := l.addr.Listen(l.ctx, 0, net.ListenConfig{})
	if err != nil {
		return fmt.Errorf("listening on %s: %v", l.addr, err)
	}
	ln, ok := lnAny.(net.Listener)
	if !ok {
		if c, ok := lnAny.(io.Closer); ok {
			c.Close()
		}
		return fmt.Errorf("listening on %s: not a stream listener", l.addr)
	}
	var tlsConfig *tls.Config
	if l.tls != nil {
		if tlsConfig, err = l.tls.start(l.ctx); err != nil {
			ln.Close()
			return fmt.Errorf("tls: %v", err)
		}
	}
	l.run(ln, tlsConfig)
	l.logger.Info("listening", zap.Bool("tls", tlsConfig != nil), zap.Bool("auth", l.authRequired))
	return nil
}

// run serves the clients that ln accepts until Stop.
func (l *Listener) run(ln net.Listener, tlsConfig *tls.Config) {
	l.ln = ln
	l.conns = make(map[tracked]struct{})
	l.counters = acquireCounters(l.protoName, l.addr.String())
	l.counters.eventLoops.Store(0)
	if _, framed := l.protocol.(FramedProtocol); framed && tlsConfig == nil && l.EventLoops >= 0 {
		n, active := l.EventLoops, l.EventLoops
		if n == 0 {
			n, active = runtime.GOMAXPROCS(0), 1
		}
		loops, err := startEventLoops(l, n, active)
		if err != nil {
			l.logger.Warn("event loops unavailable; serving each connection from a goroutine", zap.Error(err))
		}
		l.loops = loops
	}
	l.wg.Add(1)
	go l.accept(ln, tlsConfig)
}

// Stop closes the socket and ends every session once it has answered the
// command it is on; sessions still busy after a grace period (a client not
// reading its replies) are disconnected.
func (l *Listener) Stop() error {
	if l.ln == nil {
		return nil
	}
	l.stopping.Store(true)
	err := l.ln.Close()
	l.mu.Lock()
	for c := range l.conns {
		c.stop()
	}
	l.mu.Unlock()
	l.loops.stop()

	done := make(chan struct{})
	go func() {
		l.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(stopGrace):
		l.mu.Lock()
		for c := range l.conns {
			c.closeNow()
		}
		l.mu.Unlock()
		<-done
	}
	releaseCounters(l.protoName, l.addr.String())
	l.ln = nil
	l.logger.Info("stopped listening")
	if err != nil && !errors.Is(err, net.ErrClosed) {
		return err
	}
	return nil
}

// accept runs the accept loop until the listener is closed.
func (l *Listener) accept(ln net.Listener, tlsConfig *tls.Config) {
	defer l.wg.Done()
	var backoff time.Duration
	for {
		nc, err := ln.Accept()
		if err != nil {
			if l.stopping.Load() || errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of file descriptors or the like: back off as
			// net/http does, rather than spin.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			l.logger.Error("accept failed; retrying", zap.Error(err), zap.Duration("backoff", backoff))
			time.Sleep(backoff)
			continue
		}
		backoff = 0
		if l.loops != nil && l.loops.add(nc) {
			continue
		}
		c := &conn{Conn: nc, idle: l.idle, counters: l.counters}
		var sc net.Conn = c
		if tlsConfig != nil {
			sc = tls.Server(c, tlsConfig)
		}
		switch l.track(c) {
		case trackOK:
			l.wg.Add(1)
			go l.serve(c, sc)
		case trackFull:
			l.counters.rejectedConns.Add(1)
			if l.rejecting.Add(1) > maxRejecting {
				l.rejecting.Add(-1)
				nc.Close()
				continue
			}
			l.wg.Add(1)
			go l.reject(sc)
		case trackStopping:
			nc.Close()
		}
	}
}

type trackResult int

const (
	trackOK trackResult = iota
	trackFull
	trackStopping
)

// track registers a new connection, unless the listener is at
// max_connections or stopping. Stop sets stopping before it stops the
// registered connections, under the same lock, so none slips through.
func (l *Listener) track(c tracked) trackResult {
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case l.stopping.Load():
		return trackStopping
	case len(l.conns) >= l.MaxConnections:
		return trackFull
	}
	l.conns[c] = struct{}{}
	l.counters.currentConns.Add(1)
	l.counters.totalConns.Add(1)
	return trackOK
}

func (l *Listener) untrack(c tracked) {
	l.mu.Lock()
	delete(l.conns, c)
	l.mu.Unlock()
	l.counters.currentConns.Add(-1)
}

// reject tells a client over max_connections so, if the protocol has a way
// to, and disconnects it.
func (l *Listener) reject(sc net.Conn) {
	defer l.wg.Done()
	defer l.rejecting.Add(-1)
	defer sc.Close()
	if br, ok := l.protocol.(BusyReplier); ok {
		_ = sc.SetDeadline(time.Now().Add(rejectTimeout))
		_, _ = sc.Write(br.BusyReply())
	}
}

// serve runs the protocol on one connection. A panic in the protocol ends
// this connection only.
func (l *Listener) serve(c *conn, sc net.Conn) {
	defer l.wg.Done()
	s := l.newSession(sc)
	defer l.endSession(s, c, sc)
	err := l.protocol.Serve(s)
	if err == nil {
		err = s.W.Flush()
	}
	logEnd(s, err)
}

// newSession returns a session over conn, with buffers from the pools.
func (l *Listener) newSession(conn net.Conn) *Session {
	r := readerPool.Get().(*bufio.Reader)
	w := writerPool.Get().(*bufio.Writer)
	r.Reset(conn)
	w.Reset(conn)
	s := NewSession(conn, r, w, l.store, l.app, l.authRequired)
	s.Logger = l.logger.With(zap.String("remote", conn.RemoteAddr().String()))
	s.Limits = l.limits
	s.StoreName = l.Store
	s.counters = l.counters
	return s
}

// endSession ends a session that newSession made, after a panic if there
// was one: it closes closer, untracks c and gives the buffers back.
func (l *Listener) endSession(s *Session, c tracked, closer io.Closer) {
	if v := recover(); v != nil {
		s.Logger.Error("panic serving a connection; closing it",
			zap.Any("panic", v), zap.StackSkip("stack", 2))
	}
	s.publishCounts()
	closer.Close()
	l.untrack(c)
	s.R.Reset(nil)
	s.W.Reset(nil)
	readerPool.Put(s.R)
	writerPool.Put(s.W)
}

// logEnd logs why a session ended, if that is worth a line.
func logEnd(s *Session, err error) {
	switch {
	case err == nil, errors.Is(err, ErrStopping), errors.Is(err, io.EOF), errors.Is(err, net.ErrClosed):
	case isTimeout(err):
		s.Logger.Debug("idle timeout; closing the connection")
	default:
		s.Logger.Debug("connection ended", zap.Error(err))
	}
}
