package store

import (
	"testing"
	"time"
)

func TestConfigReportsSettingsInEffect(t *testing.T) {
	s, _ := openManual(t, Config{MaxMemory: 1 << 20, Shards: 4, MaxKeyLength: 100})
	got := s.Config()
	if got.MaxMemory != 1<<20 || got.Shards != 4 || got.MaxKeyLength != 100 ||
		got.MaxItemSize != DefaultMaxItemSize || got.MaxTagsPerKey != DefaultMaxTagsPerKey ||
		got.SweepInterval != -1 || got.Now == nil {
		t.Fatalf("Config() = %+v", got)
	}
	// Changing one field through Reconfigure keeps the others.
	got.MaxMemory = 2 << 20
	got.SweepInterval = 50 * time.Millisecond
	if err := s.Reconfigure(got); err != nil {
		t.Fatal(err)
	}
	after := s.Config()
	if after.MaxMemory != 2<<20 || after.MaxKeyLength != 100 || after.SweepInterval != 50*time.Millisecond {
		t.Fatalf("after Reconfigure: %+v", after)
	}
	s.Reconfigure(Config{SweepInterval: -1}) // zero fields take defaults
	if after := s.Config(); after.MaxKeyLength != DefaultMaxKeyLength || after.MaxMemory != DefaultMaxMemory {
		t.Fatalf("after Reconfigure with defaults: %+v", after)
	}
}
