package resp

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tagcache/caddy-tagcache/store"
)

// These tests drive the listener with go-redis, the client most Go
// applications use, in both protocol versions.

func newClient(t testing.TB, addr string, protocol int, opts ...func(*redis.Options)) *redis.Client {
	t.Helper()
	o := &redis.Options{Addr: addr, Protocol: protocol, MaxRetries: -1, DialTimeout: 5 * time.Second,
		ReadTimeout: 5 * time.Second, WriteTimeout: 5 * time.Second}
	for _, f := range opts {
		f(o)
	}
	rdb := redis.NewClient(o)
	t.Cleanup(func() { rdb.Close() })
	return rdb
}

// eachProtocol runs f against a fresh server with a RESP2 and a RESP3
// client.
func eachProtocol(t *testing.T, f func(t *testing.T, srv *testServer, rdb *redis.Client), stores ...string) {
	for _, proto := range []int{2, 3} {
		t.Run("RESP"+strconv.Itoa(proto), func(t *testing.T) {
			srv := startServer(t, serverOptions{stores: stores})
			f(t, srv, newClient(t, srv.addr, proto))
		})
	}
}

// check fails the test if err is not nil or got is not want.
func check[T comparable](t *testing.T, what string, got T, err error, want T) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	if got != want {
		t.Fatalf("%s = %v, want %v", what, got, want)
	}
}

// checkErr fails the test unless err's message is msg.
func checkErr(t *testing.T, what string, err error, msg string) {
	t.Helper()
	if err == nil || err.Error() != msg {
		t.Fatalf("%s: error %v, want %q", what, err, msg)
	}
}

