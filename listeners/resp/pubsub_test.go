package resp

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tagcache/caddy-tagcache/store"
)

// receive waits for the next message on sub.
func receive(t *testing.T, sub *redis.PubSub) *redis.Message {
	t.Helper()
	select {
	case m := <-sub.Channel():
		return m
	case <-time.After(5 * time.Second):
		t.Fatal("no message")
		return nil
	}
}

func TestPubSub(t *testing.T) {
	ctx := context.Background()
	eachProtocol(t, func(t *testing.T, srv *testServer, rdb *redis.Client) {
		pub := newClient(t, srv.addr, 2)
		sub := rdb.Subscribe(ctx, "news")
		defer sub.Close()
		if _, err := sub.Receive(ctx); err != nil { // the confirmation
			t.Fatal(err)
		}
		if err := sub.PSubscribe(ctx, "sport.*"); err != nil {
			t.Fatal(err)
		}
		n, err := pub.Publish(ctx, "news", "hello").Result()
		check(t, "PUBLISH", n, err, 1)
		m := receive(t, sub)
		if m.Channel != "news" || m.Payload != "hello" || m.Pattern != "" {
			t.Fatalf("message %+v", m)
		}
		pub.Publish(ctx, "sport.tennis", "set point")
		m = receive(t, sub)
		if m.Channel != "sport.tennis" || m.Payload != "set point" || m.Pattern != "sport.*" {
			t.Fatalf("pattern message %+v", m)
		}
		n, err = pub.Publish(ctx, "nobody", "x").Result()
		check(t, "PUBLISH without subscribers", n, err, 0)
		chans, err := pub.PubSubChannels(ctx, "*").Result()
		check(t, "PUBSUB CHANNELS", fmt.Sprint(chans), err, "[news]")
		subs, err := pub.PubSubNumSub(ctx, "news", "nobody").Result()
		check(t, "PUBSUB NUMSUB", fmt.Sprint(subs), err, "map[news:1 nobody:0]")
		np, err := pub.PubSubNumPat(ctx).Result()
		check(t, "PUBSUB NUMPAT", np, err, 1)
		if err := sub.Unsubscribe(ctx, "news"); err != nil {
			t.Fatal(err)
		}
		if err := sub.PUnsubscribe(ctx); err != nil {
			t.Fatal(err)
		}
		// Wait until the server has processed the unsubscriptions.
		for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(5 * time.Millisecond) {
			if n, _ := pub.PubSubNumPat(ctx).Result(); n == 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("pattern subscription still there")
			}
		}
		n, err = pub.Publish(ctx, "news", "again").Result()
		check(t, "PUBLISH after UNSUBSCRIBE", n, err, 0)
	})
}

