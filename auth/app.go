// Package auth is shared by every tagcache front (HTTP handler, protocol
// listeners, JSON API): it declares how a front reaches the tagcache app.
// It also holds what every front checks credentials against: the users,
// their bcrypt hashes and permissions, bearer tokens, the per-client limit
// on failed logins, and password changes persisted in Caddy's storage.
//
// A front gets a *Users from App.Users. An HTTP front calls
// Users.AuthenticateRequest (Basic or bearer, loopback-only without
// users) and maps its errors with StatusCode; a protocol front calls
// Users.Login with the client's IP for a password, or Users.CheckToken.
package auth

import "github.com/tagcache/caddy-tagcache/store"

// App is the part of the tagcache app that fronts use.
//
// It is an interface in this leaf package, not the concrete type, because the
// root package imports every front to register its Caddy modules (so that
// `xcaddy build --with github.com/tagcache/caddy-tagcache` brings them all);
// a front importing the root package would be an import cycle. A front gets
// the app in its Provision with ctx.AppIfConfigured("tagcache") and
// type-asserts the result to App.
type App interface {
	// Store returns the store with the given name; "" means the default
	// store. It fails if the loaded config has no such store.
	Store(name string) (*store.Store, error)
	// Users returns the users of the app's auth block (none configured
	// is a valid, empty set).
	Users() *Users
	// StoreNames returns the names of the configured stores: "default"
	// first, then the others in lexical order. Fronts that number their
	// namespaces (Redis's SELECT) use this order.
	StoreNames() []string
	// SaveSnapshot writes the named store's snapshot now ("" is the
	// default store); it fails if the store has no snapshot configured.
	SaveSnapshot(name string) (store.SnapshotStats, error)
}
