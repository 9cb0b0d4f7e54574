// Package admin adds tagcache routes to Caddy's admin API.
package admin

import (
	"encoding/json"
	"fmt"
	"net/http"

	"github.com/caddyserver/caddy/v2"

	"github.com/tagcache/caddy-tagcache/internal/storepool"
	"github.com/tagcache/caddy-tagcache/store"
)

func init() {
	caddy.RegisterModule(API{})
}

// API is the `admin.api.tagcache` module: it serves the tagcache routes
// under /tagcache/ on Caddy's admin endpoint.
//
// Admin modules have no config and are provisioned before the apps, so the
// routes find the stores at request time in the pool that keeps them across
// reloads, not through the app.
type API struct{}

// StatsResponse is the body of GET /tagcache/stats.
type StatsResponse struct {
	// Stores maps each live store's name to its statistics.
	Stores map[string]store.Stats `json:"stores"`
}

// CaddyModule returns the Caddy module information.
func (API) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "admin.api.tagcache",
		New: func() caddy.Module { return new(API) },
	}
}

// Routes returns the tagcache admin routes.
func (api API) Routes() []caddy.AdminRoute {
	return []caddy.AdminRoute{
		{
			Pattern: "/tagcache/stats",
			Handler: caddy.AdminHandlerFunc(api.handleStats),
		},
		{
			Pattern: "/tagcache/snapshot",
			Handler: handleSnapshot(storepool.SaveSnapshot),
		},
		{
			Pattern: "/tagcache/restore",
			Handler: handleSnapshot(storepool.RestoreSnapshot),
		},
	}
}

// handleStats reports the statistics of every live store.
func (API) handleStats(w http.ResponseWriter, r *http.Request) error {
	if r.Method != http.MethodGet {
		return caddy.APIError{
			HTTPStatus: http.StatusMethodNotAllowed,
			Err:        fmt.Errorf("method not allowed"),
		}
	}
	resp := StatsResponse{Stores: make(map[string]store.Stats)}
	storepool.Range(func(name string, st *store.Store) bool {
		resp.Stores[name] = st.Stats()
		return true
	})
	w.Header().Set("Content-Type", "application/json")
	if err := json.NewEncoder(w).Encode(resp); err != nil {
		return caddy.APIError{
			HTTPStatus: http.StatusInternalServerError,
			Err:        err,
		}
	}
	return nil
}

// Interface guards
var _ caddy.AdminRouter = (*API)(nil)
