package tagcache

import (
	"encoding/json"
	"net"
	"runtime"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"

	"github.com/tagcache/caddy-tagcache/listeners"
)

// listenerGoroutines counts goroutines running code of the listeners
// packages.
func listenerGoroutines() int {
	buf := make([]byte, 1<<20)
	n := runtime.Stack(buf, true)
	return strings.Count(string(buf[:n]), "caddy-tagcache/listeners.")
}

// portFree reports whether nothing listens on addr.
func portFree(t *testing.T, addr string) bool {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return false
	}
	ln.Close()
	return true
}

// TestValidateBindsNothing checks what `caddy validate` relies on: a config
// with listeners is provisioned and cleaned up without binding a port or
// starting a goroutine.
func TestValidateBindsNothing(t *testing.T) {
	before := listenerGoroutines()
	cfg := &caddy.Config{AppsRaw: caddy.ModuleMap{"tagcache": json.RawMessage(`{
		"listeners": [{"address": "127.0.0.1:19105", "protocol": {"protocol": "tcp"}}]
	}`)}}
	if err := caddy.Validate(cfg); err != nil {
		t.Fatalf("caddy.Validate: %v", err)
	}
	if !portFree(t, "127.0.0.1:19105") {
		t.Error("caddy.Validate left the listener's port bound")
	}
	// Connections of the other tests' listeners may still be ending, so
	// the count can drop; it must not grow.
	if got := listenerGoroutines(); got > before {
		t.Errorf("caddy.Validate left %d listener goroutines, %d before", got, before)
	}
	listeners.Range(func(st listeners.Stats) bool {
		if st.Address == "127.0.0.1:19105" {
			t.Errorf("caddy.Validate registered the listener's stats: %+v", st)
		}
		return true
	})
}

func TestListenerConfigErrors(t *testing.T) {
	const users = `"auth": {"users": [{"username": "u", "password": "$2a$04$fZ4yPOlWW3PDsNBHQdxUm.1wvBAu1uOa4XeJQZ6s/Y3z1Wp1RGjJW"}]}`
	for _, tc := range []struct {
		name, json, want string
	}{
		{"auth without users", `{"listeners": [{"address": ":19106", "protocol": {"protocol": "tcp"}, "auth": "required"}]}`,
			"auth required, but no users are configured"},
		{"auth value", `{` + users + `, "listeners": [{"address": ":19106", "protocol": {"protocol": "tcp"}, "auth": "yes"}]}`,
			`auth must be "required" or empty`},
		{"unknown protocol", `{"listeners": [{"address": ":19106", "protocol": {"protocol": "gopher"}}]}`,
			"tagcache.listeners.gopher"},
		{"no protocol", `{"listeners": [{"address": ":19106"}]}`, "no protocol"},
		{"no port", `{"listeners": [{"address": "localhost", "protocol": {"protocol": "tcp"}}]}`, "want exactly one port"},
		{"port range", `{"listeners": [{"address": ":19106-19107", "protocol": {"protocol": "tcp"}}]}`, "want exactly one port"},
		{"udp", `{"listeners": [{"address": "udp/:19106", "protocol": {"protocol": "tcp"}}]}`, `network "udp" is not supported`},
		{"unknown store", `{"listeners": [{"address": ":19106", "protocol": {"protocol": "tcp"}, "store": "nope"}]}`,
			`no store named "nope"`},
		{"negative limit", `{"listeners": [{"address": ":19106", "protocol": {"protocol": "tcp"}, "max_connections": -1}]}`,
			"must not be negative"},
		{"same address twice", `{"listeners": [{"address": "127.0.0.1:19106", "protocol": {"protocol": "tcp"}},
			{"address": "127.0.0.1:19106", "protocol": {"protocol": "tcp"}}]}`, "already used by listener 0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := &caddy.Config{AppsRaw: caddy.ModuleMap{"tagcache": json.RawMessage(tc.json)}}
			err := caddy.Validate(cfg)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("caddy.Validate = %v; want an error containing %q", err, tc.want)
			}
		})
	}
}

// TestStartFailureStopsStartedListeners checks that when a listener cannot
// bind, the ones started before it are stopped: Caddy does not stop an app
// whose Start failed.
func TestStartFailureStopsStartedListeners(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:19108")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()

	ctx := newTestContext(t)
	a := new(App)
	if err := json.Unmarshal([]byte(`{"listeners": [
		{"address": "127.0.0.1:19107", "protocol": {"protocol": "tcp"}},
		{"address": "127.0.0.1:19108", "protocol": {"protocol": "tcp"}}]}`), a); err != nil {
		t.Fatal(err)
	}
	if err := a.Provision(ctx); err != nil {
		t.Fatal(err)
	}
	defer a.Cleanup()
	if err := a.Start(); err == nil || !strings.Contains(err.Error(), "listener 1") {
		a.Stop()
		t.Fatalf("Start = %v; want listener 1 failing to bind", err)
	}
	if !portFree(t, "127.0.0.1:19107") {
		t.Error("the first listener still holds its port after Start failed")
	}
}

// TestListenerLimitDefaults checks that max_value_size defaults to the
// store's max_item_size, and the tcp protocol's line limit follows it.
func TestListenerLimitDefaults(t *testing.T) {
	ctx := newTestContext(t)
	a := new(App)
	if err := json.Unmarshal([]byte(`{
		"stores": {"unit-listener-limits": {"max_item_size": 4096}},
		"listeners": [{"address": "127.0.0.1:19109", "protocol": {"protocol": "tcp"}, "store": "unit-listener-limits"}]}`), a); err != nil {
		t.Fatal(err)
	}
	mustProvisionStart(t, ctx, a)
	defer mustStopCleanup(t, a)

	c := dialTab(t, "tcp", "127.0.0.1:19109")
	c.do("PUT\tk\t-\t-\t"+strings.Repeat("v", 4096), "OK")
	c.do("PUT\tk\t-\t-\t"+strings.Repeat("v", 4097), "ERR value too large")
	c.do("GET\tk", "VALUE "+strings.Repeat("v", 4096))
}
