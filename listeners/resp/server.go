package resp

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/dustin/go-humanize"
	"go.uber.org/zap"

	"github.com/tagcache/caddy-tagcache/store"
)

// redisVersion is the Redis version whose commands and replies this
// listener follows; clients read it from HELLO and INFO.
const redisVersion = "7.0.0"

// started is when the process started serving, for INFO's uptime.
var started = time.Now()

func (c *conn) ping(args [][]byte) {
	if len(args) > 2 {
		c.w.errorReply("ERR wrong number of arguments for 'ping' command")
		return
	}
	if !c.w.resp3 && c.subscriptions() > 0 {
		// RESP2 subscribers get an array, as a message is one.
		c.w.array(2)
		c.w.bulkString("pong")
		if len(args) == 2 {
			c.w.bulk(args[1])
		} else {
			c.w.bulk(nil)
		}
		return
	}
	if len(args) == 2 {
		c.w.bulk(args[1])
		return
	}
	c.w.simple("PONG")
}

func (c *conn) echo(args [][]byte) { c.w.bulk(args[1]) }

func (c *conn) quitCmd(args [][]byte) {
	c.w.simple("OK")
	c.quit = true
}

// authCmd answers AUTH [username] password. The one-argument form
// authenticates the user named "default", as Redis does.
func (c *conn) authCmd(args [][]byte) {
	if len(args) > 3 {
		c.w.errorReply(errSyntax)
		return
	}
	user, pass := "default", string(args[1])
	if len(args) == 3 {
		user, pass = string(args[1]), string(args[2])
	} else if !c.s.App.Users().Enabled() {
		c.w.errorReply("ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?")
		return
	}
	if !c.authenticate(user, pass) {
		return
	}
	c.w.simple("OK")
}

// authenticate checks credentials and replies WRONGPASS if they are bad.
func (c *conn) authenticate(user, pass string) bool {
	if err := c.s.Authenticate(user, pass); err != nil {
		c.w.errorReply(errWrongPass)
		return false
	}
	c.client.mu.Lock()
	c.client.user = user
	c.client.mu.Unlock()
	return true
}

// hello answers HELLO [protover [AUTH username password] [SETNAME name]].
func (c *conn) hello(args [][]byte) {
	ver := int64(0)
	i := 1
	if len(args) >= 2 {
		v, ok := store.ParseCanonicalInt(args[1])
		switch {
		case !ok:
			c.w.errorReply("ERR Protocol version is not an integer or out of range")
			return
		case v < 2 || v > 3:
			c.w.errorReply("NOPROTO unsupported protocol version")
			return
		}
		ver, i = v, 2
	}
	var user, pass, name []byte
	hasAuth, hasName := false, false
	for ; i < len(args); i++ {
		more := len(args) - 1 - i
		switch opt := strings.ToUpper(string(args[i])); {
		case opt == "AUTH" && more >= 2:
			user, pass, hasAuth = args[i+1], args[i+2], true
			i += 2
		case opt == "SETNAME" && more >= 1:
			name, hasName = args[i+1], true
			i++
		default:
			c.w.errorReply("ERR Syntax error in HELLO option '" + cString(args[i], 1<<20) + "'")
			return
		}
	}
	if hasAuth && !c.authenticate(string(user), string(pass)) {
		return
	}
	if !c.s.Authenticated() {
		c.w.errorReply("NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time")
		return
	}
	if hasName {
		if !validClientName(name) {
			c.w.errorReply("ERR Client names cannot contain spaces, newlines or special characters.")
			return
		}
		c.client.mu.Lock()
		c.client.name = string(name)
		c.client.mu.Unlock()
	}
	if ver != 0 {
		c.setProtocol(ver == 3)
	}
	c.w.mapHeader(7)
	c.w.bulkString("server")
	c.w.bulkString("tagcache")
	c.w.bulkString("version")
	c.w.bulkString(redisVersion)
	c.w.bulkString("proto")
	c.w.integer(int64(c.protocol()))
	c.w.bulkString("id")
	c.w.integer(int64(c.client.id))
	c.w.bulkString("mode")
	c.w.bulkString("standalone")
	c.w.bulkString("role")
	c.w.bulkString("master")
	c.w.bulkString("modules")
	c.w.array(0)
}

func (c *conn) protocol() int {
	if c.w.resp3 {
		return 3
	}
	return 2
}

func (c *conn) setProtocol(resp3 bool) {
	c.w.resp3 = resp3
	if c.sub != nil {
		c.sub.resp3.Store(resp3)
	}
	c.client.resp.Store(int32(c.protocol()))
}

