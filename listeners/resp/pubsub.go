package resp

import (
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tagcache/caddy-tagcache/store"
)

// broker routes published messages to subscribers. It is process wide, so
// subscriptions survive config reloads as the connections do.
type broker struct {
	mu       sync.RWMutex
	channels map[string]map[*subscriber]struct{}
	patterns map[string]map[*subscriber]struct{}
	// subscriptions counts channel and pattern subscriptions of every
	// client: with none, publishing (and the invalidation hooks) cost one
	// atomic load.
	subscriptions atomic.Int64
}

var hub = &broker{
	channels: make(map[string]map[*subscriber]struct{}),
	patterns: make(map[string]map[*subscriber]struct{}),
}

// maxPending is how many bytes of messages may wait for a subscriber that
// does not read fast enough; beyond it the connection is closed, as Redis's
// pubsub output buffer limit does.
const maxPending = 32 << 20

// subscriber is the pub/sub side of a connection. Publishers append
// encoded messages to pending, from any goroutine; the connection's
// delivery goroutine, or the connection itself before its next reply,
// writes them out. The delivery goroutine runs once the connection is
// served by Serve (see startDelivery): an event loop that answered the
// subscribing command hands the connection over first.
type subscriber struct {
	c *conn
	// channels and patterns are changed by the connection under hub.mu.
	channels, patterns map[string]struct{}
	resp3              atomic.Bool

	mu      sync.Mutex
	pending []byte
	spare   []byte // the other of the two buffers pending swaps with
	closed  bool
	wake    chan struct{}
	stop    chan struct{}
	stopped chan struct{}
}

// subscriberOf returns the connection's subscriber, made on first use.
func (c *conn) subscriberOf() *subscriber {
	if c.sub == nil {
		c.sub = &subscriber{
			c:        c,
			channels: make(map[string]struct{}),
			patterns: make(map[string]struct{}),
			wake:     make(chan struct{}, 1),
			stop:     make(chan struct{}),
			stopped:  make(chan struct{}),
		}
		c.sub.resp3.Store(c.w.resp3)
		c.startDelivery()
		c.acquireHooks()
	}
	return c.sub
}

// startDelivery starts the subscriber's delivery goroutine, if the
// connection has a subscriber and is served by Serve. It runs when both
// first hold (the subscriber is made once, and Serve is entered once), so
// the goroutine runs exactly when the connection is blocking.
func (c *conn) startDelivery() {
	if c.sub != nil && c.blocking {
		go c.sub.deliverLoop()
	}
}

// subscriptions returns the connection's channel and pattern count.
func (c *conn) subscriptions() int {
	if c.sub == nil {
		return 0
	}
	return len(c.sub.channels) + len(c.sub.patterns)
}

// deliver queues a message (pattern "" for a channel subscription).
func (s *subscriber) deliver(pattern, channel, msg string) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	if len(s.pending) > maxPending {
		s.closed = true
		s.mu.Unlock()
		s.c.s.Conn.Close() // a client that does not read its messages
		return
	}
	head := byte('*')
	if s.resp3.Load() {
		head = '>'
	}
	if pattern == "" {
		s.pending = appendPrefixed(s.pending, head, 3)
		s.pending = appendBulk(s.pending, "message")
	} else {
		s.pending = appendPrefixed(s.pending, head, 4)
		s.pending = appendBulk(s.pending, "pmessage")
		s.pending = appendBulk(s.pending, pattern)
	}
	s.pending = appendBulk(s.pending, channel)
	s.pending = appendBulk(s.pending, msg)
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// deliverLoop writes queued messages while the connection waits for its
// client's next command.
func (s *subscriber) deliverLoop() {
	defer close(s.stopped)
	for {
		select {
		case <-s.stop:
			return
		case <-s.wake:
		}
		s.c.mu.Lock()
		s.drain()
		err := s.c.s.W.Flush()
		s.c.mu.Unlock()
		if err != nil {
			s.c.s.Conn.Close()
			return
		}
	}
}

// drain writes the queued messages to the connection's writer. The caller
// holds c.mu, which guards spare. The messages are taken out under s.mu
// and written without it, so that publishers never wait for the client.
func (s *subscriber) drain() {
	s.mu.Lock()
	buf := s.pending
	s.pending = s.spare[:0]
	s.mu.Unlock()
	if len(buf) > 0 {
		s.c.w.write(buf)
	}
	s.spare = nil
	if cap(buf) <= keepArgBufferBytes {
		s.spare = buf
	}
}

