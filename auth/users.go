package auth

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/certmagic"
	"go.uber.org/zap"
	"golang.org/x/crypto/bcrypt"
)

// Permission is a set of rights. A user configured without a list has all.
type Permission uint8

const (
	// PermRead allows reading entries, tags and stats.
	PermRead Permission = 1 << iota
	// PermWrite allows storing and deleting entries.
	PermWrite
	// PermPurge allows invalidating tags and purging cached responses.
	PermPurge
	// PermAdmin allows flushing stores, snapshots and managing users.
	PermAdmin

	PermAll = PermRead | PermWrite | PermPurge | PermAdmin
)

var permNames = []struct {
	p    Permission
	name string
}{{PermRead, "read"}, {PermWrite, "write"}, {PermPurge, "purge"}, {PermAdmin, "admin"}}

// ParsePermissions parses permission names (read, write, purge, admin, all);
// no names means all.
func ParsePermissions(names []string) (Permission, error) {
	if len(names) == 0 {
		return PermAll, nil
	}
	var p Permission
	for _, n := range names {
		if n == "all" {
			p |= PermAll
			continue
		}
		found := false
		for _, pn := range permNames {
			if pn.name == n {
				p |= pn.p
				found = true
			}
		}
		if !found {
			return 0, fmt.Errorf("unknown permission %q (want read, write, purge, admin or all)", n)
		}
	}
	return p, nil
}

// Has reports whether p includes every right in q.
func (p Permission) Has(q Permission) bool { return p&q == q }

func (p Permission) String() string {
	var names []string
	for _, pn := range permNames {
		if p.Has(pn.p) {
			names = append(names, pn.name)
		}
	}
	return strings.Join(names, ",")
}

// Config is the app's auth block, shared by every front.
type Config struct {
	// Users who may use the fronts. With none, the fronts that require
	// auth refuse clients that are not on loopback; there is never a
	// built-in default password. Default: none.
	Users []UserConfig `json:"users,omitempty"`

	// TokenTTL is how long a bearer token from a login stays valid. A
	// change applies to tokens issued after it. Default: 1h.
	TokenTTL caddy.Duration `json:"token_ttl,omitempty"`
}

// DefaultTokenTTL is the lifetime of a bearer token when Config.TokenTTL is
// not set.
const DefaultTokenTTL = time.Hour

// UserConfig is one user.
type UserConfig struct {
	// Username is the user's name. Required.
	Username string `json:"username"`
	// Password is the bcrypt hash of the user's password, as
	// `caddy hash-password` prints it. Required.
	Password string `json:"password"`
	// Permissions are the user's rights: read, write, purge, admin or all.
	// Default: all.
	Permissions []string `json:"permissions,omitempty"`
}

// ErrBadCredentials is returned for an unknown user or a wrong password;
// the two are not told apart.
var ErrBadCredentials = errors.New("invalid username or password")

type user struct {
	// hash is the hash in effect: the configured one, or the one a
	// password change stored (see passwords.go).
	hash []byte
	// configured is the hash from the config.
	configured []byte
	perm       Permission
}

// Users checks passwords against the configured bcrypt hashes, issues and
// checks bearer tokens and changes passwords at run time. It is safe for
// concurrent use.
//
// The app builds a new Users on every config load. What must outlive a
// reload is not in it: tokens and failed-login counts live in package-level
// state shared by every Users (so a rotate affects every front and a reload
// keeps them), and password changes live in Caddy's storage.
type Users struct {
	mu    sync.RWMutex
	users map[string]*user
	// verified remembers digests of credentials that passed bcrypt, so that
	// fronts checking every request (HTTP Basic) pay for bcrypt once.
	verified map[[sha256.Size]byte]Permission
	// decoy is the configured hash of the highest cost, which a password
	// for an unknown user is compared with.
	decoy    []byte
	tokenTTL time.Duration

	tokens  *tokenStore
	limiter *loginLimiter
	now     func() time.Time

	// storage keeps password changes and token revocations; nil keeps
	// them in memory only (see UseStorage).
	storage certmagic.Storage
	logger  *zap.Logger
	// nextSync is when (Unix ns) storage is next read for changes made by
	// other Caddy instances; syncing is held by the one caller reading it.
	nextSync atomic.Int64
	syncing  atomic.Bool
}

// maxVerified bounds the verified-credentials cache; it is emptied when full.
const maxVerified = 4096

