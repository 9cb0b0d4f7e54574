package auth

import (
	"fmt"
	"net/netip"
	"sync"
	"time"
)

const (
	// MaxFailedLogins is how many failed logins a client may make in
	// FailedLoginWindow before it is refused until the window ends.
	MaxFailedLogins = 10
	// FailedLoginWindow is the window over which failed logins count.
	FailedLoginWindow = time.Minute

	// maxLimitedClients bounds the clients tracked; when it is reached,
	// clients whose window ended are forgotten, and if that is not
	// enough, all are.
	maxLimitedClients = 1 << 16
)

// RateLimitError is returned by Login to a client that failed too often.
type RateLimitError struct {
	// RetryAfter is how long until the client may try again.
	RetryAfter time.Duration
}

func (e *RateLimitError) Error() string {
	return fmt.Sprintf("too many failed logins; retry in %s", e.RetryAfter.Round(time.Second))
}

// sharedLimiter counts failed logins of every front, across config
// reloads, so that a client cannot reset its count by switching protocol
// or waiting for a reload.
var sharedLimiter = newLoginLimiter()

type failures struct {
	count int
	start time.Time
}

// loginLimiter counts failed logins per client in fixed windows that start
// at a client's first failure. A success does not reset the count: with
// valid credentials for one user, a client could otherwise interleave them
// with guesses at another user's password.
type loginLimiter struct {
	mu      sync.Mutex
	clients map[string]*failures
}

func newLoginLimiter() *loginLimiter {
	return &loginLimiter{clients: make(map[string]*failures)}
}

// wait returns how long the client must wait before its next attempt; 0
// means it may try now.
func (l *loginLimiter) wait(client string, now time.Time) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	f, ok := l.clients[clientKey(client)]
	if !ok || f.count < MaxFailedLogins {
		return 0
	}
	return max(f.start.Add(FailedLoginWindow).Sub(now), 0)
}

// fail counts a failed attempt.
func (l *loginLimiter) fail(client string, now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	key := clientKey(client)
	f, ok := l.clients[key]
	if ok && now.Sub(f.start) >= FailedLoginWindow {
		f.count, f.start = 0, now
	}
	if !ok {
		if len(l.clients) >= maxLimitedClients {
			l.forgetLocked(now)
		}
		f = &failures{start: now}
		l.clients[key] = f
	}
	f.count++
}

func (l *loginLimiter) forgetLocked(now time.Time) {
	for k, f := range l.clients {
		if now.Sub(f.start) >= FailedLoginWindow {
			delete(l.clients, k)
		}
	}
	if len(l.clients) >= maxLimitedClients {
		clear(l.clients)
	}
}

// clientKey groups IPv6 clients by their /64, which one host usually
// controls whole; other clients count by their exact string.
func clientKey(client string) string {
	addr, err := netip.ParseAddr(client)
	if err != nil {
		return client
	}
	addr = addr.Unmap().WithZone("")
	if addr.Is4() {
		return addr.String()
	}
	prefix, _ := addr.Prefix(64) // cannot fail for an unzoned IPv6 address
	return prefix.String()
}
