package memcached

import (
	"errors"
	"net"
	"os"
	"runtime"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/tagcache/caddy-tagcache/auth"
	"github.com/tagcache/caddy-tagcache/store"
)

// processStart is when the process started, for the uptime stat.
var processStart = time.Now()

// counter is one command counter of a listener.
type counter struct{ atomic.Uint64 }

// count adds one to c if hit, else to miss.
func (c *counter) count(hit bool, miss *counter) {
	if hit {
		c.Add(1)
	} else {
		miss.Add(1)
	}
}

// counters are the per-listener numbers of memcached's stats. The cache's
// own numbers (items, bytes, hits, misses, evictions) come from the store,
// which every front shares.
type counters struct {
	currConns  atomic.Int64
	totalConns counter

	cmdGet, cmdSet, cmdFlush, cmdTouch, cmdMeta counter

	deleteHits, deleteMisses counter
	incrHits, incrMisses     counter
	decrHits, decrMisses     counter
	casHits, casMisses       counter
	casBadval                counter
	touchHits, touchMisses   counter
	storeTooLarge            counter
	authCmds, authErrors     counter
}

// countCAS counts the outcome of a compare-and-swap.
func (k *counters) countCAS(err error) {
	switch {
	case err == nil:
		k.casHits.Add(1)
	case errors.Is(err, store.ErrNotFound):
		k.casMisses.Add(1)
	case errors.Is(err, store.ErrCASMismatch):
		k.casBadval.Add(1)
	}
}

// stat is one line of a stats group.
type stat struct{ name, value string }

func uintStat(name string, n uint64) stat { return stat{name, strconv.FormatUint(n, 10)} }
func intStat(name string, n int64) stat   { return stat{name, strconv.FormatInt(n, 10)} }

// statsGroup returns the stats of a group: "" (general), "settings",
// "items", "slabs" or "sizes"; ok is false for an unknown group. The store
// has no slab classes: items and slabs show all of it as class 1, as
// monitoring tools that read those groups (memcached_exporter asks for
// stats, stats slabs and stats items on one connection) expect a list.
func (c *conn) statsGroup(group string) (stats []stat, ok bool) {
	switch group {
	case "":
		return c.generalStats(), true
	case "settings":
		return c.settingsStats(), true
	case "items":
		st := c.st.Stats()
		if st.Items == 0 {
			return nil, true // memcached lists only slab classes holding items
		}
		return []stat{
			intStat("items:1:number", st.Items),
			intStat("items:1:mem_requested", st.Bytes),
			uintStat("items:1:evicted", st.Evictions),
		}, true
	case "slabs":
		st := c.st.Stats()
		active := int64(0)
		if st.Items > 0 {
			active = 1
			stats = []stat{
				intStat("1:used_chunks", st.Items),
				intStat("1:mem_requested", st.Bytes),
				uintStat("1:get_hits", st.Hits),
				uintStat("1:cmd_set", st.Sets),
			}
		}
		return append(stats, intStat("active_slabs", active), intStat("total_malloced", st.Bytes)), true
	case "sizes":
		return []stat{{"sizes_status", "disabled"}}, true // memcached's answer unless started with -o track_sizes
	}
	return nil, false
}

func (c *conn) generalStats() []stat {
	now := time.Now()
	st := c.st.Stats()
	k := &c.m.shared.counters
	stats := []stat{
		intStat("pid", int64(os.Getpid())),
		intStat("uptime", int64(now.Sub(processStart)/time.Second)),
		intStat("time", now.Unix()),
		{"version", Version},
		intStat("pointer_size", strconv.IntSize),
	}
	if user, system, ok := rusage(); ok {
		stats = append(stats, stat{"rusage_user", user}, stat{"rusage_system", system})
	}
	return append(stats,
		intStat("curr_connections", k.currConns.Load()),
		uintStat("total_connections", k.totalConns.Load()),
		uintStat("cmd_get", k.cmdGet.Load()),
		uintStat("cmd_set", k.cmdSet.Load()),
		uintStat("cmd_flush", k.cmdFlush.Load()),
		uintStat("cmd_touch", k.cmdTouch.Load()),
		uintStat("cmd_meta", k.cmdMeta.Load()),
		uintStat("get_hits", st.Hits),
		uintStat("get_misses", st.Misses),
		uintStat("delete_misses", k.deleteMisses.Load()),
		uintStat("delete_hits", k.deleteHits.Load()),
		uintStat("incr_misses", k.incrMisses.Load()),
		uintStat("incr_hits", k.incrHits.Load()),
		uintStat("decr_misses", k.decrMisses.Load()),
		uintStat("decr_hits", k.decrHits.Load()),
		uintStat("cas_misses", k.casMisses.Load()),
		uintStat("cas_hits", k.casHits.Load()),
		uintStat("cas_badval", k.casBadval.Load()),
		uintStat("touch_hits", k.touchHits.Load()),
		uintStat("touch_misses", k.touchMisses.Load()),
		uintStat("store_too_large", k.storeTooLarge.Load()),
		uintStat("auth_cmds", k.authCmds.Load()),
		uintStat("auth_errors", k.authErrors.Load()),
		intStat("threads", int64(runtime.GOMAXPROCS(0))),
		intStat("limit_maxbytes", st.MaxMemory),
		intStat("bytes", st.Bytes),
		intStat("curr_items", st.Items),
		uintStat("total_items", st.Sets),
		uintStat("evictions", st.Evictions),
		// Not memcached's: the store's expiry, tag and invalidation numbers.
		uintStat("expirations", st.Expirations),
		uintStat("invalidations", st.Invalidations),
		intStat("curr_tags", st.Tags),
	)
}

