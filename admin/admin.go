// Package admin serves the tagcache stores over HTTP: the JSON API handler
// (`tagcache_api`), routes on Caddy's admin API, Prometheus metrics and the
// `caddy tagcache` command.
package admin

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"

	"github.com/caddyserver/caddy/v2"

	"github.com/tagcache/caddy-tagcache/internal/storepool"
	"github.com/tagcache/caddy-tagcache/internal/urltag"
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
		{
			Pattern: "/tagcache/keys",
			Handler: caddy.AdminHandlerFunc(api.handleKeys),
		},
		{
			Pattern: "/tagcache/purge",
			Handler: caddy.AdminHandlerFunc(api.handlePurge),
		},
		{
			Pattern: "/tagcache/flush",
			Handler: caddy.AdminHandlerFunc(api.handleFlush),
		},
	}
}

// KeysResponse is the body of GET /tagcache/keys.
type KeysResponse struct {
	// Store is the store walked.
	Store string `json:"store"`
	keysResponse
}

// PurgeRequest is the body of POST /tagcache/purge.
type PurgeRequest struct {
	// Tags are tags whose entries are purged.
	Tags []string `json:"tags,omitempty"`
	// Keys are keys purged.
	Keys []string `json:"keys,omitempty"`
	// URLs are absolute URLs (https://host/path) whose cached responses
	// the HTTP cache purges: every query string and variant of the path.
	URLs []string `json:"urls,omitempty"`
	// Soft marks the entries stale instead of removing them, so that the
	// HTTP cache can serve them while it revalidates.
	Soft bool `json:"soft,omitempty"`
	// Store is the store to purge. Default: "default".
	Store string `json:"store,omitempty"`
}

// PurgeResponse is the body of POST /tagcache/purge: how many entries each
// part of the request removed (or marked stale). An entry matched by two
// parts is counted in the first of tags, keys, urls.
type PurgeResponse struct {
	Store string `json:"store"`
	Soft  bool   `json:"soft"`
	Tags  int    `json:"tags"`
	Keys  int    `json:"keys"`
	URLs  int    `json:"urls"`
}

// FlushResponse is the body of POST /tagcache/flush.
type FlushResponse struct {
	Store string `json:"store"`
	// Flushed is how many entries the store held.
	Flushed int64 `json:"flushed"`
}

// handleStats reports the statistics of every live store.
func (API) handleStats(w http.ResponseWriter, r *http.Request) error {
	if err := requireMethod(r, http.MethodGet); err != nil {
		return err
	}
	resp := StatsResponse{Stores: make(map[string]store.Stats)}
	storepool.Range(func(name string, st *store.Store) bool {
		resp.Stores[name] = st.Stats()
		return true
	})
	return writeAdminJSON(w, resp)
}

// handleKeys is GET /tagcache/keys?store=&prefix=&cursor=&limit=: a page
// of a resumable walk over a store's live keys, as the JSON API's GET
// /keys.
func (API) handleKeys(w http.ResponseWriter, r *http.Request) error {
	if err := requireMethod(r, http.MethodGet); err != nil {
		return err
	}
	q := r.URL.Query()
	name, st, err := lookupStore(q.Get("store"))
	if err != nil {
		return err
	}
	page, rerr := keysPage(st, q)
	if rerr != nil {
		return rerr.apiError()
	}
	resp := KeysResponse{Store: name, keysResponse: page}
	return writeAdminJSON(w, resp)
}

// handlePurge is POST /tagcache/purge: remove (or with soft, mark stale)
// the entries of tags, keys and URLs.
func (API) handlePurge(w http.ResponseWriter, r *http.Request) error {
	if err := requireMethod(r, http.MethodPost); err != nil {
		return err
	}
	var req PurgeRequest
	if rerr := decodeJSON(http.MaxBytesReader(w, r.Body, DefaultMaxBodySize), &req); rerr != nil {
		return rerr.apiError()
	}
	if len(req.Tags)+len(req.Keys)+len(req.URLs) == 0 {
		return badRequest(`nothing to purge: give "tags", "keys" or "urls"`).apiError()
	}
	urlTags := make([]string, len(req.URLs))
	for i, raw := range req.URLs {
		u, err := url.Parse(raw)
		if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
			return badRequest("url %q must be absolute, as https://example.com/path", raw).apiError()
		}
		urlTags[i] = urltag.For(u.Host, u.Path)
	}
	name, st, err := lookupStore(req.Store)
	if err != nil {
		return err
	}
	resp := PurgeResponse{Store: name, Soft: req.Soft}
	if req.Soft {
		resp.Tags = st.StaleTags(req.Tags...)
		for _, k := range req.Keys {
			if st.MarkStale(k) == nil {
				resp.Keys++
			}
		}
		resp.URLs = st.StaleTags(urlTags...)
	} else {
		resp.Tags = st.InvalidateTags(req.Tags...)
		for _, k := range req.Keys {
			if st.Delete(k) == nil {
				resp.Keys++
			}
		}
		resp.URLs = st.InvalidateTags(urlTags...)
	}
	return writeAdminJSON(w, resp)
}

// handleFlush is POST /tagcache/flush with an optional body
// {"store":"name"}: remove every entry of a store (default: "default").
func (API) handleFlush(w http.ResponseWriter, r *http.Request) error {
	if err := requireMethod(r, http.MethodPost); err != nil {
		return err
	}
	var req struct {
		Store string `json:"store,omitempty"`
	}
	if rerr := decodeJSON(http.MaxBytesReader(w, r.Body, DefaultMaxBodySize), &req); rerr != nil && rerr != errEmptyBody {
		return rerr.apiError()
	}
	name, st, err := lookupStore(req.Store)
	if err != nil {
		return err
	}
	n := st.Stats().Items
	st.Flush(0)
	return writeAdminJSON(w, FlushResponse{Store: name, Flushed: n})
}

// lookupStore finds a live store by name; "" is the default store.
func lookupStore(name string) (string, *store.Store, error) {
	if name == "" {
		name = storepool.DefaultName
	}
	st, ok := storepool.Lookup(name)
	if !ok {
		return name, nil, caddy.APIError{
			HTTPStatus: http.StatusNotFound,
			Err:        fmt.Errorf("no store named %q", name),
		}
	}
	return name, st, nil
}

func requireMethod(r *http.Request, method string) error {
	if r.Method != method {
		return caddy.APIError{
			HTTPStatus: http.StatusMethodNotAllowed,
			Err:        fmt.Errorf("method not allowed; use %s", method),
		}
	}
	return nil
}

func writeAdminJSON(w http.ResponseWriter, v any) error {
	w.Header().Set("Content-Type", "application/json")
	if err := json.NewEncoder(w).Encode(v); err != nil {
		return caddy.APIError{
			HTTPStatus: http.StatusInternalServerError,
			Err:        err,
		}
	}
	return nil
}

// Interface guards
var _ caddy.AdminRouter = (*API)(nil)