func TestStrings(t *testing.T) {
	ctx := context.Background()
	eachProtocol(t, func(t *testing.T, srv *testServer, rdb *redis.Client) {
		s, err := rdb.Set(ctx, "k", "v", 0).Result()
		check(t, "SET", s, err, "OK")
		s, err = rdb.Get(ctx, "k").Result()
		check(t, "GET", s, err, "v")
		if _, err := rdb.Get(ctx, "nope").Result(); err != redis.Nil {
			t.Fatalf("GET missing: %v, want redis.Nil", err)
		}
		// SET options.
		ok, err := rdb.SetNX(ctx, "k", "x", 0).Result()
		check(t, "SET NX existing", ok, err, false)
		ok, err = rdb.SetXX(ctx, "nope", "x", 0).Result()
		check(t, "SET XX missing", ok, err, false)
		ok, err = rdb.SetXX(ctx, "k", "v2", time.Minute).Result()
		check(t, "SET XX existing", ok, err, true)
		old, err := rdb.SetArgs(ctx, "k", "v3", redis.SetArgs{Get: true, KeepTTL: true}).Result()
		check(t, "SET GET KEEPTTL", old, err, "v2")
		d, err := rdb.TTL(ctx, "k").Result()
		check(t, "TTL after KEEPTTL", d, err, time.Minute)
		_, err = rdb.SetArgs(ctx, "k", "v4", redis.SetArgs{ExpireAt: time.Unix(4102444800, 0)}).Result()
		check(t, "SET EXAT", 0, err, 0)
		at, err := rdb.ExpireTime(ctx, "k").Result()
		check(t, "EXPIRETIME", at, err, 4102444800*time.Second)
		s, err = rdb.Set(ctx, "k", "v5", 0).Result()
		check(t, "SET plain", s, err, "OK")
		d, err = rdb.TTL(ctx, "k").Result()
		check(t, "TTL after plain SET", d, err, time.Duration(-1))
		checkErr(t, "SET EX 0", rdb.Do(ctx, "SET", "k", "v", "EX", "0").Err(), "ERR invalid expire time in 'set' command")
		checkErr(t, "SET bad option", rdb.Do(ctx, "SET", "k", "v", "FOO").Err(), "ERR syntax error")

		ok, err = rdb.SetNX(ctx, "nx", "1", 0).Result()
		check(t, "SETNX", ok, err, true)
		s, err = rdb.SetEx(ctx, "ex", "1", 10*time.Second).Result()
		check(t, "SETEX", s, err, "OK")
		ms, err := rdb.PTTL(ctx, "ex").Result()
		if err != nil || ms <= 9*time.Second || ms > 10*time.Second {
			t.Fatalf("PTTL after SETEX = %v, %v", ms, err)
		}
		checkErr(t, "PSETEX 0", rdb.Do(ctx, "PSETEX", "ex", "0", "v").Err(), "ERR invalid expire time in 'psetex' command")
		s, err = rdb.Do(ctx, "PSETEX", "ex", "1500", "v").Text()
		check(t, "PSETEX", s, err, "OK")
		ms, err = rdb.PTTL(ctx, "ex").Result()
		if err != nil || ms <= time.Second || ms > 1500*time.Millisecond {
			t.Fatalf("PTTL after PSETEX = %v, %v", ms, err)
		}

		s, err = rdb.MSet(ctx, "a", "1", "b", "2").Result()
		check(t, "MSET", s, err, "OK")
		vals, err := rdb.MGet(ctx, "a", "nope", "b").Result()
		if err != nil || fmt.Sprint(vals) != "[1 <nil> 2]" {
			t.Fatalf("MGET = %v, %v", vals, err)
		}
		ok, err = rdb.MSetNX(ctx, "a", "x", "c", "3").Result()
		check(t, "MSETNX with an existing key", ok, err, false)
		if n, _ := rdb.Exists(ctx, "c").Result(); n != 0 {
			t.Fatal("MSETNX wrote c although a exists")
		}
		ok, err = rdb.MSetNX(ctx, "c", "3", "d", "4").Result()
		check(t, "MSETNX", ok, err, true)

		s, err = rdb.GetSet(ctx, "a", "10").Result()
		check(t, "GETSET", s, err, "1")
		s, err = rdb.GetDel(ctx, "a").Result()
		check(t, "GETDEL", s, err, "10")
		if _, err := rdb.GetDel(ctx, "a").Result(); err != redis.Nil {
			t.Fatalf("GETDEL missing: %v", err)
		}

		n, err := rdb.Append(ctx, "ap", "hello").Result()
		check(t, "APPEND new", n, err, 5)
		n, err = rdb.Append(ctx, "ap", " world").Result()
		check(t, "APPEND", n, err, 11)
		n, err = rdb.StrLen(ctx, "ap").Result()
		check(t, "STRLEN", n, err, 11)
		s, err = rdb.GetRange(ctx, "ap", -5, -1).Result()
		check(t, "GETRANGE", s, err, "world")
		s, err = rdb.Do(ctx, "SUBSTR", "ap", 0, 4).Text()
		check(t, "SUBSTR", s, err, "hello")
		n, err = rdb.SetRange(ctx, "ap", 6, "WORLD").Result()
		check(t, "SETRANGE", n, err, 11)
		n, err = rdb.SetRange(ctx, "pad", 3, "x").Result()
		check(t, "SETRANGE new", n, err, 4)
		s, err = rdb.Get(ctx, "pad").Result()
		check(t, "zero padding", s, err, "\x00\x00\x00x")

		n, err = rdb.Incr(ctx, "i").Result()
		check(t, "INCR new", n, err, 1)
		n, err = rdb.IncrBy(ctx, "i", 41).Result()
		check(t, "INCRBY", n, err, 42)
		n, err = rdb.Decr(ctx, "i").Result()
		check(t, "DECR", n, err, 41)
		n, err = rdb.DecrBy(ctx, "i", 50).Result()
		check(t, "DECRBY", n, err, -9)
		rdb.Set(ctx, "i", strconv.FormatInt(1<<62, 10)+"0", 0)
		checkErr(t, "INCR not an integer", rdb.Incr(ctx, "i").Err(), "ERR value is not an integer or out of range")
		rdb.Set(ctx, "i", "9223372036854775807", 0)
		checkErr(t, "INCR overflow", rdb.Incr(ctx, "i").Err(), "ERR increment or decrement would overflow")
		// INCR keeps the expiry.
		rdb.Set(ctx, "i", "1", time.Hour)
		rdb.Incr(ctx, "i")
		d, err = rdb.TTL(ctx, "i").Result()
		check(t, "TTL after INCR", d, err, time.Hour)

		f, err := rdb.IncrByFloat(ctx, "f", 0.1).Result()
		check(t, "INCRBYFLOAT", f, err, 0.1)
		f, err = rdb.IncrByFloat(ctx, "f", 0.2).Result()
		check(t, "INCRBYFLOAT", f, err, 0.3)
		s, err = rdb.Get(ctx, "f").Result()
		check(t, "INCRBYFLOAT stores Redis's formatting", s, err, "0.3")
	})
}