// storeByArg resolves SELECT's and COPY ... DB's argument: an index into
// the app's store names (default first, then the others in lexical
// order), or a store name, CacheStorm's named namespaces. It returns an
// error to reply on failure.
func (c *conn) storeByArg(arg []byte) (*store.Store, int, string) {
	names := c.s.App.StoreNames()
	i, isIndex := store.ParseCanonicalInt(arg)
	if !isIndex {
		i = -1
		for j, name := range names {
			if name == string(arg) {
				i = int64(j)
			}
		}
		if i < 0 {
			return nil, 0, "ERR no store named '" + cString(arg, 128) + "' (SELECT takes an index or a store name)"
		}
	}
	if i < 0 || i >= int64(len(names)) {
		return nil, 0, errDBOutOfRange
	}
	st, err := c.s.App.Store(names[i])
	if err != nil {
		return nil, 0, "ERR " + err.Error()
	}
	return st, int(i), ""
}

func (c *conn) selectCmd(args [][]byte) {
	st, _, msg := c.storeByArg(args[1])
	if msg != "" {
		c.w.errorReply(msg)
		return
	}
	c.setDB(st)
	c.w.simple("OK")
}

// namespaces lists the store names in SELECT's index order.
func (c *conn) namespaces(args [][]byte) {
	c.w.stringArray(c.s.App.StoreNames())
}

// reset answers RESET: the connection returns to its state at connect
// time (RESP2, the listener's store, no transaction, watch or
// subscription, not authenticated if auth is required). The name stays.
func (c *conn) reset(args [][]byte) {
	c.multi = nil
	c.client.multi.Store(-1)
	c.watched = nil
	c.unsubscribeAll()
	c.setProtocol(false)
	c.setDB(c.s.Store)
	c.s.Deauthenticate()
	c.client.mu.Lock()
	c.client.user = ""
	c.client.mu.Unlock()
	c.w.simple("RESET")
}

func (c *conn) dbsize(args [][]byte) {
	c.w.integer(c.db.Stats().Items)
}

// flushArgs checks FLUSHDB's and FLUSHALL's optional ASYNC|SYNC, which
// make no difference here: a flush swaps the maps out at once.
func (c *conn) flushArgs(args [][]byte) bool {
	if len(args) > 2 {
		c.w.errorReply(errSyntax)
		return false
	}
	if len(args) == 2 {
		if m := strings.ToUpper(string(args[1])); m != "ASYNC" && m != "SYNC" {
			c.w.errorReply(errSyntax)
			return false
		}
	}
	return true
}

func (c *conn) flushdb(args [][]byte) {
	if c.flushArgs(args) {
		c.db.Flush(0)
		c.w.simple("OK")
	}
}

// flushall flushes every store of the app.
func (c *conn) flushall(args [][]byte) {
	if !c.flushArgs(args) {
		return
	}
	for _, name := range c.s.App.StoreNames() {
		if st, err := c.s.App.Store(name); err == nil {
			st.Flush(0)
		}
	}
	c.w.simple("OK")
}

func (c *conn) timeCmd(args [][]byte) {
	now := time.Now()
	c.w.array(2)
	c.w.bulkInt(now.Unix())
	c.w.bulkInt(int64(now.Nanosecond() / 1000))
}

// save writes the selected store's snapshot, as configured in the app
// (its snapshot block); a store without one answers an error.
func (c *conn) save(args [][]byte) {
	if _, err := c.s.App.SaveSnapshot(c.dbName); err != nil {
		c.w.errorReply("ERR " + err.Error())
		return
	}
	c.w.simple("OK")
}

// bgsave starts the snapshot and answers at once; the outcome is logged,
// and LASTSAVE tells when one last succeeded.
func (c *conn) bgsave(args [][]byte) {
	if len(args) > 2 || (len(args) == 2 && !strings.EqualFold(string(args[1]), "SCHEDULE")) {
		c.w.errorReply(errSyntax)
		return
	}
	app, name, log := c.s.App, c.dbName, c.s.Logger
	go func() {
		if _, err := app.SaveSnapshot(name); err != nil {
			log.Error("BGSAVE failed", zap.String("store", name), zap.Error(err))
		}
	}()
	c.w.simple("Background saving started")
}

func (c *conn) lastsave(args [][]byte) {
	st, err, _ := c.db.LastSnapshot()
	if err != nil || st.Started == 0 {
		c.w.integer(started.Unix())
		return
	}
	c.w.integer((st.Started + st.Duration.Milliseconds()) / 1000)
}