// TestInvalidationEvents checks that invalidations made through the store
// API, as every other front makes them, and over RESP are published on the
// documented channels.
func TestInvalidationEvents(t *testing.T) {
	ctx := context.Background()
	eachProtocol(t, func(t *testing.T, srv *testServer, rdb *redis.Client) {
		st := srv.store("default")
		sessions := srv.app.stores["sessions"]
		sub := rdb.PSubscribe(ctx, "__tagcache@*")
		defer sub.Close()
		if _, err := sub.Receive(ctx); err != nil {
			t.Fatal(err)
		}
		cli := newClient(t, srv.addr, 2)
		expect := func(what, channel, payload string) {
			t.Helper()
			m := receive(t, sub)
			if m.Channel != channel || m.Payload != payload {
				t.Fatalf("%s: message %q %q, want %q %q", what, m.Channel, m.Payload, channel, payload)
			}
		}
		st.Set("a", []byte("1"), store.Params{Tags: []string{"t1"}})
		st.Set("b", []byte("2"), store.Params{Tags: []string{"t2"}})
		st.InvalidateTags("t1", "t2")
		expect("InvalidateTags", "__tagcache@default__:invalidate:tag", "t1")
		expect("InvalidateTags", "__tagcache@default__:invalidate:tag", "t2")
		st.Set("c", []byte("3"), store.Params{})
		st.Delete("c")
		expect("Delete", "__tagcache@default__:invalidate:key", "c")
		cli.Set(ctx, "d", "4", 0)
		cli.Del(ctx, "d", "missing")
		expect("DEL", "__tagcache@default__:invalidate:key", "d")
		cli.Do(ctx, "SETTAG", "e", "5", "t3")
		cli.Do(ctx, "INVALIDATE", "t3")
		expect("INVALIDATE", "__tagcache@default__:invalidate:tag", "t3")
		st.Set("f", []byte("6"), store.Params{Tags: []string{"t4"}})
		st.MarkStale("f")
		expect("MarkStale", "__tagcache@default__:stale:key", "f")
		st.StaleTags("t4")
		expect("StaleTags", "__tagcache@default__:stale:tag", "t4")
		cli.FlushDB(ctx)
		expect("FLUSHDB", "__tagcache@default__:flush", "default")
		sessions.Set("s", []byte("1"), store.Params{})
		sessions.Delete("s")
		expect("other store", "__tagcache@sessions__:invalidate:key", "s")
		// Overwrites and expiry are not invalidations: the next message is
		// the one after them.
		st.Set("g", []byte("1"), store.Params{})
		st.Set("g", []byte("2"), store.Params{Expires: 1})
		cli.Set(ctx, "h", "1", 0)
		cli.GetDel(ctx, "h")
		expect("GETDEL", "__tagcache@default__:invalidate:key", "h")
	}, "sessions")
}

// TestSlowSubscriber: a subscriber that does not read is disconnected
// once 32 MiB of messages wait for it, as Redis's pubsub output buffer
// limit does; publishers are not held up.
func TestSlowSubscriber(t *testing.T) {
	ctx := context.Background()
	srv := startServer(t, serverOptions{})
	sub := dialRaw(t, srv.addr)
	sub.do("SUBSCRIBE", "firehose") // and never read again
	pub := newClient(t, srv.addr, 3)
	msg := strings.Repeat("m", 1_000_000)
	for i := 0; ; i++ {
		if i == 200 {
			t.Fatal("the subscriber is still there after 200 MB")
		}
		if err := pub.Publish(ctx, "firehose", msg).Err(); err != nil {
			t.Fatal(err)
		}
		if n := pub.PubSubNumSub(ctx, "firehose").Val()["firehose"]; n == 0 {
			break
		}
	}
	if err := pub.Ping(ctx).Err(); err != nil {
		t.Fatal(err)
	}
}

// TestInvalidationHooksFollowSubscribers: a store's invalidations are
// hooked while some connection has subscribed, once however many have,
// and unhooked when the last of them ends.
func TestInvalidationHooksFollowSubscribers(t *testing.T) {
	srv := startServer(t, serverOptions{stores: []string{"sessions"}})
	refs := func() (n int) {
		storeHooks.Lock()
		defer storeHooks.Unlock()
		for st, h := range storeHooks.m {
			if st == srv.store("default") || st == srv.store("sessions") {
				n += h.refs
			}
		}
		return n
	}
	waitRefs := func(want int) {
		t.Helper()
		for deadline := time.Now().Add(5 * time.Second); refs() != want; time.Sleep(5 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("hook references %d, want %d", refs(), want)
			}
		}
	}
	plain := dialRaw(t, srv.addr)
	plain.do("SET", "k", "v")
	waitRefs(0)
	a, b := dialRaw(t, srv.addr), dialRaw(t, srv.addr)
	a.do("SUBSCRIBE", "x")
	b.do("PSUBSCRIBE", "__tagcache@*")
	waitRefs(4) // two connections, two stores
	a.conn.Close()
	waitRefs(2)
	plain.do("DEL", "k")
	if got := b.reply(); !strings.Contains(got, "__tagcache@default__:invalidate:key") {
		t.Fatalf("message %q", got)
	}
	b.conn.Close()
	waitRefs(0)
}