func TestExpiry(t *testing.T) {
	ctx := context.Background()
	eachProtocol(t, func(t *testing.T, srv *testServer, rdb *redis.Client) {
		rdb.Set(ctx, "k", "v", 0)
		d, err := rdb.TTL(ctx, "k").Result()
		check(t, "TTL without expiry", d, err, time.Duration(-1))
		d, err = rdb.TTL(ctx, "nope").Result()
		check(t, "TTL missing", d, err, time.Duration(-2))
		ok, err := rdb.ExpireXX(ctx, "k", time.Minute).Result()
		check(t, "EXPIRE XX without expiry", ok, err, false)
		ok, err = rdb.ExpireNX(ctx, "k", time.Minute).Result()
		check(t, "EXPIRE NX", ok, err, true)
		ok, err = rdb.ExpireNX(ctx, "k", time.Hour).Result()
		check(t, "EXPIRE NX with expiry", ok, err, false)
		ok, err = rdb.ExpireGT(ctx, "k", time.Second).Result()
		check(t, "EXPIRE GT smaller", ok, err, false)
		ok, err = rdb.ExpireGT(ctx, "k", time.Hour).Result()
		check(t, "EXPIRE GT larger", ok, err, true)
		ok, err = rdb.ExpireLT(ctx, "k", 2*time.Hour).Result()
		check(t, "EXPIRE LT larger", ok, err, false)
		ok, err = rdb.ExpireLT(ctx, "k", 30*time.Minute).Result()
		check(t, "EXPIRE LT smaller", ok, err, true)
		d, err = rdb.TTL(ctx, "k").Result()
		check(t, "TTL", d, err, 30*time.Minute)
		ok, err = rdb.PExpire(ctx, "k", 1500*time.Millisecond).Result()
		check(t, "PEXPIRE", ok, err, true)
		d, err = rdb.PTTL(ctx, "k").Result()
		if err != nil || d <= time.Second || d > 1500*time.Millisecond {
			t.Fatalf("PTTL = %v, %v", d, err)
		}
		ok, err = rdb.ExpireAt(ctx, "k", time.Unix(4102444800, 0)).Result()
		check(t, "EXPIREAT", ok, err, true)
		d, err = rdb.PExpireTime(ctx, "k").Result()
		check(t, "PEXPIRETIME", d, err, 4102444800*time.Second)
		ok, err = rdb.PExpireAt(ctx, "k", time.UnixMilli(4102444800123)).Result()
		check(t, "PEXPIREAT", ok, err, true)
		it, _ := srv.store("default").Get("k")
		check(t, "store expiry", it.Expires, nil, 4102444800123)
		ok, err = rdb.Persist(ctx, "k").Result()
		check(t, "PERSIST", ok, err, true)
		ok, err = rdb.Persist(ctx, "k").Result()
		check(t, "PERSIST again", ok, err, false)
		// A time in the past removes the key.
		ok, err = rdb.Expire(ctx, "k", -time.Second).Result()
		check(t, "EXPIRE negative", ok, err, true)
		n, err := rdb.Exists(ctx, "k").Result()
		check(t, "EXISTS after EXPIRE negative", n, err, 0)
		ok, err = rdb.Expire(ctx, "nope", time.Minute).Result()
		check(t, "EXPIRE missing", ok, err, false)

		rdb.Set(ctx, "g", "v", 0)
		s, err := rdb.GetEx(ctx, "g", time.Minute).Result()
		check(t, "GETEX EX", s, err, "v")
		d, err = rdb.TTL(ctx, "g").Result()
		check(t, "TTL after GETEX", d, err, time.Minute)
		s, err = rdb.Do(ctx, "GETEX", "g", "PERSIST").Text()
		check(t, "GETEX PERSIST", s, err, "v")
		d, err = rdb.TTL(ctx, "g").Result()
		check(t, "TTL after GETEX PERSIST", d, err, time.Duration(-1))
		s, err = rdb.Do(ctx, "GETEX", "g", "PXAT", "1").Text()
		check(t, "GETEX PXAT in the past", s, err, "v")
		if _, err := rdb.Get(ctx, "g").Result(); err != redis.Nil {
			t.Fatalf("key expired by GETEX still there: %v", err)
		}

		// Expiry really happens: the store's clock is the wall clock here.
		rdb.Set(ctx, "short", "v", 50*time.Millisecond)
		time.Sleep(60 * time.Millisecond)
		if _, err := rdb.Get(ctx, "short").Result(); err != redis.Nil {
			t.Fatalf("expired key still readable: %v", err)
		}
	})
}