// info answers INFO [section ...] with the sections server, clients,
// memory, stats and keyspace (all of them by default, or for "all",
// "default" and "everything").
func (c *conn) info(args [][]byte) {
	want := map[string]bool{}
	for _, a := range args[1:] {
		want[strings.ToLower(string(a))] = true
	}
	all := len(want) == 0 || want["all"] || want["default"] || want["everything"]
	var b strings.Builder
	section := func(name string, lines ...string) {
		if !all && !want[strings.ToLower(name)] {
			return
		}
		if b.Len() > 0 {
			b.WriteString("\r\n")
		}
		b.WriteString("# " + name + "\r\n")
		for _, l := range lines {
			b.WriteString(l + "\r\n")
		}
	}
	now := time.Now()
	uptime := int64(now.Sub(started) / time.Second)
	port := ""
	if c.client.laddr != "" {
		if i := strings.LastIndexByte(c.client.laddr, ':'); i >= 0 {
			port = c.client.laddr[i+1:]
		}
	}
	section("Server",
		"redis_version:"+redisVersion,
		"redis_mode:standalone",
		"os:"+runtime.GOOS+" "+runtime.GOARCH,
		"arch_bits:"+strconv.Itoa(strconv.IntSize),
		"go_version:"+runtime.Version(),
		"process_id:"+strconv.Itoa(os.Getpid()),
		"tcp_port:"+port,
		"uptime_in_seconds:"+strconv.FormatInt(uptime, 10),
		"uptime_in_days:"+strconv.FormatInt(uptime/86400, 10),
	)
	connected, subscribed, total, commands := clientStats()
	hub.mu.RLock()
	channels, patterns := len(hub.channels), len(hub.patterns)
	hub.mu.RUnlock()
	section("Clients",
		"connected_clients:"+strconv.Itoa(connected),
		"pubsub_clients:"+strconv.Itoa(subscribed),
	)
	st := c.db.Stats()
	cfg := c.db.Config()
	section("Memory",
		"used_memory:"+strconv.FormatInt(st.Bytes, 10),
		"used_memory_human:"+humanize.IBytes(uint64(st.Bytes)),
		"maxmemory:"+strconv.FormatInt(st.MaxMemory, 10),
		"maxmemory_human:"+humanize.IBytes(uint64(st.MaxMemory)),
		"maxmemory_policy:allkeys-lru",
		"tagcache_store:"+c.dbName,
		"tagcache_max_item_size:"+strconv.Itoa(cfg.MaxItemSize),
	)
	section("Stats",
		"total_connections_received:"+strconv.FormatUint(total, 10),
		"total_commands_processed:"+strconv.FormatUint(commands, 10),
		"keyspace_hits:"+strconv.FormatUint(st.Hits, 10),
		"keyspace_misses:"+strconv.FormatUint(st.Misses, 10),
		"expired_keys:"+strconv.FormatUint(st.Expirations, 10),
		"evicted_keys:"+strconv.FormatUint(st.Evictions, 10),
		"pubsub_channels:"+strconv.Itoa(channels),
		"pubsub_patterns:"+strconv.Itoa(patterns),
		"tagcache_sets:"+strconv.FormatUint(st.Sets, 10),
		"tagcache_deletes:"+strconv.FormatUint(st.Deletes, 10),
		"tagcache_invalidations:"+strconv.FormatUint(st.Invalidations, 10),
		"tagcache_flushes:"+strconv.FormatUint(st.Flushes, 10),
	)
	var keyspace []string
	for i, name := range c.s.App.StoreNames() {
		other, err := c.s.App.Store(name)
		if err != nil {
			continue
		}
		if ost := other.Stats(); ost.Items > 0 {
			keyspace = append(keyspace, fmt.Sprintf("db%d:keys=%d,tags=%d,store=%s", i, ost.Items, ost.Tags, name))
		}
	}
	section("Keyspace", keyspace...)
	c.w.verbatim(b.String())
}

// Configuration parameters: CONFIG GET reads those of the selected store,
// CONFIG SET changes the writable ones on the live store. A change lasts
// until the next config reload, which applies the Caddyfile's values
// again.
type configParam struct {
	name string
	get  func(cfg store.Config, c *conn) string
	// set parses a value into cfg; nil for a read-only parameter.
	set func(cfg *store.Config, v string) error
}

var errMemoryValue = errors.New("argument must be a memory value")