func (c *conn) settingsStats() []stat {
	st := c.st.Stats()
	binding := c.m.Binding
	if binding == "" {
		binding = bindingAuto
	}
	stats := []stat{intStat("maxbytes", st.MaxMemory)}
	if a, ok := c.s.Conn.LocalAddr().(*net.TCPAddr); ok {
		stats = append(stats, intStat("tcpport", int64(a.Port)))
	}
	return append(stats,
		uintStat("verbosity", uint64(c.m.shared.verbosity.Load())),
		stat{"evictions", "on"},
		intStat("num_threads", int64(runtime.GOMAXPROCS(0))),
		stat{"cas_enabled", "yes"},
		stat{"auth_enabled_sasl", pick(c.s.AuthRequired(), "yes", "no")},
		stat{"auth_enabled_ascii", pick(c.s.AuthRequired(), "yes", "no")},
		intStat("item_size_max", int64(c.maxValueSize())),
		stat{"binding_protocol", binding},
		stat{"flush_enabled", pick(c.m.DisableFlush, "no", "yes")},
		intStat("key_max_length", int64(c.maxKeyLength())),
		intStat("shards", int64(st.Shards)),
	)
}

// textStats answers stats [group].
func (c *conn) textStats() {
	if !c.permit(auth.PermRead) {
		return
	}
	group := ""
	if len(c.toks) > 1 {
		group = string(c.toks[1])
	}
	if group == "cachedump" {
		c.cachedump()
		return
	}
	stats, ok := c.statsGroup(group)
	if !ok {
		c.reply(replyError)
		return
	}
	for _, s := range stats {
		c.w.WriteString("STAT ")
		c.w.WriteString(s.name)
		c.w.WriteByte(' ')
		c.w.WriteString(s.value)
		c.w.WriteString("\r\n")
	}
	c.w.WriteString("END\r\n")
}

// Bounds of stats cachedump, as memcached's: slab class ids below
// maxSlabClass, and about this much output.
const (
	maxSlabClass     = 64
	cachedumpMaxSize = 2 << 20
)

// cachedump answers stats cachedump <class> <limit> (libmemcached's
// memcdump walks every class with it): class 1, which is the whole store,
// lists up to limit keys (0: no limit) as "ITEM <key> [<bytes> b; <expiry
// Unix s, 0: none> s]"; the other classes are empty. Keys that are not
// one text token (written over another protocol) are left out.
func (c *conn) cachedump() {
	if len(c.toks) < 4 {
		c.reply("CLIENT_ERROR bad command line\r\n")
		return
	}
	class, okClass := parseUint32(c.toks[2])
	limit, okLimit := parseUint32(c.toks[3])
	switch {
	case !okClass || !okLimit:
		c.reply(replyBadFormat)
		return
	case class >= maxSlabClass:
		c.reply("CLIENT_ERROR Illegal slab id\r\n")
		return
	}
	if class == 1 {
		c.dumpKeys(int(limit))
	}
	c.w.WriteString("END\r\n")
}

// dumpKeys writes cachedump's ITEM lines for up to limit keys (0: no
// limit), until about cachedumpMaxSize bytes.
func (c *conn) dumpKeys(limit int) {
	listed, size, cursor := 0, 0, uint64(0)
	for {
		keys, next := c.st.Scan(cursor, 256, nil)
		for _, key := range keys {
			if !textToken(key) {
				continue
			}
			it, ok := c.st.Peek(key)
			if !ok {
				continue
			}
			c.out = append(c.out[:0], "ITEM "...)
			c.out = append(c.out, key...)
			c.out = append(c.out, " ["...)
			c.out = strconv.AppendInt(c.out, int64(len(it.Value)), 10)
			c.out = append(c.out, " b; "...)
			c.out = strconv.AppendInt(c.out, it.Expires/1000, 10)
			c.out = append(c.out, " s]\r\n"...)
			if size += len(c.out); size > cachedumpMaxSize {
				return
			}
			c.w.Write(c.out)
			if listed++; listed == limit {
				return
			}
		}
		if next == 0 {
			return
		}
		cursor = next
	}
}
