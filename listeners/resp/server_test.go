package resp

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tagcache/caddy-tagcache/store"
)

func TestServerCommands(t *testing.T) {
	ctx := context.Background()
	eachProtocol(t, func(t *testing.T, srv *testServer, rdb *redis.Client) {
		rdb.Set(ctx, "k", "v", 0)
		info, err := rdb.Info(ctx).Result()
		if err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{"# Server\r\n", "redis_version:7.0.0\r\n", "# Clients\r\nconnected_clients:", "# Memory\r\n",
			"maxmemory_policy:allkeys-lru", "# Stats\r\n", "# Keyspace\r\ndb0:keys=1,tags=0,store=default\r\n"} {
			if !strings.Contains(info, want) {
				t.Fatalf("INFO lacks %q:\n%s", want, info)
			}
		}
		info, _ = rdb.Info(ctx, "memory").Result()
		if !strings.HasPrefix(info, "# Memory\r\n") || strings.Contains(info, "# Server") {
			t.Fatalf("INFO memory:\n%s", info)
		}

		n, err := rdb.DBSize(ctx).Result()
		check(t, "DBSIZE", n, err, 1)
		cfg, err := rdb.ConfigGet(ctx, "max*").Result()
		if err != nil || cfg["maxmemory"] != strconv.Itoa(store.DefaultMaxMemory) || cfg["max-item-size"] != "1048576" || cfg["maxmemory-policy"] != "allkeys-lru" {
			t.Fatalf("CONFIG GET max* = %v, %v", cfg, err)
		}
		cfg, _ = rdb.ConfigGet(ctx, "MAXMEMORY").Result()
		if len(cfg) != 1 {
			t.Fatalf("CONFIG GET is case-insensitive: %v", cfg)
		}
		s, err := rdb.ConfigSet(ctx, "maxmemory", "64mb").Result()
		check(t, "CONFIG SET maxmemory", s, err, "OK")
		err = rdb.Do(ctx, "CONFIG", "SET", "max-item-size", "2kb", "max-key-length", "100").Err()
		check(t, "CONFIG SET two parameters", 0, err, 0)
		sc := srv.store("default").Config()
		if sc.MaxMemory != 64<<20 || sc.MaxItemSize != 2048 || sc.MaxKeyLength != 100 {
			t.Fatalf("store config after CONFIG SET: %+v", sc)
		}
		checkErr(t, "CONFIG SET maxmemory 0", rdb.ConfigSet(ctx, "maxmemory", "0").Err(),
			"ERR CONFIG SET failed (possibly related to argument 'maxmemory') - a store needs a memory budget; 0 (no limit) is not supported")
		checkErr(t, "CONFIG SET read-only", rdb.ConfigSet(ctx, "databases", "4").Err(),
			"ERR CONFIG SET failed (possibly related to argument 'databases') - can't set immutable config")
		// A refused parameter leaves the others unchanged.
		rdb.Do(ctx, "CONFIG", "SET", "maxmemory", "32mb", "max-item-size", "x")
		if got := srv.store("default").Config().MaxMemory; got != 64<<20 {
			t.Fatalf("half-applied CONFIG SET: maxmemory %d", got)
		}
		rdb.ConfigSet(ctx, "max-item-size", "1mb")

		count, err := rdb.Do(ctx, "COMMAND", "COUNT").Int64()
		check(t, "COMMAND COUNT", count, err, int64(len(commands)))
		cmds, err := rdb.Command(ctx).Result()
		if err != nil || cmds["get"] == nil || cmds["get"].Arity != 2 || !cmds["get"].ReadOnly || cmds["mset"].LastKeyPos != -1 {
			t.Fatalf("COMMAND: %v (get: %+v)", err, cmds["get"])
		}
		docs, err := rdb.Do(ctx, "COMMAND", "DOCS", "get", "config").Result()
		if err != nil || !strings.Contains(fmt.Sprint(docs), "Returns the string value of a key.") || !strings.Contains(fmt.Sprint(docs), "config|get") {
			t.Fatalf("COMMAND DOCS: %v, %v", docs, err)
		}
		infos, err := rdb.Do(ctx, "COMMAND", "INFO", "get", "nosuch", "config|set").Slice()
		if err != nil || len(infos) != 3 || infos[1] != nil || fmt.Sprint(infos[2].([]any)[0]) != "config|set" {
			t.Fatalf("COMMAND INFO: %v, %v", infos, err)
		}

		tm, err := rdb.Time(ctx).Result()
		if err != nil || time.Since(tm).Abs() > 5*time.Second {
			t.Fatalf("TIME = %v, %v", tm, err)
		}
		check(t, "ECHO", rdb.Echo(ctx, "hi").Val(), nil, "hi")
		check(t, "PING", rdb.Ping(ctx).Val(), nil, "PONG")

		checkErr(t, "HSET", rdb.HSet(ctx, "h", "f", "v").Err(), "ERR unsupported command 'hset': tagcache stores strings only; hashes are not supported yet")
		checkErr(t, "ZADD", rdb.ZAdd(ctx, "z", redis.Z{Score: 1, Member: "m"}).Err(), "ERR unsupported command 'zadd': tagcache stores strings only; sorted sets are not supported yet")
		check(t, "GET after an unsupported command", rdb.Get(ctx, "k").Val(), nil, "v")
	})
}

