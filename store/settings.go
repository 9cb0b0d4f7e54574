package store

// Config returns the settings in effect, with defaults applied: what New or
// the last Reconfigure set. A front that changes one setting at run time
// passes it back to Reconfigure with the one field changed.
func (s *Store) Config() Config {
	lim := s.limits.Load()
	s.sweepMu.Lock()
	sweep := s.sweepInterval
	s.sweepMu.Unlock()
	return Config{
		MaxMemory:     s.maxMem.Load(),
		Shards:        len(s.shards),
		MaxKeyLength:  lim.maxKey,
		MaxItemSize:   lim.maxItem,
		MaxTagsPerKey: lim.maxTags,
		SweepInterval: sweep,
		Now:           s.clock,
	}
}