func TestKeys(t *testing.T) {
	ctx := context.Background()
	eachProtocol(t, func(t *testing.T, srv *testServer, rdb *redis.Client) {
		rdb.MSet(ctx, "a", "1", "b", "2", "c", "3")
		n, err := rdb.Exists(ctx, "a", "b", "b", "nope").Result()
		check(t, "EXISTS", n, err, 3)
		n, err = rdb.Del(ctx, "a", "nope").Result()
		check(t, "DEL", n, err, 1)
		n, err = rdb.Unlink(ctx, "b").Result()
		check(t, "UNLINK", n, err, 1)
		s, err := rdb.Type(ctx, "c").Result()
		check(t, "TYPE", s, err, "string")
		s, err = rdb.Type(ctx, "a").Result()
		check(t, "TYPE missing", s, err, "none")

		rdb.Set(ctx, "r", "v", time.Hour)
		s, err = rdb.Rename(ctx, "r", "r2").Result()
		check(t, "RENAME", s, err, "OK")
		d, err := rdb.TTL(ctx, "r2").Result()
		check(t, "RENAME keeps the expiry", d, err, time.Hour)
		checkErr(t, "RENAME missing", rdb.Rename(ctx, "r", "r3").Err(), "ERR no such key")
		ok, err := rdb.RenameNX(ctx, "r2", "c").Result()
		check(t, "RENAMENX onto existing", ok, err, false)
		ok, err = rdb.RenameNX(ctx, "r2", "r3").Result()
		check(t, "RENAMENX", ok, err, true)
		n, err = rdb.Copy(ctx, "r3", "r4", 0, false).Result()
		check(t, "COPY", n, err, 1)
		n, err = rdb.Copy(ctx, "r3", "r4", 0, false).Result()
		check(t, "COPY onto existing", n, err, 0)
		n, err = rdb.Copy(ctx, "r3", "r4", 0, true).Result()
		check(t, "COPY REPLACE", n, err, 1)

		keys, err := rdb.Keys(ctx, "r*").Result()
		slices.Sort(keys)
		check(t, "KEYS", fmt.Sprint(keys), err, "[r3 r4]")
		key, err := rdb.RandomKey(ctx).Result()
		if err != nil || !slices.Contains([]string{"c", "r3", "r4"}, key) {
			t.Fatalf("RANDOMKEY = %q, %v", key, err)
		}
		n, err = rdb.Touch(ctx, "c", "nope", "r3").Result()
		check(t, "TOUCH", n, err, 2)
		n, err = rdb.DBSize(ctx).Result()
		check(t, "DBSIZE", n, err, 3)
		rdb.FlushDB(ctx)
		if _, err := rdb.RandomKey(ctx).Result(); err != redis.Nil {
			t.Fatalf("RANDOMKEY on an empty store: %v", err)
		}
	})
}

// TestScanSurvivesWrites checks SCAN's guarantee under concurrent writes:
// a key present for the whole walk is returned exactly once.
func TestScanSurvivesWrites(t *testing.T) {
	ctx := context.Background()
	srv := startServer(t, serverOptions{})
	rdb := newClient(t, srv.addr, 3)
	st := srv.store("default")
	const stable = 2000
	for i := range stable {
		st.Set("stable:"+strconv.Itoa(i), []byte("v"), store.Params{})
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			k := "churn:" + strconv.Itoa(i%500)
			st.Set(k, []byte("v"), store.Params{})
			st.Delete("churn:" + strconv.Itoa((i+250)%500))
		}
	}()
	seen := map[string]int{}
	var cursor uint64
	for {
		keys, next, err := rdb.Scan(ctx, cursor, "stable:*", 50).Result()
		if err != nil {
			t.Fatal(err)
		}
		for _, k := range keys {
			seen[k]++
		}
		if cursor = next; cursor == 0 {
			break
		}
	}
	close(stop)
	wg.Wait()
	if len(seen) != stable {
		t.Fatalf("SCAN returned %d stable keys, want %d", len(seen), stable)
	}
	for k, n := range seen {
		if n != 1 {
			t.Fatalf("SCAN returned %q %d times", k, n)
		}
	}
	// TYPE filters: there are only strings.
	keys, cursor, err := rdb.ScanType(ctx, 0, "", 10000, "hash").Result()
	if err != nil || len(keys) != 0 || cursor != 0 {
		t.Fatalf("SCAN TYPE hash = %v, %d, %v", keys, cursor, err)
	}
	if err := rdb.Do(ctx, "SCAN", "-1").Err(); err != nil {
		t.Fatalf("SCAN with a cursor past the end: %v", err)
	}
}

