package admin

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/tagcache/caddy-tagcache/internal/storepool"
	"github.com/tagcache/caddy-tagcache/store"
)

func TestSnapshotAndRestoreRoutes(t *testing.T) {
	st, _, err := storepool.Acquire("admin-snap", store.Config{SweepInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer storepool.Release("admin-snap")
	post := func(pattern, body string) (*httptest.ResponseRecorder, error) {
		rec := httptest.NewRecorder()
		return rec, adminRoute(t, pattern).ServeHTTP(rec, httptest.NewRequest(http.MethodPost, pattern, strings.NewReader(body)))
	}
	// Without a snapshot configured the store has nothing to write to.
	var apiErr caddy.APIError
	if _, err := post("/tagcache/snapshot", `{"store":"admin-snap"}`); !errors.As(err, &apiErr) || apiErr.HTTPStatus != http.StatusNotFound {
		t.Fatalf("no snapshot configured: %v", err)
	}
	storepool.SetSnapshot("admin-snap", &storepool.SnapshotTarget{Path: filepath.Join(t.TempDir(), "a.snap")})
	st.Set("k", []byte("v"), store.Params{Tags: []string{"t"}})
	rec, err := post("/tagcache/snapshot", `{"store":"admin-snap"}`)
	if err != nil {
		t.Fatal(err)
	}
	var stats store.SnapshotStats
	if err := json.Unmarshal(rec.Body.Bytes(), &stats); err != nil || stats.Entries != 1 {
		t.Fatalf("snapshot answer %s (%v)", rec.Body, err)
	}
	st.Set("later", []byte("x"), store.Params{})
	st.Delete("k")
	if _, err := post("/tagcache/restore", `{"store":"admin-snap"}`); err != nil {
		t.Fatal(err)
	}
	if _, ok := st.Get("k"); !ok {
		t.Fatal("restore did not bring k back")
	}
	if _, ok := st.Get("later"); ok {
		t.Fatal("restore kept an entry that is not in the snapshot")
	}
	if _, err := post("/tagcache/snapshot", `{bad json`); !errors.As(err, &apiErr) || apiErr.HTTPStatus != http.StatusBadRequest {
		t.Fatalf("bad JSON: %v", err)
	}

	// The last snapshot shows in the metrics.
	reg := prometheus.NewRegistry()
	if err := RegisterMetrics(reg); err != nil {
		t.Fatal(err)
	}
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, f := range families {
		if f.GetName() != "caddy_tagcache_last_snapshot_entries" {
			continue
		}
		for _, m := range f.GetMetric() {
			if m.GetLabel()[0].GetValue() == "admin-snap" && m.GetGauge().GetValue() == 1 {
				found = true
			}
		}
	}
	if !found {
		t.Fatal("no caddy_tagcache_last_snapshot_entries{store=\"admin-snap\"} 1")
	}
}
