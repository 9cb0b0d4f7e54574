package admin

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tagcache/caddy-tagcache/internal/storepool"
	"github.com/tagcache/caddy-tagcache/store"
)

// The tagcache metrics are in Caddy's Prometheus registry, named
// caddy_tagcache_*. They are read from the live stores when the registry
// is scraped, so the cache's hot paths pay nothing for them.

// collectors are registered on every config load. Each reads its state at
// scrape time; a front with counters of its own (the protocol listeners'
// connections and commands) adds its collector here.
var collectors = []prometheus.Collector{newStoreCollector()}

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

// storeCollector exports the counters and gauges of every live store,
// labelled by store name.
type storeCollector struct {
	counters []storeMetric
	gauges   []storeMetric
}

// storeMetric is one metric read from store.Stats.
type storeMetric struct {
	desc  *prometheus.Desc
	value func(*store.Stats) float64
}

func newStoreCollector() *storeCollector {
	metric := func(name, help string, value func(*store.Stats) float64) storeMetric {
		return storeMetric{
			desc:  prometheus.NewDesc(prometheus.BuildFQName("caddy", "tagcache", name), help, []string{"store"}, nil),
			value: value,
		}
	}
	return &storeCollector{
		counters: []storeMetric{
			metric("hits_total", "Reads that found a live entry.", func(s *store.Stats) float64 { return float64(s.Hits) }),
			metric("misses_total", "Reads that found no live entry.", func(s *store.Stats) float64 { return float64(s.Misses) }),
			metric("sets_total", "Writes that stored an entry.", func(s *store.Stats) float64 { return float64(s.Sets) }),
			metric("deletes_total", "Entries removed by key.", func(s *store.Stats) float64 { return float64(s.Deletes) }),
			metric("evictions_total", "Entries evicted to stay within max_memory.", func(s *store.Stats) float64 { return float64(s.Evictions) }),
			metric("expirations_total", "Entries reclaimed after their TTL.", func(s *store.Stats) float64 { return float64(s.Expirations) }),
			metric("invalidations_total", "Entries removed by tag invalidation.", func(s *store.Stats) float64 { return float64(s.Invalidations) }),
			metric("flushes_total", "Flushes of the whole store.", func(s *store.Stats) float64 { return float64(s.Flushes) }),
		},
		gauges: []storeMetric{
			metric("items", "Entries in the store, including expired ones not reclaimed yet.", func(s *store.Stats) float64 { return float64(s.Items) }),
			metric("bytes", "Memory counted against max_memory, in bytes.", func(s *store.Stats) float64 { return float64(s.Bytes) }),
			metric("max_memory_bytes", "The store's memory budget, in bytes.", func(s *store.Stats) float64 { return float64(s.MaxMemory) }),
			metric("tags", "Distinct tags in the store.", func(s *store.Stats) float64 { return float64(s.Tags) }),
		},
	}
}

// Describe sends the descriptions of every store metric.
func (c *storeCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, m := range c.counters {
		ch <- m.desc
	}
	for _, m := range c.gauges {
		ch <- m.desc
	}
}

// Collect reads the statistics of every live store.
func (c *storeCollector) Collect(ch chan<- prometheus.Metric) {
	type named struct {
		name string
		st   *store.Store
	}
	var stores []named
	storepool.Range(func(name string, st *store.Store) bool {
		stores = append(stores, named{name, st})
		return true
	})
	for _, s := range stores {
		stats := s.st.Stats()
		for _, m := range c.counters {
			ch <- prometheus.MustNewConstMetric(m.desc, prometheus.CounterValue, m.value(&stats), s.name)
		}
		for _, m := range c.gauges {
			ch <- prometheus.MustNewConstMetric(m.desc, prometheus.GaugeValue, m.value(&stats), s.name)
		}
	}
}

// Interface guards
var _ prometheus.Collector = (*storeCollector)(nil)