var configParams = []configParam{
	{"maxmemory", func(cfg store.Config, _ *conn) string { return strconv.FormatInt(cfg.MaxMemory, 10) },
		func(cfg *store.Config, v string) error {
			n, ok := parseMemory(v)
			if !ok {
				return errMemoryValue
			}
			if n == 0 {
				return errors.New("a store needs a memory budget; 0 (no limit) is not supported")
			}
			cfg.MaxMemory = n
			return nil
		}},
	{"maxmemory-policy", func(store.Config, *conn) string { return "allkeys-lru" }, nil},
	{"databases", func(_ store.Config, c *conn) string { return strconv.Itoa(len(c.s.App.StoreNames())) }, nil},
	{"save", func(store.Config, *conn) string { return "" }, nil},
	{"appendonly", func(store.Config, *conn) string { return "no" }, nil},
	{"proto-max-bulk-len", func(_ store.Config, c *conn) string { return strconv.Itoa(c.rd.maxBulk) }, nil},
	{"max-item-size", func(cfg store.Config, _ *conn) string { return strconv.Itoa(cfg.MaxItemSize) },
		func(cfg *store.Config, v string) error {
			n, ok := parseMemory(v)
			if !ok || n < 1 || n > store.MaxItemSizeLimit {
				return fmt.Errorf("argument must be a memory value between 1 and %d", store.MaxItemSizeLimit)
			}
			cfg.MaxItemSize = int(n)
			return nil
		}},
	{"max-key-length", func(cfg store.Config, _ *conn) string { return strconv.Itoa(cfg.MaxKeyLength) },
		func(cfg *store.Config, v string) error {
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 || n > store.MaxKeyLengthLimit {
				return fmt.Errorf("argument must be an integer between 1 and %d", store.MaxKeyLengthLimit)
			}
			cfg.MaxKeyLength = n
			return nil
		}},
	{"max-tags-per-key", func(cfg store.Config, _ *conn) string { return strconv.Itoa(cfg.MaxTagsPerKey) },
		func(cfg *store.Config, v string) error {
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 {
				return errors.New("argument must be a positive integer")
			}
			cfg.MaxTagsPerKey = n
			return nil
		}},
}

// parseMemory parses a Redis memory value: bytes, or a number with k, kb,
// m, mb, g or gb (k = 1000, kb = 1024), any case.
func parseMemory(s string) (int64, bool) {
	s = strings.ToLower(s)
	mul := int64(1)
	for _, u := range []struct {
		suffix string
		mul    int64
	}{{"kb", 1 << 10}, {"mb", 1 << 20}, {"gb", 1 << 30}, {"k", 1000}, {"m", 1000 * 1000}, {"g", 1000 * 1000 * 1000}, {"b", 1}} {
		if strings.HasSuffix(s, u.suffix) {
			s, mul = strings.TrimSuffix(s, u.suffix), u.mul
			break
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 || n > (1<<62)/mul {
		return 0, false
	}
	return n * mul, true
}

// configGet answers CONFIG GET pattern [pattern ...]; patterns are
// case-insensitive globs, and a map has each parameter once.
func (c *conn) configGet(args [][]byte) {
	cfg := c.db.Config()
	var matched []*configParam
	for i := range configParams {
		p := &configParams[i]
		for _, pat := range args[2:] {
			if globMatch(string(pat), p.name, true) {
				matched = append(matched, p)
				break
			}
		}
	}
	c.w.mapHeader(len(matched))
	for _, p := range matched {
		c.w.bulkString(p.name)
		c.w.bulkString(p.get(cfg, c))
	}
}

// configSet answers CONFIG SET parameter value [parameter value ...]: all
// values are checked before any is applied, and then applied to the
// selected store at once.
func (c *conn) configSet(args [][]byte) {
	if len(args)%2 != 0 {
		c.w.errorReply("ERR wrong number of arguments for 'config|set' command")
		return
	}
	cfg := c.db.Config()
	seen := map[string]bool{}
	for i := 2; i < len(args); i += 2 {
		name := strings.ToLower(string(args[i]))
		var p *configParam
		for j := range configParams {
			if configParams[j].name == name {
				p = &configParams[j]
			}
		}
		failed := func(why string) {
			c.w.errorReply("ERR CONFIG SET failed (possibly related to argument '" + name + "') - " + why)
		}
		switch {
		case p == nil:
			c.w.errorReply("ERR Unknown option or number of arguments for CONFIG SET - '" + cString(args[i], 128) + "'")
			return
		case seen[name]:
			failed("duplicate parameter")
			return
		case p.set == nil:
			failed("can't set immutable config")
			return
		}
		seen[name] = true
		if err := p.set(&cfg, string(args[i+1])); err != nil {
			failed(err.Error())
			return
		}
	}
	if err := c.db.Reconfigure(cfg); err != nil {
		c.w.errorReply("ERR CONFIG SET failed - " + err.Error())
		return
	}
	c.w.simple("OK")
}

func (c *conn) configHelp(args [][]byte) {
	c.help("CONFIG",
		"GET <pattern>", "    Return parameters matching the glob-like <pattern> and their values.",
		"SET <directive> <value>", "    Set the configuration <directive> to <value> until the next config reload.",
	)
}
