package handler

import (
	"errors"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// httpMetrics are the HTTP cache's counters. They are created once and
// registered in the metrics registry of every config load, so their
// values survive reloads.
var httpMetrics = newMetrics()

type metrics struct {
	hits, misses, stale, bypasses, stores prometheus.Counter
	purges, purgedEntries, revalidations  prometheus.Counter
	collectors                            []prometheus.Collector
	registerMu                            sync.Mutex
}

func newMetrics() *metrics {
	const ns, sub = "caddy", "tagcache_http"
	counter := func(name, help string) prometheus.Counter {
		return prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: name, Help: help})
	}
	m := &metrics{
		hits:          counter("hits_total", "Requests answered with a fresh cached response."),
		misses:        counter("misses_total", "Requests forwarded upstream because no usable response was cached (misses and revalidations)."),
		stale:         counter("stale_total", "Requests answered with a stale cached response (stale-while-revalidate, stale-if-error, max-stale)."),
		bypasses:      counter("bypasses_total", "Requests forwarded without looking at the cache (methods, upgrades, preconditions)."),
		stores:        counter("stores_total", "Responses stored."),
		purges:        counter("purges_total", "PURGE requests accepted."),
		purgedEntries: counter("purged_entries_total", "Entries removed or marked stale by PURGE requests."),
		revalidations: counter("background_revalidations_total", "Background revalidations started (stale-while-revalidate)."),
	}
	m.collectors = []prometheus.Collector{m.hits, m.misses, m.stale, m.bypasses, m.stores, m.purges, m.purgedEntries, m.revalidations}
	return m
}

// initMetrics registers the counters with a config's registry; a second
// handler in the same config finds them registered already.
func initMetrics(registry *prometheus.Registry) error {
	if registry == nil {
		return nil
	}
	httpMetrics.registerMu.Lock()
	defer httpMetrics.registerMu.Unlock()
	for _, c := range httpMetrics.collectors {
		if err := registry.Register(c); err != nil {
			var already prometheus.AlreadyRegisteredError
			if !errors.As(err, &already) {
				return err
			}
		}
	}
	return nil
}
