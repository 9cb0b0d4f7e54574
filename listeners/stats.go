package listeners

import (
	"sync/atomic"

	"github.com/caddyserver/caddy/v2"
)

// Stats are the counters of one running listener at one moment.
type Stats struct {
	// Protocol is the listener's protocol name (tcp, memcached, ...).
	Protocol string `json:"protocol"`
	// Address is the listener's network address.
	Address string `json:"address"`
	// CurrentConnections is the number of open client connections.
	CurrentConnections int64 `json:"current_connections"`
	// TotalConnections counts the connections accepted and served.
	TotalConnections uint64 `json:"total_connections"`
	// RejectedConnections counts the connections refused because the
	// listener was at max_connections.
	RejectedConnections uint64 `json:"rejected_connections"`
	// Commands counts the commands answered.
	Commands uint64 `json:"commands"`
	// Errors counts the commands answered with an error.
	Errors uint64 `json:"errors"`
	// AuthFailures counts failed authentication attempts.
	AuthFailures uint64 `json:"auth_failures"`
	// BytesRead and BytesWritten count the bytes exchanged with clients,
	// after TLS decryption.
	BytesRead    uint64 `json:"bytes_read"`
	BytesWritten uint64 `json:"bytes_written"`
	// EventLoops is the number of event loops that take new connections;
	// 0 when each connection has a goroutine of its own.
	EventLoops int32 `json:"event_loops"`
}

// counters are the live Stats of a listener. They live in a package-level
// pool keyed by protocol and address, so a config reload that keeps a
// listener keeps counting where the old config left off.
type counters struct {
	currentConns                   atomic.Int64
	totalConns, rejectedConns      atomic.Uint64
	commands, errors, authFailures atomic.Uint64
	bytesRead, bytesWritten        atomic.Uint64
	eventLoops                     atomic.Int32
}

// statsEntry is the pooled value; the pool calls Destruct when the last
// running listener with its key stops.
type statsEntry struct {
	protocol, address string
	counters          counters
}

func (*statsEntry) Destruct() error { return nil }

// statsPool maps "protocol address" to a *statsEntry. A listener takes a
// reference in Start and drops it in Stop, so only running listeners are
// listed and `caddy validate` creates nothing.
var statsPool = caddy.NewUsagePool()

func statsKey(protocol, address string) string { return protocol + " " + address }

// acquireCounters returns the counters of the listener for protocol on
// address, creating them if no running listener has them.
func acquireCounters(protocol, address string) *counters {
	v, _, _ := statsPool.LoadOrNew(statsKey(protocol, address), func() (caddy.Destructor, error) {
		return &statsEntry{protocol: protocol, address: address}, nil
	})
	return &v.(*statsEntry).counters
}

// releaseCounters drops a reference taken by acquireCounters.
func releaseCounters(protocol, address string) {
	_, _ = statsPool.Delete(statsKey(protocol, address))
}

// Range calls fn with the stats of every running listener, in no particular
// order, until fn returns false. It is how the admin API and metrics read
// them.
func Range(fn func(Stats) bool) {
	statsPool.Range(func(_, value any) bool {
		e := value.(*statsEntry)
		return fn(e.counters.stats(e.protocol, e.address))
	})
}

func (c *counters) stats(protocol, address string) Stats {
	return Stats{
		Protocol:            protocol,
		Address:             address,
		CurrentConnections:  c.currentConns.Load(),
		TotalConnections:    c.totalConns.Load(),
		RejectedConnections: c.rejectedConns.Load(),
		Commands:            c.commands.Load(),
		Errors:              c.errors.Load(),
		AuthFailures:        c.authFailures.Load(),
		BytesRead:           c.bytesRead.Load(),
		BytesWritten:        c.bytesWritten.Load(),
		EventLoops:          c.eventLoops.Load(),
	}
}
