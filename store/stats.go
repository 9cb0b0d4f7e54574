package store

// Stats are a store's counters and gauges.
type Stats struct {
	Hits          uint64 `json:"hits"`
	Misses        uint64 `json:"misses"`
	Sets          uint64 `json:"sets"`
	Deletes       uint64 `json:"deletes"`
	Evictions     uint64 `json:"evictions"`
	Expirations   uint64 `json:"expirations"`
	Invalidations uint64 `json:"invalidations"`
	Flushes       uint64 `json:"flushes"`
	Items         int64  `json:"items"`
	Bytes         int64  `json:"bytes"`
	Tags          int64  `json:"tags"`
	MaxMemory     int64  `json:"max_memory"`
	Shards        int    `json:"shards"`
	// Snapshot is the last snapshot SaveFile wrote, nil if none yet;
	// SnapshotErrors counts the ones that failed.
	Snapshot       *SnapshotStats `json:"snapshot,omitempty"`
	SnapshotErrors uint64         `json:"snapshot_errors"`
}

// Stats returns the current counters. Items may include entries that
// expired and were not reclaimed yet, as memcached's curr_items does.
func (s *Store) Stats() Stats {
	s.checkFlush()
	st := Stats{
		Invalidations: s.invalidations.Load(),
		Flushes:       s.flushes.Load(),
		Bytes:         s.used.Load(),
		MaxMemory:     s.maxMem.Load(),
		Shards:        len(s.shards),
	}
	if last, _, errs := s.LastSnapshot(); errs > 0 || last.Started != 0 {
		st.SnapshotErrors = errs
		if last.Started != 0 {
			st.Snapshot = &last
		}
	}
	for i := range s.shards {
		sh := &s.shards[i]
		st.Hits += sh.hits.Load()
		st.Misses += sh.misses.Load()
		st.Sets += sh.sets.Load()
		st.Deletes += sh.deletes.Load()
		st.Evictions += sh.evictions.Load()
		st.Expirations += sh.expirations.Load()
		sh.mu.RLock()
		st.Items += int64(len(sh.m))
		sh.mu.RUnlock()
	}
	for i := range s.tagShards {
		ts := &s.tagShards[i]
		ts.mu.RLock()
		st.Tags += int64(len(ts.m))
		ts.mu.RUnlock()
	}
	return st
}
