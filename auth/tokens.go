package auth

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"sync"
	"time"
)

// A bearer token is 36 random bytes in unpadded base64url (48 characters):
// a 12-byte selector that finds the token and a 24-byte secret of which only
// the SHA-256 digest is kept and which is compared in constant time. Looking
// a token up by its selector reveals nothing about the secret, and a memory
// dump of the store holds no usable token.
const (
	selectorLen = 12
	secretLen   = 24
	// TokenLength is the length of a bearer token in characters.
	TokenLength = (selectorLen + secretLen) * 4 / 3
)

const (
	// maxTokens bounds the live tokens of the process; a login that finds
	// it full of unexpired tokens fails with ErrTooManyTokens.
	maxTokens = 1 << 16
	// maxTokensPerUser bounds one user's live tokens so that one user
	// cannot fill the store: beyond it, the user's oldest token is revoked.
	maxTokensPerUser = 256
)

// Token errors.
var (
	ErrBadToken      = errors.New("invalid or revoked token")
	ErrTokenExpired  = errors.New("token expired; log in again")
	ErrTooManyTokens = errors.New("too many live tokens; try again later")
	ErrUnknownUser   = errors.New("no such user")
)

// sharedTokens holds every token the process issued. It is package-level so
// that tokens outlive config reloads (each load builds a new Users) and a
// rotate reaches every front.
var sharedTokens = newTokenStore()

type token struct {
	verifier [sha256.Size]byte
	username string
	issued   time.Time
	expires  time.Time
}

type tokenStore struct {
	mu      sync.Mutex
	m       map[[selectorLen]byte]*token
	perUser map[string]int
}

func newTokenStore() *tokenStore {
	return &tokenStore{m: make(map[[selectorLen]byte]*token), perUser: make(map[string]int)}
}

// IssueToken returns a new bearer token for username, which must be a
// configured user, and how long it is valid. Call it after checking the
// user's credentials.
func (u *Users) IssueToken(username string) (string, time.Duration, error) {
	if _, ok := u.permissions(username); !ok {
		return "", 0, ErrUnknownUser
	}
	var raw [selectorLen + secretLen]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return "", 0, err
	}
	now := u.now()
	t := &token{
		verifier: sha256.Sum256(raw[selectorLen:]),
		username: username,
		issued:   now,
		expires:  now.Add(u.tokenTTL),
	}
	if err := u.tokens.add([selectorLen]byte(raw[:selectorLen]), t, now); err != nil {
		return "", 0, err
	}
	return base64.RawURLEncoding.EncodeToString(raw[:]), u.tokenTTL, nil
}

// CheckToken returns the user a bearer token was issued to and that user's
// current permissions. It fails with ErrTokenExpired for an expired token
// and ErrBadToken for any other token that is not live (never issued,
// revoked, or its user removed from the config).
func (u *Users) CheckToken(tok string) (string, Permission, error) {
	u.syncIfDue()
	if len(tok) != TokenLength {
		return "", 0, ErrBadToken
	}
	var raw [selectorLen + secretLen]byte
	if n, err := base64.RawURLEncoding.Decode(raw[:], []byte(tok)); err != nil || n != len(raw) {
		return "", 0, ErrBadToken
	}
	username, err := u.tokens.check([selectorLen]byte(raw[:selectorLen]), sha256.Sum256(raw[selectorLen:]), u.now())
	if err != nil {
		return "", 0, err
	}
	perm, ok := u.permissions(username)
	if !ok {
		return "", 0, ErrBadToken
	}
	return username, perm, nil
}

// permissions returns the permissions of a configured user.
func (u *Users) permissions(username string) (Permission, bool) {
	u.mu.RLock()
	defer u.mu.RUnlock()
	usr, ok := u.users[username]
	if !ok {
		return 0, false
	}
	return usr.perm, true
}

func (s *tokenStore) add(sel [selectorLen]byte, t *token, now time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.m) >= maxTokens {
		s.pruneLocked(func(t *token) bool { return !now.Before(t.expires) })
		if len(s.m) >= maxTokens {
			return ErrTooManyTokens
		}
	}
	if s.perUser[t.username] >= maxTokensPerUser {
		s.revokeOldestLocked(t.username)
	}
	s.m[sel] = t
	s.perUser[t.username]++
	return nil
}

func (s *tokenStore) check(sel [selectorLen]byte, verifier [sha256.Size]byte, now time.Time) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.m[sel]
	if !ok || subtle.ConstantTimeCompare(t.verifier[:], verifier[:]) != 1 {
		return "", ErrBadToken
	}
	if !now.Before(t.expires) {
		s.deleteLocked(sel, t)
		return "", ErrTokenExpired
	}
	return t.username, nil
}

// revoke removes the tokens issued at or before cutoff, to username only if
// it is not "", and returns how many it removed.
func (s *tokenStore) revoke(username string, cutoff time.Time) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.pruneLocked(func(t *token) bool {
		return (username == "" || t.username == username) && !t.issued.After(cutoff)
	})
}

func (s *tokenStore) pruneLocked(drop func(*token) bool) int {
	n := 0
	for sel, t := range s.m {
		if drop(t) {
			s.deleteLocked(sel, t)
			n++
		}
	}
	return n
}

func (s *tokenStore) revokeOldestLocked(username string) {
	var oldestSel [selectorLen]byte
	var oldest *token
	for sel, t := range s.m {
		if t.username == username && (oldest == nil || t.issued.Before(oldest.issued)) {
			oldestSel, oldest = sel, t
		}
	}
	if oldest != nil {
		s.deleteLocked(oldestSel, oldest)
	}
}

func (s *tokenStore) deleteLocked(sel [selectorLen]byte, t *token) {
	delete(s.m, sel)
	if s.perUser[t.username]--; s.perUser[t.username] <= 0 {
		delete(s.perUser, t.username)
	}
}
