package resp

import (
	"bufio"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/tagcache/caddy-tagcache/auth"
	"github.com/tagcache/caddy-tagcache/internal/testutil"
	"github.com/tagcache/caddy-tagcache/listeners"
	"github.com/tagcache/caddy-tagcache/store"
)

// fakeApp is the tagcache app as a front sees it: named stores, users and
// snapshots, without Caddy.
type fakeApp struct {
	stores map[string]*store.Store
	users  *auth.Users
	dir    string
	saves  atomic.Int32
}

func (a *fakeApp) Store(name string) (*store.Store, error) {
	if name == "" {
		name = "default"
	}
	st, ok := a.stores[name]
	if !ok {
		return nil, fmt.Errorf("no store named %q", name)
	}
	return st, nil
}

func (a *fakeApp) Users() *auth.Users { return a.users }

func (a *fakeApp) StoreNames() []string {
	var names []string
	for name := range a.stores {
		if name != "default" {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	return append([]string{"default"}, names...)
}

// SaveSnapshot saves to the test's directory; the store "nosnap" has no
// snapshot configured.
func (a *fakeApp) SaveSnapshot(name string) (store.SnapshotStats, error) {
	st, err := a.Store(name)
	if err != nil {
		return store.SnapshotStats{}, err
	}
	if name == "nosnap" {
		return store.SnapshotStats{}, errors.New("store \"nosnap\" has no snapshot configured")
	}
	defer a.saves.Add(1)
	return st.SaveFile(filepath.Join(a.dir, name+".snap"), store.CompressNone)
}

// testUser is a user of the fake app: password is the user name plus "pw".
type testUser struct {
	name  string
	perms []string
}

type serverOptions struct {
	stores       []string // besides "default"
	users        []testUser
	authRequired bool
	limits       listeners.Limits
	storeConfig  store.Config
	// tls, if set, makes the server speak TLS, as the listener framework
	// does with Caddy's certificates.
	tls *tls.Config
}

// testServer serves the fake app's default store over RESP on 127.0.0.1,
// as the listener framework does: one listeners.Session per connection.
type testServer struct {
	t    testing.TB
	app  *fakeApp
	ln   net.Listener
	addr string
	wg   sync.WaitGroup

	mu    sync.Mutex
	conns map[net.Conn]bool
	// reads and flushes count the server's read and write calls, to check
	// that a pipelined batch is answered with one write.
	reads, writes atomic.Int64
}

// testPorts hands out ports of this package's range (19500-19549; 19550
// and up are for reference servers and the benchmark).
var testPorts atomic.Int32

func listenTestPort(t testing.TB) net.Listener {
	for range 50 {
		port := 19500 + int(testPorts.Add(1)-1)%50
		ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err == nil {
			return ln
		}
		if !errors.Is(err, syscall.EADDRINUSE) {
			t.Fatal(err)
		}
	}
	t.Fatal("no free port in 19500-19549")
	return nil
}

func startServer(t testing.TB, opts serverOptions) *testServer {
	t.Helper()
	app := &fakeApp{stores: map[string]*store.Store{}, dir: t.TempDir()}
	for _, name := range append([]string{"default"}, opts.stores...) {
		st, err := store.New(opts.storeConfig)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(st.Close)
		app.stores[name] = st
	}
	var cfg auth.Config
	for _, u := range opts.users {
		cfg.Users = append(cfg.Users, auth.UserConfig{Username: u.name, Password: testutil.BcryptHash(t, u.name+"pw"), Permissions: u.perms})
	}
	users, err := auth.NewUsers(cfg)
	if err != nil {
		t.Fatal(err)
	}
	app.users = users
	srv := &testServer{t: t, app: app, ln: listenTestPort(t), conns: map[net.Conn]bool{}}
	if opts.tls != nil {
		srv.ln = tls.NewListener(srv.ln, opts.tls)
	}
	srv.addr = srv.ln.Addr().String()
	srv.wg.Add(1)
	go func() {
		defer srv.wg.Done()
		for {
			nc, err := srv.ln.Accept()
			if err != nil {
				return
			}
			cc := &countingConn{Conn: nc, srv: srv}
			srv.mu.Lock()
			srv.conns[nc] = true
			srv.mu.Unlock()
			srv.wg.Add(1)
			go func() {
				defer srv.wg.Done()
				s := listeners.NewSession(cc, bufio.NewReaderSize(cc, 16<<10), bufio.NewWriterSize(cc, 16<<10),
					app.stores["default"], app, opts.authRequired)
				s.Limits = opts.limits
				if err := new(Protocol).Serve(s); err != nil && !errors.Is(err, net.ErrClosed) {
					t.Logf("Serve: %v", err)
				}
				nc.Close()
				srv.mu.Lock()
				delete(srv.conns, nc)
				srv.mu.Unlock()
			}()
		}
	}()
	t.Cleanup(srv.close)
	return srv
}

func (srv *testServer) close() {
	srv.ln.Close()
	srv.mu.Lock()
	for nc := range srv.conns {
		nc.Close()
	}
	srv.mu.Unlock()
	srv.wg.Wait()
}

func (srv *testServer) store(name string) *store.Store {
	st, err := srv.app.Store(name)
	if err != nil {
		srv.t.Fatal(err)
	}
	return st
}

type countingConn struct {
	net.Conn
	srv *testServer
}

func (c *countingConn) Read(b []byte) (int, error) {
	c.srv.reads.Add(1)
	return c.Conn.Read(b)
}

func (c *countingConn) Write(b []byte) (int, error) {
	c.srv.writes.Add(1)
	return c.Conn.Write(b)
}