// NewUsers validates cfg and returns its users.
func NewUsers(cfg Config) (*Users, error) {
	return newUsers(cfg, sharedTokens, sharedLimiter, time.Now)
}

// newUsers is NewUsers with its own token store, limiter and clock, for
// tests.
func newUsers(cfg Config, tokens *tokenStore, limiter *loginLimiter, now func() time.Time) (*Users, error) {
	if cfg.TokenTTL < 0 {
		return nil, fmt.Errorf("auth: token_ttl must be positive, got %v", time.Duration(cfg.TokenTTL))
	}
	u := &Users{
		users:    make(map[string]*user),
		verified: make(map[[sha256.Size]byte]Permission),
		tokenTTL: time.Duration(cfg.TokenTTL),
		tokens:   tokens,
		limiter:  limiter,
		now:      now,
		logger:   zap.NewNop(),
	}
	if u.tokenTTL == 0 {
		u.tokenTTL = DefaultTokenTTL
	}
	decoyCost := 0
	for _, uc := range cfg.Users {
		if uc.Username == "" {
			return nil, fmt.Errorf("auth: user without a name")
		}
		if _, dup := u.users[uc.Username]; dup {
			return nil, fmt.Errorf("auth: user %q configured twice", uc.Username)
		}
		cost, err := bcrypt.Cost([]byte(uc.Password))
		if err != nil {
			return nil, fmt.Errorf("auth: user %q: password must be a bcrypt hash (use `caddy hash-password`): %v", uc.Username, err)
		}
		perm, err := ParsePermissions(uc.Permissions)
		if err != nil {
			return nil, fmt.Errorf("auth: user %q: %v", uc.Username, err)
		}
		hash := []byte(uc.Password)
		u.users[uc.Username] = &user{hash: hash, configured: hash, perm: perm}
		if cost > decoyCost {
			u.decoy, decoyCost = hash, cost
		}
	}
	return u, nil
}

// Enabled reports whether any user is configured.
func (u *Users) Enabled() bool {
	u.mu.RLock()
	defer u.mu.RUnlock()
	return len(u.users) > 0
}

// TokenTTL is the lifetime of the bearer tokens IssueToken makes.
func (u *Users) TokenTTL() time.Duration { return u.tokenTTL }

// Authenticate checks a username and password and returns the user's
// permissions, or ErrBadCredentials. It does not count failures; fronts
// facing untrusted clients use Login.
func (u *Users) Authenticate(username, password string) (Permission, error) {
	u.syncIfDue()
	u.mu.RLock()
	usr := u.users[username]
	var digest [sha256.Size]byte
	if usr != nil {
		digest = credentialDigest(username, password, usr.hash)
		if perm, ok := u.verified[digest]; ok {
			u.mu.RUnlock()
			return perm, nil
		}
	}
	u.mu.RUnlock()
	if usr == nil {
		// Cost as much time as a wrong password, so that response
		// times do not tell which users exist.
		bcrypt.CompareHashAndPassword(u.decoy, []byte(password))
		return 0, ErrBadCredentials
	}
	if bcrypt.CompareHashAndPassword(usr.hash, []byte(password)) != nil {
		return 0, ErrBadCredentials
	}
	u.mu.Lock()
	if len(u.verified) >= maxVerified {
		clear(u.verified)
	}
	u.verified[digest] = usr.perm
	u.mu.Unlock()
	return usr.perm, nil
}

// Login is Authenticate with a limit on failures per client (an IP
// address, or any string naming the client): after 10 failed attempts in a
// minute the client gets a *RateLimitError, even for good credentials,
// until the minute is over.
func (u *Users) Login(client, username, password string) (Permission, error) {
	now := u.now()
	if wait := u.limiter.wait(client, now); wait > 0 {
		return 0, &RateLimitError{RetryAfter: wait}
	}
	perm, err := u.Authenticate(username, password)
	if err != nil {
		u.limiter.fail(client, now)
	}
	return perm, err
}

// credentialDigest keys the verified cache; the hash is part of it so that
// a password change invalidates the old entry.
func credentialDigest(username, password string, hash []byte) [sha256.Size]byte {
	h := sha256.New()
	h.Write([]byte(username))
	h.Write([]byte{0})
	h.Write([]byte(password))
	h.Write([]byte{0})
	h.Write(hash)
	var d [sha256.Size]byte
	h.Sum(d[:0])
	return d
}