// close stops delivery and waits for the delivery goroutine, so that
// nothing writes to the session after Serve returns.
func (s *subscriber) close() {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	if !s.c.blocking { // no delivery goroutine
		return
	}
	close(s.stop)
	select {
	case <-s.stopped:
	case <-time.After(100 * time.Millisecond):
		// A delivery blocked on a client that does not read gives up.
		// The connection is ending: closing it also ends a write that
		// the deadline cannot reach.
		s.c.s.Conn.SetWriteDeadline(time.Now())
		s.c.s.Conn.Close()
		<-s.stopped
	}
}

// publish sends msg to the subscribers of channel and of the patterns
// matching it, and returns how many deliveries it made.
func (b *broker) publish(channel, msg string) int {
	if b.subscriptions.Load() == 0 {
		return 0
	}
	b.mu.RLock()
	defer b.mu.RUnlock()
	n := 0
	for s := range b.channels[channel] {
		s.deliver("", channel, msg)
		n++
	}
	for pattern, subs := range b.patterns {
		if globMatch(pattern, channel, false) {
			for s := range subs {
				s.deliver(pattern, channel, msg)
				n++
			}
		}
	}
	return n
}

// subscribeReply writes a (un)subscription confirmation: a push in RESP3.
func (c *conn) subscribeReply(kind string, name []byte, isNull bool) {
	if c.w.resp3 {
		c.w.write(appendPrefixed(c.w.free(headerRoom), '>', 3))
	} else {
		c.w.array(3)
	}
	c.w.bulkString(kind)
	if isNull {
		c.w.null()
	} else {
		c.w.bulk(name)
	}
	c.w.integer(int64(c.subscriptions()))
}

// changeSubscription adds or removes name in the connection's set and the
// broker's table (patterns selects which).
func (c *conn) changeSubscription(name string, patterns, add bool) {
	if !add && c.sub == nil {
		return // nothing to leave, and no subscriber needed
	}
	s := c.subscriberOf()
	own, table := s.channels, hub.channels
	if patterns {
		own, table = s.patterns, hub.patterns
	}
	hub.mu.Lock()
	defer hub.mu.Unlock()
	_, had := own[name]
	switch {
	case add && !had:
		own[name] = struct{}{}
		subs := table[name]
		if subs == nil {
			subs = make(map[*subscriber]struct{})
			table[name] = subs
		}
		subs[s] = struct{}{}
		hub.subscriptions.Add(1)
	case !add && had:
		delete(own, name)
		delete(table[name], s)
		if len(table[name]) == 0 {
			delete(table, name)
		}
		hub.subscriptions.Add(-1)
	}
	c.client.subs.Store(int32(len(s.channels)))
	c.client.psubs.Store(int32(len(s.patterns)))
}

func (c *conn) subscribe(args [][]byte)  { c.subscribeGeneric(args, false) }
func (c *conn) psubscribe(args [][]byte) { c.subscribeGeneric(args, true) }

func (c *conn) subscribeGeneric(args [][]byte, patterns bool) {
	kind := "subscribe"
	if patterns {
		kind = "psubscribe"
	}
	for _, name := range args[1:] {
		c.changeSubscription(string(name), patterns, true)
		c.subscribeReply(kind, name, false)
	}
}

func (c *conn) unsubscribe(args [][]byte)  { c.unsubscribeGeneric(args, false) }
func (c *conn) punsubscribe(args [][]byte) { c.unsubscribeGeneric(args, true) }

// unsubscribeGeneric answers (P)UNSUBSCRIBE [name ...]; without names it
// leaves every channel (pattern), and with none to leave it still answers
// once.
func (c *conn) unsubscribeGeneric(args [][]byte, patterns bool) {
	kind := "unsubscribe"
	if patterns {
		kind = "punsubscribe"
	}
	names := args[1:]
	if len(names) == 0 {
		names = c.subscribedNames(patterns)
		if len(names) == 0 {
			c.subscribeReply(kind, nil, true)
			return
		}
	}
	for _, name := range names {
		c.changeSubscription(string(name), patterns, false)
		c.subscribeReply(kind, name, false)
	}
}

func (c *conn) subscribedNames(patterns bool) [][]byte {
	if c.sub == nil {
		return nil
	}
	set := c.sub.channels
	if patterns {
		set = c.sub.patterns
	}
	names := make([][]byte, 0, len(set))
	for name := range set {
		names = append(names, []byte(name))
	}
	return names
}

// unsubscribeAll leaves every channel and pattern without replies (RESET
// and the end of the connection).
func (c *conn) unsubscribeAll() {
	if c.sub == nil {
		return
	}
	for _, patterns := range []bool{false, true} {
		for _, name := range c.subscribedNames(patterns) {
			c.changeSubscription(string(name), patterns, false)
		}
	}
}

func (c *conn) publish(args [][]byte) {
	c.w.integer(int64(hub.publish(str(args[1]), str(args[2]))))
}

