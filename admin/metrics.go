package admin

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tagcache/caddy-tagcache/internal/storepool"
	"github.com/tagcache/caddy-tagcache/listeners"
	"github.com/tagcache/caddy-tagcache/store"
)

// The tagcache metrics are in Caddy's Prometheus registry, named
// caddy_tagcache_*. They are read from the live stores and listeners when
// the registry is scraped, so the hot paths pay nothing for them.

// collectors are registered on every config load. Each reads its state at
// scrape time.
var collectors = []prometheus.Collector{newStoreCollector(), newListenerCollector()}

// RegisterMetrics registers the tagcache collectors in registry. Caddy
// makes a new registry on every config load, so the app calls it in every
// Provision; the collectors themselves are created once, and registering
// one that is already in the registry is not an error.
func RegisterMetrics(registry *prometheus.Registry) error {
	for _, c := range collectors {
		err := registry.Register(c)
		if _, ok := errors.AsType[prometheus.AlreadyRegisteredError](err); err != nil && !ok {
			return err
		}
	}
	return nil
}

// statMetric is one metric read from a stats struct T.
type statMetric[T any] struct {
	desc  *prometheus.Desc
	kind  prometheus.ValueType
	value func(*T) float64
}

// statsCollector exports the metrics of every T that each yields, labelled
// with the labels each gives it.
type statsCollector[T any] struct {
	metrics []statMetric[T]
	each    func(yield func(labels []string, st *T))
}

// newStatMetric returns a constructor of metrics with the given labels.
func newStatMetric[T any](labels []string) func(name, help string, kind prometheus.ValueType, value func(*T) float64) statMetric[T] {
	return func(name, help string, kind prometheus.ValueType, value func(*T) float64) statMetric[T] {
		return statMetric[T]{
			desc:  prometheus.NewDesc(prometheus.BuildFQName("caddy", "tagcache", name), help, labels, nil),
			kind:  kind,
			value: value,
		}
	}
}

// Describe sends the descriptions of every metric.
func (c *statsCollector[T]) Describe(ch chan<- *prometheus.Desc) {
	for _, m := range c.metrics {
		ch <- m.desc
	}
}

// Collect reads the current statistics.
func (c *statsCollector[T]) Collect(ch chan<- prometheus.Metric) {
	c.each(func(labels []string, st *T) {
		for _, m := range c.metrics {
			ch <- prometheus.MustNewConstMetric(m.desc, m.kind, m.value(st), labels...)
		}
	})
}

func newStoreCollector() *statsCollector[store.Stats] {
	metric := newStatMetric[store.Stats]([]string{"store"})
	const counter, gauge = prometheus.CounterValue, prometheus.GaugeValue
	return &statsCollector[store.Stats]{
		metrics: []statMetric[store.Stats]{
			metric("hits_total", "Reads that found a live entry.", counter, func(s *store.Stats) float64 { return float64(s.Hits) }),
			metric("misses_total", "Reads that found no live entry.", counter, func(s *store.Stats) float64 { return float64(s.Misses) }),
			metric("sets_total", "Writes that stored an entry.", counter, func(s *store.Stats) float64 { return float64(s.Sets) }),
			metric("deletes_total", "Entries removed by key.", counter, func(s *store.Stats) float64 { return float64(s.Deletes) }),
			metric("evictions_total", "Entries evicted to stay within max_memory.", counter, func(s *store.Stats) float64 { return float64(s.Evictions) }),
			metric("expirations_total", "Entries reclaimed after their TTL.", counter, func(s *store.Stats) float64 { return float64(s.Expirations) }),
			metric("invalidations_total", "Entries removed by tag invalidation.", counter, func(s *store.Stats) float64 { return float64(s.Invalidations) }),
			metric("flushes_total", "Flushes of the whole store.", counter, func(s *store.Stats) float64 { return float64(s.Flushes) }),
			metric("items", "Entries in the store, including expired ones not reclaimed yet.", gauge, func(s *store.Stats) float64 { return float64(s.Items) }),
			metric("bytes", "Memory counted against max_memory, in bytes.", gauge, func(s *store.Stats) float64 { return float64(s.Bytes) }),
			metric("max_memory_bytes", "The store's memory budget, in bytes.", gauge, func(s *store.Stats) float64 { return float64(s.MaxMemory) }),
			metric("tags", "Distinct tags in the store.", gauge, func(s *store.Stats) float64 { return float64(s.Tags) }),
			metric("snapshot_errors_total", "Snapshots that failed to be written.", counter, func(s *store.Stats) float64 { return float64(s.SnapshotErrors) }),
			metric("last_snapshot_timestamp_seconds", "When the last snapshot written began, as a Unix time; 0 if none.", gauge, func(s *store.Stats) float64 {
				return snapshotValue(s, func(l *store.SnapshotStats) float64 { return float64(l.Started) / 1e3 })
			}),
			metric("last_snapshot_duration_seconds", "How long the last snapshot written took.", gauge, func(s *store.Stats) float64 {
				return snapshotValue(s, func(l *store.SnapshotStats) float64 { return l.Duration.Seconds() })
			}),
			metric("last_snapshot_bytes", "The size of the last snapshot written.", gauge, func(s *store.Stats) float64 {
				return snapshotValue(s, func(l *store.SnapshotStats) float64 { return float64(l.Bytes) })
			}),
			metric("last_snapshot_entries", "The entries in the last snapshot written.", gauge, func(s *store.Stats) float64 {
				return snapshotValue(s, func(l *store.SnapshotStats) float64 { return float64(l.Entries) })
			}),
		},
		each: func(yield func([]string, *store.Stats)) {
			type named struct {
				name string
				st   *store.Store
			}
			var stores []named
			storepool.Range(func(name string, st *store.Store) bool {
				stores = append(stores, named{name, st})
				return true
			})
			// Stats takes shard locks: read them outside the pool's lock.
			for _, s := range stores {
				stats := s.st.Stats()
				yield([]string{s.name}, &stats)
			}
		},
	}
}