func TestTags(t *testing.T) {
	ctx := context.Background()
	eachProtocol(t, func(t *testing.T, srv *testServer, rdb *redis.Client) {
		st := srv.store("default")
		check(t, "SETTAG", rdb.Do(ctx, "SETTAG", "user:1", "John", "users", "profile").Val(), nil, any("OK"))
		rdb.Do(ctx, "SETTAG", "user:2", "Jane", "users", "profile")
		rdb.Do(ctx, "SETTAG", "product:1", "Widget", "products")
		s, err := rdb.Do(ctx, "SET", "page:1", "<html>", "EX", "100", "TAGS", "products", "pages").Text()
		check(t, "SET TAGS", s, err, "OK")
		if tags, _ := st.TagsOf("page:1"); fmt.Sprint(tags) != "[products pages]" {
			t.Fatalf("store has tags %q for page:1", tags)
		}
		keys, err := rdb.Do(ctx, "TAGKEYS", "users").StringSlice()
		slices.Sort(keys)
		check(t, "TAGKEYS", fmt.Sprint(keys), err, "[user:1 user:2]")
		n, err := rdb.Do(ctx, "TAGCOUNT", "products").Int()
		check(t, "TAGCOUNT", n, err, 2)
		info, err := rdb.Do(ctx, "TAGINFO", "products").Result()
		if err != nil {
			t.Fatal(err)
		}
		if got := fmt.Sprint(info); got != "map[count:2 tag:products]" && got != "[tag products count 2]" {
			t.Fatalf("TAGINFO = %v", got)
		}
		// TAGDEL takes the tag off, keeping the entries.
		n, err = rdb.Do(ctx, "TAGDEL", "profile").Int()
		check(t, "TAGDEL", n, err, 2)
		n, err = rdb.Do(ctx, "TAGCOUNT", "profile").Int()
		check(t, "TAGCOUNT after TAGDEL", n, err, 0)
		if tags, _ := st.TagsOf("user:1"); fmt.Sprint(tags) != "[users]" {
			t.Fatalf("user:1 has tags %q after TAGDEL profile", tags)
		}
		// INVALIDATE removes them, and a plain SET clears an entry's tags.
		n, err = rdb.Do(ctx, "INVALIDATE", "users", "nothing").Int()
		check(t, "INVALIDATE", n, err, 2)
		if _, err := rdb.Get(ctx, "user:1").Result(); err != redis.Nil {
			t.Fatalf("invalidated key readable: %v", err)
		}
		rdb.Set(ctx, "product:1", "Gadget", 0)
		n, err = rdb.Do(ctx, "INVALIDATE", "products").Int()
		check(t, "INVALIDATE after SET cleared a tag", n, err, 1)
		s, err = rdb.Get(ctx, "product:1").Result()
		check(t, "untagged key survives", s, err, "Gadget")
		checkErr(t, "SET TAGS without tags", rdb.Do(ctx, "SET", "k", "v", "TAGS").Err(), "ERR syntax error")
		checkErr(t, "SETTAG empty tag", rdb.Do(ctx, "SETTAG", "k", "v", "").Err(), "ERR empty tag")
	})
}

