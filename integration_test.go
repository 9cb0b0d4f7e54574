package tagcache

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"testing"

	"github.com/caddyserver/caddy/v2/caddytest"

	"github.com/tagcache/caddy-tagcache/internal/storepool"
	"github.com/tagcache/caddy-tagcache/store"
)

// integrationConfig is a Caddyfile on caddytest's admin port (2999) and test
// ports, with the given tagcache global option body.
func integrationConfig(tagcache string) string {
	return fmt.Sprintf(`{
	admin localhost:2999
	http_port 9080
	https_port 9443
	grace_period 1ns
	skip_install_trust
	tagcache {
%s
	}
}

http://localhost:9080 {
	respond "hello"
}
`, tagcache)
}

func lookupStore(t *testing.T, name string) *store.Store {
	t.Helper()
	st, ok := storepool.Lookup(name)
	if !ok {
		t.Fatalf("no live store named %q", name)
	}
	return st
}

// TestIntegrationReload runs Caddy in-process, writes through the app's
// stores, reloads with changed budgets and a store removed, and checks the
// data, the budgets and the admin stats route.
func TestIntegrationReload(t *testing.T) {
	tester := caddytest.NewTester(t)
	tester.InitServer(integrationConfig(`
		store {
			max_memory 64MiB
		}
		store sessions {
			max_memory 1MiB
		}
		store bulk {
			max_memory 8MiB
		}`), "caddyfile")
	tester.AssertGetResponse("http://localhost:9080/", http.StatusOK, "hello")

	def := lookupStore(t, "default")
	sessions := lookupStore(t, "sessions")
	bulk := lookupStore(t, "bulk")
	if got := def.Stats().MaxMemory; got != 64<<20 {
		t.Fatalf("default max_memory = %d; want %d", got, 64<<20)
	}
	if _, err := def.Set("page:/products/42", []byte("<html>42</html>"), store.Params{Tags: []string{"product:42"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := sessions.Set("session:abc", []byte("alice"), store.Params{}); err != nil {
		t.Fatal(err)
	}
	value := make([]byte, 32<<10)
	for i := range 64 { // 2 MiB
		if _, err := bulk.Set(fmt.Sprintf("blob:%d", i), value, store.Params{}); err != nil {
			t.Fatal(err)
		}
	}

	// Reload: default's budget halves, bulk's shrinks below its contents,
	// sessions is removed.
	tester.InitServer(integrationConfig(`
		store {
			max_memory 32MiB
		}
		store bulk {
			max_memory 1MiB
		}`), "caddyfile")
	tester.AssertGetResponse("http://localhost:9080/", http.StatusOK, "hello")

	if got := lookupStore(t, "default"); got != def {
		t.Fatal("reload replaced the default store; want the live store kept")
	}
	if it, ok := def.Get("page:/products/42"); !ok || string(it.Value) != "<html>42</html>" {
		t.Errorf("after reload Get = %q, %v; want the cached page", it.Value, ok)
	}
	if got := def.TagCount("product:42"); got != 1 {
		t.Errorf("after reload TagCount(product:42) = %d; want 1", got)
	}
	if got := def.Stats().MaxMemory; got != 32<<20 {
		t.Errorf("after reload default max_memory = %d; want the new budget %d", got, 32<<20)
	}
	if st := bulk.Stats(); st.MaxMemory != 1<<20 || st.Bytes > st.MaxMemory || st.Evictions == 0 {
		t.Errorf("after shrinking bulk: max_memory %d, bytes %d, evictions %d; want 1 MiB, bytes within it, evictions > 0",
			st.MaxMemory, st.Bytes, st.Evictions)
	}
	if _, ok := storepool.Lookup("sessions"); ok {
		t.Error("the sessions store is still live after a reload that removed it")
	}
	if it, ok := sessions.Get("session:abc"); ok || sessions.Stats().Items != 0 {
		t.Errorf("the removed sessions store still holds data: Get = %q, %v, items %d", it.Value, ok, sessions.Stats().Items)
	}

	// Admin API.
	resp, err := tester.Client.Get("http://localhost:2999/tagcache/stats")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("GET /tagcache/stats: %s, Content-Type %q: %s", resp.Status, resp.Header.Get("Content-Type"), body)
	}
	var stats struct {
		Stores map[string]store.Stats `json:"stores"`
	}
	if err := json.Unmarshal(body, &stats); err != nil {
		t.Fatalf("GET /tagcache/stats: %v: %s", err, body)
	}
	if got := stats.Stores["default"]; got.Items != 1 || got.MaxMemory != 32<<20 || got.Tags != 1 || got.Shards != store.DefaultShards {
		t.Errorf("stats of default = %+v; want 1 item, 1 tag, max_memory %d, %d shards", got, 32<<20, store.DefaultShards)
	}
	if _, ok := stats.Stores["bulk"]; !ok {
		t.Errorf("stats lack the bulk store: %s", body)
	}
	if _, ok := stats.Stores["sessions"]; ok {
		t.Errorf("stats still list the removed sessions store: %s", body)
	}

	req, _ := http.NewRequest(http.MethodPost, "http://localhost:2999/tagcache/stats", nil)
	resp, err = tester.Client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST /tagcache/stats: %s; want 405", resp.Status)
	}
}