// snapshotValue reads a figure of the store's last snapshot, 0 if it has
// none.
func snapshotValue(s *store.Stats, value func(*store.SnapshotStats) float64) float64 {
	if s.Snapshot == nil {
		return 0
	}
	return value(s.Snapshot)
}

func newListenerCollector() *statsCollector[listeners.Stats] {
	metric := newStatMetric[listeners.Stats]([]string{"protocol", "address"})
	const counter, gauge = prometheus.CounterValue, prometheus.GaugeValue
	return &statsCollector[listeners.Stats]{
		metrics: []statMetric[listeners.Stats]{
			metric("listener_connections", "Open client connections of a protocol listener.", gauge, func(s *listeners.Stats) float64 { return float64(s.CurrentConnections) }),
			metric("listener_connections_total", "Connections a protocol listener accepted and served.", counter, func(s *listeners.Stats) float64 { return float64(s.TotalConnections) }),
			metric("listener_rejected_connections_total", "Connections refused at max_connections.", counter, func(s *listeners.Stats) float64 { return float64(s.RejectedConnections) }),
			metric("listener_commands_total", "Commands a protocol listener answered.", counter, func(s *listeners.Stats) float64 { return float64(s.Commands) }),
			metric("listener_command_errors_total", "Commands answered with an error.", counter, func(s *listeners.Stats) float64 { return float64(s.Errors) }),
			metric("listener_auth_failures_total", "Failed authentication attempts.", counter, func(s *listeners.Stats) float64 { return float64(s.AuthFailures) }),
			metric("listener_read_bytes_total", "Bytes read from clients.", counter, func(s *listeners.Stats) float64 { return float64(s.BytesRead) }),
			metric("listener_written_bytes_total", "Bytes written to clients.", counter, func(s *listeners.Stats) float64 { return float64(s.BytesWritten) }),
			metric("listener_event_loops", "Event loops taking new connections (0: a goroutine per connection).", gauge, func(s *listeners.Stats) float64 { return float64(s.EventLoops) }),
		},
		each: func(yield func([]string, *listeners.Stats)) {
			var all []listeners.Stats
			listeners.Range(func(st listeners.Stats) bool {
				all = append(all, st)
				return true
			})
			for i := range all {
				yield([]string{all[i].Protocol, all[i].Address}, &all[i])
			}
		},
	}
}

// Interface guards
var (
	_ prometheus.Collector = (*statsCollector[store.Stats])(nil)
	_ prometheus.Collector = (*statsCollector[listeners.Stats])(nil)
)