// TestCrossFront writes over RESP with tags and invalidates through the
// store API, as another front (the tab protocol, the HTTP purge) does.
func TestCrossFront(t *testing.T) {
	ctx := context.Background()
	srv := startServer(t, serverOptions{})
	rdb := newClient(t, srv.addr, 3)
	rdb.Do(ctx, "SET", "page:/p/42", "<html>", "TAGS", "product:42")
	rdb.Set(ctx, "other", "x", 0)
	if n := srv.store("default").InvalidateTags("product:42"); n != 1 {
		t.Fatalf("InvalidateTags removed %d entries", n)
	}
	if _, err := rdb.Get(ctx, "page:/p/42").Result(); err != redis.Nil {
		t.Fatalf("GET after another front's invalidation: %v", err)
	}
	// And the other way: what the other front stored, with flags, reads
	// over RESP, and an EXPIRE keeps its flags and tags.
	srv.store("default").Set("mc", []byte("from memcached"), store.Params{Flags: 7, Tags: []string{"t"}})
	s, err := rdb.Get(ctx, "mc").Result()
	check(t, "GET another front's entry", s, err, "from memcached")
	rdb.Expire(ctx, "mc", time.Hour)
	it, _ := srv.store("default").Get("mc")
	if it.Flags != 7 || fmt.Sprint(it.Tags) != "[t]" || it.Expires == 0 {
		t.Fatalf("after EXPIRE: %+v", it)
	}
	// A soft-purged entry stays stale through a change of its expiry; a
	// new value is fresh.
	srv.store("default").MarkStale("mc")
	rdb.Persist(ctx, "mc")
	if it, _ := srv.store("default").Get("mc"); !it.Stale || it.Expires != 0 {
		t.Fatalf("after PERSIST of a stale entry: %+v", it)
	}
	rdb.Append(ctx, "mc", "!")
	if it, _ := srv.store("default").Get("mc"); it.Stale {
		t.Fatalf("after APPEND to a stale entry: %+v", it)
	}
}

func TestPipeline(t *testing.T) {
	ctx := context.Background()
	eachProtocol(t, func(t *testing.T, srv *testServer, rdb *redis.Client) {
		rdb.Ping(ctx)
		reads, writes := srv.reads.Load(), srv.writes.Load()
		pipe := rdb.Pipeline()
		const n = 500
		for i := range n {
			pipe.Set(ctx, "p"+strconv.Itoa(i), i, 0)
			pipe.Incr(ctx, "counter")
		}
		cmds, err := pipe.Exec(ctx)
		if err != nil || len(cmds) != 2*n {
			t.Fatalf("pipeline: %d replies, %v", len(cmds), err)
		}
		if got := cmds[len(cmds)-1].(*redis.IntCmd).Val(); got != n {
			t.Fatalf("last INCR in the pipeline = %d", got)
		}
		// One flush per batch: the server never writes more often than it
		// reads, whatever the batches' sizes.
		if r, w := srv.reads.Load()-reads, srv.writes.Load()-writes; w > r || w >= 2*n {
			t.Fatalf("%d reads and %d writes for a pipeline of %d commands", r, w, 2*n)
		}
	})
}

