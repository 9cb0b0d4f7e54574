package admin

import (
	"encoding/json"
	"fmt"
	"net/http"

	"github.com/caddyserver/caddy/v2"

	"github.com/tagcache/caddy-tagcache/internal/storepool"
	"github.com/tagcache/caddy-tagcache/store"
)

// snapshotRequest is the optional body of POST /tagcache/snapshot and
// /tagcache/restore.
type snapshotRequest struct {
	// Store names the store; default "default".
	Store string `json:"store,omitempty"`
}

// handleSnapshot writes the store's snapshot now (POST /tagcache/snapshot)
// or replaces the store's entries with its snapshot (POST
// /tagcache/restore), and answers the snapshot's stats.
func handleSnapshot(run func(name string) (store.SnapshotStats, error)) caddy.AdminHandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		if r.Method != http.MethodPost {
			return caddy.APIError{HTTPStatus: http.StatusMethodNotAllowed, Err: fmt.Errorf("method not allowed")}
		}
		var req snapshotRequest
		if r.ContentLength != 0 {
			if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
				return caddy.APIError{HTTPStatus: http.StatusBadRequest, Err: fmt.Errorf("decoding request: %v", err)}
			}
		}
		if req.Store == "" {
			req.Store = r.URL.Query().Get("store")
		}
		if req.Store == "" {
			req.Store = storepool.DefaultName
		}
		if _, ok := storepool.Snapshot(req.Store); !ok {
			return caddy.APIError{HTTPStatus: http.StatusNotFound, Err: fmt.Errorf("store %q does not exist or has no snapshot configured", req.Store)}
		}
		st, err := run(req.Store)
		if err != nil {
			return caddy.APIError{HTTPStatus: http.StatusInternalServerError, Err: err}
		}
		w.Header().Set("Content-Type", "application/json")
		return json.NewEncoder(w).Encode(st)
	}
}