func TestClientCommands(t *testing.T) {
	ctx := context.Background()
	srv := startServer(t, serverOptions{})
	rdb := newClient(t, srv.addr, 3, func(o *redis.Options) { o.ClientName = "app" })
	name, err := rdb.ClientGetName(ctx).Result()
	check(t, "CLIENT GETNAME", name, err, "app")
	id, err := rdb.ClientID(ctx).Result()
	if err != nil || id <= 0 {
		t.Fatalf("CLIENT ID = %d, %v", id, err)
	}
	info, err := rdb.ClientInfo(ctx).Result()
	if err != nil || info.ID != id || info.Name != "app" || !strings.HasPrefix(info.LibName, "go-redis") || info.Resp != 3 {
		t.Fatalf("CLIENT INFO = %+v, %v", info, err)
	}
	other := newClient(t, srv.addr, 2)
	sub := other.Subscribe(ctx, "ch")
	defer sub.Close()
	sub.Receive(ctx)
	list, err := rdb.ClientList(ctx).Result()
	if err != nil || strings.Count(list, "\n") != 2 || !strings.Contains(list, "name=app") || !strings.Contains(list, "flags=P") {
		t.Fatalf("CLIENT LIST:\n%s%v", list, err)
	}
	list, _ = rdb.Do(ctx, "CLIENT", "LIST", "TYPE", "pubsub").Text()
	if strings.Count(list, "\n") != 1 || !strings.Contains(list, "sub=1") {
		t.Fatalf("CLIENT LIST TYPE pubsub:\n%s", list)
	}
	list, _ = rdb.Do(ctx, "CLIENT", "LIST", "ID", strconv.FormatInt(id, 10)).Text()
	if !strings.HasPrefix(list, "id="+strconv.FormatInt(id, 10)+" ") || strings.Count(list, "\n") != 1 {
		t.Fatalf("CLIENT LIST ID:\n%s", list)
	}
	checkErr(t, "CLIENT SETNAME with a space", rdb.Do(ctx, "CLIENT", "SETNAME", "a b").Err(), "ERR Client names cannot contain spaces, newlines or special characters.")
	help, err := rdb.Do(ctx, "CLIENT", "HELP").StringSlice()
	if err != nil || !strings.HasPrefix(help[0], "CLIENT <subcommand>") {
		t.Fatalf("CLIENT HELP = %q, %v", help, err)
	}
}

func TestSelectAndFlushAll(t *testing.T) {
	ctx := context.Background()
	srv := startServer(t, serverOptions{stores: []string{"sessions", "api"}})
	c := dialRaw(t, srv.addr)
	c.expect([]step{
		{"NAMESPACES", "*3\r\n$7\r\ndefault\r\n$3\r\napi\r\n$8\r\nsessions\r\n"},
		{"SET k default", "+OK\r\n"},
		{"SELECT 2", "+OK\r\n"},
		{"GET k", "$-1\r\n"},
		{"SET k sessions", "+OK\r\n"},
		{"SELECT api", "+OK\r\n"},
		{"SET k api", "+OK\r\n"},
		{"COPY k k2 DB sessions", ":1\r\n"},
		{"SELECT 3", "-ERR DB index is out of range\r\n"},
		{"SELECT nosuch", "-ERR no store named 'nosuch' (SELECT takes an index or a store name)\r\n"},
		{"SELECT 0", "+OK\r\n"},
		{"GET k", "$7\r\ndefault\r\n"},
		{"SELECT sessions", "+OK\r\n"},
		{"INFO keyspace", "$108\r\n# Keyspace\r\ndb0:keys=1,tags=0,store=default\r\ndb1:keys=1,tags=0,store=api\r\ndb2:keys=2,tags=0,store=sessions\r\n\r\n"},
		{"RESET", "+RESET\r\n"},
		{"GET k", "$7\r\ndefault\r\n"},
	})
	if it, _ := srv.store("sessions").Get("k2"); string(it.Value) != "api" {
		t.Fatalf("COPY DB wrote %q", it.Value)
	}
	rdb := newClient(t, srv.addr, 3, func(o *redis.Options) { o.DB = 2 })
	s, err := rdb.Get(ctx, "k").Result()
	check(t, "GET with go-redis DB 2", s, err, "sessions")
	rdb.FlushAll(ctx)
	for _, name := range []string{"default", "sessions", "api"} {
		if n := srv.store(name).Stats().Items; n != 0 {
			t.Fatalf("store %s has %d items after FLUSHALL", name, n)
		}
	}
}

func TestSnapshots(t *testing.T) {
	ctx := context.Background()
	srv := startServer(t, serverOptions{stores: []string{"nosnap"}})
	rdb := newClient(t, srv.addr, 3)
	rdb.Set(ctx, "k", "v", 0)
	s, err := rdb.Save(ctx).Result()
	check(t, "SAVE", s, err, "OK")
	if _, err := os.Stat(filepath.Join(srv.app.dir, "default.snap")); err != nil {
		t.Fatalf("SAVE wrote no file: %v", err)
	}
	last, err := rdb.LastSave(ctx).Result()
	if err != nil || time.Since(time.Unix(last, 0)) > time.Minute {
		t.Fatalf("LASTSAVE = %d, %v", last, err)
	}
	s, err = rdb.BgSave(ctx).Result()
	check(t, "BGSAVE", s, err, "Background saving started")
	for deadline := time.Now().Add(5 * time.Second); srv.app.saves.Load() < 2; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("BGSAVE saved nothing")
		}
	}
	rdb.Do(ctx, "SELECT", "nosnap")
	checkErr(t, "SAVE without a snapshot", rdb.Save(ctx).Err(), "ERR store \"nosnap\" has no snapshot configured")
}