// pubsubChannels answers PUBSUB CHANNELS [pattern].
func (c *conn) pubsubChannels(args [][]byte) {
	pattern := ""
	if len(args) > 2 {
		pattern = string(args[2])
	}
	hub.mu.RLock()
	var names []string
	for name := range hub.channels {
		if pattern == "" || globMatch(pattern, name, false) {
			names = append(names, name)
		}
	}
	hub.mu.RUnlock()
	slices.Sort(names)
	c.w.stringArray(names)
}

// pubsubNumsub answers PUBSUB NUMSUB [channel ...] with channel, count
// pairs.
func (c *conn) pubsubNumsub(args [][]byte) {
	c.w.array(2 * (len(args) - 2))
	for _, name := range args[2:] {
		hub.mu.RLock()
		n := len(hub.channels[str(name)])
		hub.mu.RUnlock()
		c.w.bulk(name)
		c.w.integer(int64(n))
	}
}

func (c *conn) pubsubNumpat(args [][]byte) {
	hub.mu.RLock()
	n := len(hub.patterns)
	hub.mu.RUnlock()
	c.w.integer(int64(n))
}

func (c *conn) pubsubHelp(args [][]byte) {
	c.help("PUBSUB",
		"CHANNELS [<pattern>]", "    Return the currently active channels matching a <pattern> (default: '*').",
		"NUMPAT", "    Return number of subscriptions to patterns.",
		"NUMSUB [<channel> ...]", "    Return the number of subscribers for the specified channels, excluding",
		"    pattern subscriptions(default: no channels).",
	)
}

// Invalidation events. Every store reports its invalidations, whichever
// front made them (see store.OnInvalidate); while any RESP client is
// subscribed to anything, they are published on these channels, for store
// <name>:
//
//	__tagcache@<name>__:invalidate:tag  a tag passed to InvalidateTags (message: the tag)
//	__tagcache@<name>__:invalidate:key  a key deleted (message: the key)
//	__tagcache@<name>__:stale:tag       a tag soft-purged (message: the tag)
//	__tagcache@<name>__:stale:key       a key soft-purged (message: the key)
//	__tagcache@<name>__:flush           the store flushed (message: the store name)
func invalidationChannel(storeName, event string) string {
	return "__tagcache@" + storeName + "__:" + event
}

// storeHooks counts, per store, the connections that need its
// invalidations published; the store's hook is registered while the count
// is positive.
var storeHooks = struct {
	sync.Mutex
	m map[*store.Store]*storeHook
}{m: make(map[*store.Store]*storeHook)}

type storeHook struct {
	refs   int
	cancel func()
}

// acquireHooks makes the invalidations of every store of the connection's
// app published, from its first subscription until it ends.
func (c *conn) acquireHooks() {
	if c.hooked {
		return
	}
	c.hooked = true
	storeHooks.Lock()
	defer storeHooks.Unlock()
	for _, name := range c.s.App.StoreNames() {
		st, err := c.s.App.Store(name)
		if err != nil {
			continue
		}
		h := storeHooks.m[st]
		if h == nil {
			h = &storeHook{cancel: st.OnInvalidate(invalidationPublisher(name))}
			storeHooks.m[st] = h
		}
		h.refs++
		c.hooks = append(c.hooks, st)
	}
}

func (c *conn) releaseHooks() {
	storeHooks.Lock()
	defer storeHooks.Unlock()
	for _, st := range c.hooks {
		if h := storeHooks.m[st]; h != nil {
			if h.refs--; h.refs == 0 {
				h.cancel()
				delete(storeHooks.m, st)
			}
		}
	}
	c.hooks = nil
}

// invalidationPublisher returns the hook that publishes the named store's
// invalidations.
func invalidationPublisher(name string) func(store.Invalidation) {
	invTag, invKey := invalidationChannel(name, "invalidate:tag"), invalidationChannel(name, "invalidate:key")
	staleTag, staleKey := invalidationChannel(name, "stale:tag"), invalidationChannel(name, "stale:key")
	flush := invalidationChannel(name, "flush")
	return func(ev store.Invalidation) {
		if hub.subscriptions.Load() == 0 {
			return
		}
		switch ev.Kind {
		case store.TagsInvalidated, store.TagsStale:
			ch := invTag
			if ev.Kind == store.TagsStale {
				ch = staleTag
			}
			for _, t := range ev.Tags {
				hub.publish(ch, t)
			}
		case store.KeyDeleted:
			hub.publish(invKey, ev.Key)
		case store.KeyStale:
			hub.publish(staleKey, ev.Key)
		case store.Flushed:
			hub.publish(flush, name)
		}
	}
}
