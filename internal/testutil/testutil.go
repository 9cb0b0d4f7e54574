// Package testutil holds what the tests of several packages share: bcrypt
// hashes made cheaply, external tools the tests run, and a stand-in for the
// tagcache app.
package testutil

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"

	"golang.org/x/crypto/bcrypt"

	"github.com/tagcache/caddy-tagcache/auth"
	"github.com/tagcache/caddy-tagcache/store"
)

// BcryptHash hashes password at bcrypt's lowest cost, which keeps tests
// fast and is accepted like any `caddy hash-password` output.
func BcryptHash(t testing.TB, password string) string {
	t.Helper()
	h, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	return string(h)
}

// Tool returns the path of the first of names on PATH. A missing tool fails
// the test in CI (CI=true), where .ci/run installs debPackage, and skips it
// elsewhere.
func Tool(t testing.TB, debPackage string, names ...string) string {
	t.Helper()
	for _, name := range names {
		if bin, err := exec.LookPath(name); err == nil {
			return bin
		}
	}
	msg := fmt.Sprintf("%s is not installed (Debian package %s)", names[0], debPackage)
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}

// App stands in for the tagcache app: its stores by name ("" is
// "default"), its users, and snapshots written to SnapshotDir if it is set.
type App struct {
	Stores      map[string]*store.Store
	UserSet     *auth.Users
	SnapshotDir string
}

// NewApp returns an App whose default store is st, with users (none if
// users is nil).
func NewApp(st *store.Store, users *auth.Users) *App {
	if users == nil {
		users, _ = auth.NewUsers(auth.Config{})
	}
	return &App{Stores: map[string]*store.Store{"default": st}, UserSet: users}
}

// Store returns the named store.
func (a *App) Store(name string) (*store.Store, error) {
	if name == "" {
		name = "default"
	}
	st, ok := a.Stores[name]
	if !ok {
		return nil, fmt.Errorf("no store named %q", name)
	}
	return st, nil
}

// StoreNames returns the store names, "default" first, then the others in
// lexical order, as the app does.
func (a *App) StoreNames() []string {
	names := make([]string, 0, len(a.Stores))
	for name := range a.Stores {
		if name != "default" {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	if _, ok := a.Stores["default"]; ok {
		names = append([]string{"default"}, names...)
	}
	return names
}

// Users returns the users.
func (a *App) Users() *auth.Users { return a.UserSet }

// SaveSnapshot writes the named store to SnapshotDir/<name>.snap.
func (a *App) SaveSnapshot(name string) (store.SnapshotStats, error) {
	st, err := a.Store(name)
	if err != nil {
		return store.SnapshotStats{}, err
	}
	if a.SnapshotDir == "" {
		return store.SnapshotStats{}, errors.New("no snapshot configured")
	}
	if name == "" {
		name = "default"
	}
	return st.SaveFile(filepath.Join(a.SnapshotDir, name+".snap"), store.CompressNone)
}

var _ auth.App = (*App)(nil)
