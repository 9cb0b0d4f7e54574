package tagcache

import (
	"errors"
	"fmt"
	"path/filepath"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/tagcache/caddy-tagcache/internal/storepool"
	"github.com/tagcache/caddy-tagcache/store"
)

// SnapshotConfig makes a store start warm: its entries are written to a
// snapshot file and loaded from it when the store is created (at process
// start, not on a config reload, which keeps the live store).
type SnapshotConfig struct {
	// Path is the snapshot file. Default: tagcache/<store name>.snap in
	// Caddy's data directory.
	Path string `json:"path,omitempty"`

	// Interval is how often a snapshot is written. Default: 0, no periodic
	// snapshots.
	Interval caddy.Duration `json:"interval,omitempty"`

	// OnShutdown writes a snapshot when Caddy exits (not on a config
	// reload). Default: false.
	OnShutdown bool `json:"on_shutdown,omitempty"`

	// Compression of the file: "none" or "zstd". Default: "none".
	Compression string `json:"compression,omitempty"`
}

// Validate checks the settings.
func (sc *SnapshotConfig) Validate() error {
	if _, err := sc.compression(); err != nil {
		return err
	}
	if sc.Interval < 0 {
		return fmt.Errorf("snapshot interval must not be negative")
	}
	return nil
}

func (sc *SnapshotConfig) compression() (int, error) {
	switch sc.Compression {
	case "", "none":
		return store.CompressNone, nil
	case "zstd":
		return store.CompressZstd, nil
	}
	return 0, fmt.Errorf("unknown snapshot compression %q (want none or zstd)", sc.Compression)
}

// target resolves the file and compression of the named store's snapshot.
func (sc *SnapshotConfig) target(name string) storepool.SnapshotTarget {
	path := sc.Path
	if path == "" {
		path = filepath.Join(caddy.AppDataDir(), "tagcache", name+".snap")
	}
	comp, _ := sc.compression() // validated in Provision
	return storepool.SnapshotTarget{Path: path, Compression: comp}
}

// startSnapshots loads the snapshots of the stores this config created and
// starts the periodic snapshots. A missing or damaged snapshot never stops
// Caddy from starting: the store starts empty and the log says why.
func (a *App) startSnapshots() {
	for _, name := range a.storeNames() {
		sc := a.Stores[name].Snapshot
		if sc == nil {
			storepool.SetSnapshot(name, nil)
			continue
		}
		tgt := sc.target(name)
		storepool.SetSnapshot(name, &tgt)
		log := a.logger.With(zap.String("store", name), zap.String("path", tgt.Path))
		if a.created[name] {
			st, err := a.stores[name].LoadFile(tgt.Path)
			switch {
			case errors.Is(err, store.ErrNoSnapshot):
				log.Info("no snapshot to load; starting empty")
			case err != nil:
				log.Error("snapshot not loaded; starting empty", zap.Error(err))
			default:
				log.Info("snapshot loaded",
					zap.Int64("entries", st.Entries),
					zap.Int64("expired", st.Expired),
					zap.Int64("over_budget", st.OverBudget),
					zap.Int64("invalid", st.Invalid),
					zap.Duration("duration", st.Duration))
				if st.OverBudget > 0 {
					log.Warn("snapshot larger than the memory budget: loaded what fits", zap.Int64("not_loaded", st.OverBudget))
				}
			}
		}
		if sc.Interval > 0 {
			a.snapshotStop = append(a.snapshotStop, a.snapshotEvery(name, time.Duration(sc.Interval), log))
		}
	}
}

// snapshotEvery writes the named store's snapshot every interval until the
// returned function is called.
func (a *App) snapshotEvery(name string, interval time.Duration, log *zap.Logger) func() {
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				if _, err := storepool.SaveSnapshot(name); err != nil {
					log.Error("periodic snapshot failed", zap.Error(err))
				}
			}
		}
	}()
	return func() { close(stop); <-done }
}

// stopSnapshots stops the periodic snapshots and, when Caddy is exiting,
// writes the snapshots configured with on_shutdown.
func (a *App) stopSnapshots() {
	for _, stop := range a.snapshotStop {
		stop()
	}
	a.snapshotStop = nil
	if !caddy.Exiting() {
		return
	}
	for _, name := range a.storeNames() {
		if sc := a.Stores[name].Snapshot; sc != nil && sc.OnShutdown {
			st, err := storepool.SaveSnapshot(name)
			if err != nil {
				a.logger.Error("snapshot on shutdown failed", zap.String("store", name), zap.Error(err))
				continue
			}
			a.logger.Info("snapshot written on shutdown", zap.String("store", name),
				zap.Int64("entries", st.Entries), zap.Int64("bytes", st.Bytes), zap.Duration("duration", st.Duration))
		}
	}
}

// SaveSnapshot writes the named store's snapshot now ("" is the default
// store); concurrent requests share one snapshot.
func (a *App) SaveSnapshot(name string) (store.SnapshotStats, error) {
	if name == "" {
		name = DefaultStore
	}
	if _, ok := a.stores[name]; !ok {
		return store.SnapshotStats{}, fmt.Errorf("tagcache: no store named %q is configured", name)
	}
	return storepool.SaveSnapshot(name)
}