func TestTransactions(t *testing.T) {
	ctx := context.Background()
	eachProtocol(t, func(t *testing.T, srv *testServer, rdb *redis.Client) {
		cmds, err := rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
			p.Set(ctx, "t", "1", 0)
			p.Incr(ctx, "t")
			p.Get(ctx, "t")
			return nil
		})
		if err != nil || cmds[2].(*redis.StringCmd).Val() != "2" {
			t.Fatalf("MULTI/EXEC: %v, %v", cmds, err)
		}
		// A command that fails when run does not stop the others.
		cmds, err = rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
			p.Set(ctx, "s", "abc", 0)
			p.Incr(ctx, "s")
			p.Set(ctx, "after", "yes", 0)
			return nil
		})
		if err == nil || cmds[1].Err() == nil || cmds[2].Err() != nil {
			t.Fatalf("EXEC with a failing command: %v", err)
		}
		// A queued command refused at queueing aborts all.
		checkErr(t, "EXECABORT", func() error {
			_, err := rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
				p.Set(ctx, "q", "1", 0)
				p.Do(ctx, "NOSUCHCOMMAND")
				return nil
			})
			return err
		}(), "EXECABORT Transaction discarded because of previous errors.")
		if n, _ := rdb.Exists(ctx, "q").Result(); n != 0 {
			t.Fatal("aborted transaction wrote q")
		}

		// WATCH: a write by another client, by another front (the store
		// API), or an EXPIRE aborts; a store.Touch (memcached's touch)
		// does not change the CAS unique and does not.
		other := newClient(t, srv.addr, 2)
		st := srv.store("default")
		for name, interfere := range map[string]func(){
			"other client":  func() { other.Set(ctx, "w", "x", 0) },
			"store write":   func() { st.Set("w", []byte("y"), store.Params{}) },
			"expire":        func() { other.Expire(ctx, "w", time.Hour) },
			"delete":        func() { st.Delete("w") },
			"another front": func() { st.InvalidateTags("wtag") },
		} {
			rdb.Do(ctx, "SETTAG", "w", "0", "wtag")
			err := rdb.Watch(ctx, func(tx *redis.Tx) error {
				v, _ := tx.Get(ctx, "w").Result()
				interfere()
				_, err := tx.TxPipelined(ctx, func(p redis.Pipeliner) error {
					p.Set(ctx, "w", v+"!", 0)
					return nil
				})
				return err
			}, "w")
			if !errors.Is(err, redis.TxFailedErr) {
				t.Errorf("WATCH with %s interfering: %v, want TxFailedErr", name, err)
			}
		}
		rdb.Set(ctx, "w", "0", 0)
		err = rdb.Watch(ctx, func(tx *redis.Tx) error {
			st.Touch("w", st.ExpiresIn(time.Hour))
			_, err := tx.TxPipelined(ctx, func(p redis.Pipeliner) error {
				p.Incr(ctx, "w")
				return nil
			})
			return err
		}, "w")
		if err != nil {
			t.Fatalf("WATCH with a store.Touch: %v", err)
		}
		// A missing key that stays missing does not abort; one created
		// meanwhile does.
		err = rdb.Watch(ctx, func(tx *redis.Tx) error {
			_, err := tx.TxPipelined(ctx, func(p redis.Pipeliner) error {
				p.Set(ctx, "fresh", "1", 0)
				return nil
			})
			return err
		}, "missing")
		if err != nil {
			t.Fatalf("WATCH on a missing key: %v", err)
		}
		err = rdb.Watch(ctx, func(tx *redis.Tx) error {
			other.Set(ctx, "missing2", "now", 0)
			_, err := tx.TxPipelined(ctx, func(p redis.Pipeliner) error {
				p.Set(ctx, "fresh", "2", 0)
				return nil
			})
			return err
		}, "missing2")
		if !errors.Is(err, redis.TxFailedErr) {
			t.Fatalf("WATCH on a key created meanwhile: %v", err)
		}
	})
}

// TestConcurrentClients runs clients side by side (under -race in CI):
// writes, counters, tag invalidations, transactions, pub/sub and the
// client registry at once. The counter ends exact.
func TestConcurrentClients(t *testing.T) {
	ctx := context.Background()
	srv := startServer(t, serverOptions{})
	sub := newClient(t, srv.addr, 3).PSubscribe(ctx, "*")
	defer sub.Close()
	sub.Receive(ctx)
	const workers, ops = 6, 200
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rdb := newClient(t, srv.addr, 2+w%2)
			for i := range ops {
				k := "k" + strconv.Itoa(i%20)
				var err error
				switch i % 8 {
				case 0:
					err = rdb.Do(ctx, "SET", k, "v", "TAGS", "t"+strconv.Itoa(i%3)).Err()
				case 1:
					err = rdb.Get(ctx, k).Err()
				case 2:
					err = rdb.Incr(ctx, "counter").Err()
				case 3:
					err = rdb.Do(ctx, "INVALIDATE", "t"+strconv.Itoa(i%3)).Err()
				case 4:
					err = rdb.Publish(ctx, "ch", "m").Err()
				case 5:
					err = rdb.ClientList(ctx).Err()
				case 6:
					err = rdb.Watch(ctx, func(tx *redis.Tx) error {
						_, err := tx.TxPipelined(ctx, func(p redis.Pipeliner) error {
							p.Incr(ctx, "txcounter")
							return nil
						})
						return err
					}, "txcounter")
				case 7:
					err = rdb.Del(ctx, k).Err()
				}
				if err != nil && err != redis.Nil && !errors.Is(err, redis.TxFailedErr) {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	rdb := newClient(t, srv.addr, 3)
	n, err := rdb.Get(ctx, "counter").Int()
	check(t, "counter", n, err, workers*ops/8)
}
