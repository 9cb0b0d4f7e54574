package store

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// fillForSnapshot stores entries that exercise every field.
func fillForSnapshot(t *testing.T, s *Store, now int64) map[string]Item {
	t.Helper()
	want := map[string]Item{}
	put := func(key string, value []byte, p Params) {
		if _, err := s.Set(key, value, p); err != nil {
			t.Fatal(err)
		}
		want[key] = Item{Value: value, Flags: p.Flags, Expires: p.Expires, Tags: p.Tags}
	}
	put("plain", []byte("v"), Params{})
	put("bin\x00\xff\r\nkey", []byte{0, 1, 2, 0xff, '\r', '\n'}, Params{Flags: 0xdeadbeef})
	put("empty", []byte{}, Params{Tags: []string{"e"}})
	put("ttl", []byte("soon"), Params{Expires: now + 60_000, Tags: []string{"a", "b"}})
	put("big", bytes.Repeat([]byte("x"), 3*chunkTarget+7), Params{Tags: []string{"big"}})
	for i := range 2000 {
		put(fmt.Sprintf("k%04d", i), []byte(strings.Repeat("v", i%300)), Params{Flags: uint32(i), Tags: []string{"t" + fmt.Sprint(i%7), "all"}})
	}
	s.Set("expired", []byte("x"), Params{Expires: now + 10})
	s.MarkStale("plain")
	it := want["plain"]
	it.Stale = true
	want["plain"] = it
	return want
}

func checkLoaded(t *testing.T, s *Store, want map[string]Item) {
	t.Helper()
	for k, w := range want {
		got, ok := s.Get(k)
		if !ok {
			t.Fatalf("%q not loaded", k)
		}
		if !bytes.Equal(got.Value, w.Value) || got.Flags != w.Flags || got.Expires != w.Expires || got.Stale != w.Stale || !sameTags(got.Tags, w.Tags) {
			t.Fatalf("%q = %+v, want %+v", k, got, w)
		}
	}
	if st := s.Stats(); st.Items != int64(len(want)) {
		t.Fatalf("%d items loaded, want %d", st.Items, len(want))
	}
	if got := s.TagCount("all"); got != 2000 {
		t.Fatalf("tag index not rebuilt: TagCount(all) = %d", got)
	}
	checkInvariants(t, s)
}

func TestSnapshotRoundTrip(t *testing.T) {
	for _, comp := range []int{CompressNone, CompressZstd} {
		t.Run(fmt.Sprint(comp), func(t *testing.T) {
			src, clock := newModelStore(t, Config{Shards: 8})
			want := fillForSnapshot(t, src, clock.Load())
			clock.Add(20) // "expired" is now expired and must not travel
			var buf bytes.Buffer
			st, err := src.WriteSnapshot(&buf, comp)
			if err != nil {
				t.Fatal(err)
			}
			if st.Entries != int64(len(want)) || st.Bytes != int64(buf.Len()) {
				t.Fatalf("write stats %+v for %d entries, %d bytes", st, len(want), buf.Len())
			}
			dst, dclock := newModelStore(t, Config{Shards: 4})
			dclock.Store(clock.Load())
			lst, err := dst.ReadSnapshot(&buf)
			if err != nil {
				t.Fatal(err)
			}
			if lst.Entries != int64(len(want)) {
				t.Fatalf("load stats %+v", lst)
			}
			checkLoaded(t, dst, want)
		})
	}
}

func TestSnapshotSkipsExpiredAtLoad(t *testing.T) {
	src, clock := newModelStore(t, Config{})
	now := clock.Load()
	src.Set("short", []byte("x"), Params{Expires: now + 1000})
	src.Set("long", []byte("x"), Params{Expires: now + 5000})
	var buf bytes.Buffer
	if _, err := src.WriteSnapshot(&buf, CompressNone); err != nil {
		t.Fatal(err)
	}
	dst, dclock := newModelStore(t, Config{})
	dclock.Store(now + 2000) // the restart took two seconds
	st, err := dst.ReadSnapshot(&buf)
	if err != nil || st.Entries != 1 || st.Expired != 1 {
		t.Fatalf("stats %+v, %v", st, err)
	}
	if it, ok := dst.Get("long"); !ok || it.Expires != now+5000 {
		t.Fatalf("long = %+v, %v: the absolute deadline must be kept", it, ok)
	}
}

func TestSnapshotIntoSmallerBudget(t *testing.T) {
	src, _ := newModelStore(t, Config{})
	for i := range 1000 {
		src.Set(fmt.Sprintf("k%04d", i), make([]byte, 1000), Params{})
	}
	var buf bytes.Buffer
	src.WriteSnapshot(&buf, CompressNone)
	dst, _ := newModelStore(t, Config{MaxMemory: 100 << 10})
	st, err := dst.ReadSnapshot(&buf)
	if err != nil {
		t.Fatal(err)
	}
	ds := dst.Stats()
	if st.OverBudget == 0 || st.Entries+st.OverBudget != 1000 || ds.Bytes > ds.MaxMemory || ds.Evictions != 0 || ds.Items != st.Entries {
		t.Fatalf("load stats %+v, store %+v: want what fits loaded, the rest counted, nothing evicted", st, ds)
	}
}

func TestSnapshotRejectsDamage(t *testing.T) {
	src, clock := newModelStore(t, Config{})
	fillForSnapshot(t, src, clock.Load())
	var buf bytes.Buffer
	src.WriteSnapshot(&buf, CompressNone)
	good := buf.Bytes()

	wrongVersion := slices.Clone(good)
	wrongVersion[6] = 9
	cases := map[string][]byte{
		"empty":         nil,
		"not a snap":    []byte("hello world, this is not a snapshot file"),
		"wrong version": wrongVersion,
		"truncated":     good[:len(good)/2],
		"no trailer":    good[:len(good)-20],
	}
	for _, off := range []int{headerSize + 9, len(good) / 3, len(good) - 30, len(good) - 2} {
		flipped := slices.Clone(good)
		flipped[off] ^= 0x10
		cases[fmt.Sprintf("bit flip at %d", off)] = flipped
	}
	for name, data := range cases {
		t.Run(name, func(t *testing.T) {
			dst, _ := newModelStore(t, Config{})
			if _, err := dst.ReadSnapshot(bytes.NewReader(data)); !errors.Is(err, ErrCorruptSnapshot) {
				t.Fatalf("err = %v, want ErrCorruptSnapshot", err)
			}
			checkInvariants(t, dst)
		})
	}
}

// TestSnapshotVersion1 reads a snapshot as builds before the sizing hints
// wrote it: version 1, no hints chunk.
func TestSnapshotVersion1(t *testing.T) {
	src, clock := newModelStore(t, Config{Shards: 8})
	want := fillForSnapshot(t, src, clock.Load())
	clock.Add(20)
	var buf bytes.Buffer
	if _, err := src.WriteSnapshot(&buf, CompressNone); err != nil {
		t.Fatal(err)
	}
	v2 := buf.Bytes()
	hints := 8 + int(binary.LittleEndian.Uint32(v2[headerSize:]))
	v1 := append(slices.Clone(v2[:headerSize]), v2[headerSize+hints:]...)
	binary.LittleEndian.PutUint16(v1[6:], 1)
	binary.LittleEndian.PutUint32(v1[12:], crc32.Checksum(v1[:12], castagnoli))

	dst, dclock := newModelStore(t, Config{Shards: 4})
	dclock.Store(clock.Load())
	if _, err := dst.ReadSnapshot(bytes.NewReader(v1)); err != nil {
		t.Fatal(err)
	}
	checkLoaded(t, dst, want)
}

func TestSaveAndLoadFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "sub", "default.snap")
	empty, _ := newModelStore(t, Config{})
	if _, err := empty.LoadFile(path); !errors.Is(err, ErrNoSnapshot) {
		t.Fatalf("missing file: %v", err)
	}
	src, clock := newModelStore(t, Config{})
	want := fillForSnapshot(t, src, clock.Load())
	clock.Add(20)
	st, err := src.SaveFile(path, CompressZstd)
	if err != nil {
		t.Fatal(err)
	}
	if last, lerr, n := src.LastSnapshot(); last.Entries != st.Entries || lerr != nil || n != 0 {
		t.Fatalf("LastSnapshot = %+v, %v, %d", last, lerr, n)
	}
	if tmps, _ := filepath.Glob(path + ".tmp-*"); len(tmps) != 0 {
		t.Fatalf("temporary files left: %v", tmps)
	}
	dst, dclock := newModelStore(t, Config{})
	dclock.Store(clock.Load())
	if _, err := dst.LoadFile(path); err != nil {
		t.Fatal(err)
	}
	checkLoaded(t, dst, want)

	// A corrupt file is moved aside, not deleted, and the store left empty.
	data, _ := os.ReadFile(path)
	data[len(data)/2] ^= 0xff
	os.WriteFile(path, data, 0o600)
	bad, _ := newModelStore(t, Config{})
	_, err = bad.LoadFile(path)
	if !errors.Is(err, ErrCorruptSnapshot) {
		t.Fatalf("corrupt file: %v", err)
	}
	if _, serr := os.Stat(path); !errors.Is(serr, os.ErrNotExist) {
		t.Fatal("corrupt snapshot still at its path")
	}
	if aside, _ := filepath.Glob(path + ".corrupt-*"); len(aside) != 1 {
		t.Fatalf("corrupt snapshot not moved aside: %v (%v)", aside, err)
	}
	if n := bad.Stats().Items; n != 0 {
		t.Fatalf("%d items left from a corrupt snapshot", n)
	}
}

func TestSaveFileCoalesces(t *testing.T) {
	s, _ := newModelStore(t, Config{})
	for i := range 20000 {
		s.Set(fmt.Sprintf("k%05d", i), make([]byte, 200), Params{})
	}
	path := filepath.Join(t.TempDir(), "s.snap")
	results := make(chan SnapshotStats, 8)
	for range 8 {
		go func() {
			st, err := s.SaveFile(path, CompressNone)
			if err != nil {
				t.Error(err)
			}
			results <- st
		}()
	}
	starts := map[int64]int{}
	for range 8 {
		st := <-results
		starts[st.Started]++
	}
	// Eight concurrent calls ran fewer than eight snapshots.
	if len(starts) == 8 {
		t.Fatalf("no call was coalesced: %v", starts)
	}
}

// TestSnapshotKilledMidWrite kills a process while it writes a snapshot
// over an existing one: the existing one must still load.
func TestSnapshotKilledMidWrite(t *testing.T) {
	if path := os.Getenv("TAGCACHE_SNAPSHOT_CHILD"); path != "" {
		s, _ := New(Config{MaxMemory: 1 << 30, SweepInterval: -1})
		for i := range 200_000 {
			s.Set(fmt.Sprintf("child%06d", i), make([]byte, 1000), Params{})
		}
		os.WriteFile(path+".ready", nil, 0o600)
		for {
			s.SaveFile(path, CompressNone) // until killed
		}
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "default.snap")
	src, clock := newModelStore(t, Config{})
	want := fillForSnapshot(t, src, clock.Load())
	clock.Add(20)
	if _, err := src.SaveFile(path, CompressNone); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestSnapshotKilledMidWrite$")
	cmd.Env = append(os.Environ(), "TAGCACHE_SNAPSHOT_CHILD="+path)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		if _, err := os.Stat(path + ".ready"); err == nil {
			break
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			t.Fatal("child never got ready")
		}
		time.Sleep(10 * time.Millisecond)
	}
	// Kill it while a temporary file is being written.
	partial := false
	for !partial && time.Now().Before(deadline) {
		if tmps, _ := filepath.Glob(path + ".tmp-*"); len(tmps) > 0 {
			if fi, err := os.Stat(tmps[0]); err == nil && fi.Size() > 0 {
				partial = true
				continue
			}
		}
		time.Sleep(time.Millisecond)
	}
	cmd.Process.Kill()
	cmd.Wait()
	if !partial {
		t.Fatal("never saw the child writing a snapshot")
	}
	// Whatever file is at path now (the first one, or a complete one the
	// child renamed before it died) must load.
	dst, dclock := newModelStore(t, Config{MaxMemory: 1 << 30})
	dclock.Store(clock.Load())
	st, err := dst.LoadFile(path)
	if err != nil {
		t.Fatalf("snapshot after a kill mid-write: %v", err)
	}
	if st.Entries == int64(len(want)) {
		checkLoaded(t, dst, want)
	} else if st.Entries != 200_000 {
		t.Fatalf("loaded %d entries: neither the old nor a complete new snapshot", st.Entries)
	}
}

func TestSnapshotStatsInStats(t *testing.T) {
	s, _ := newModelStore(t, Config{})
	if st := s.Stats(); st.Snapshot != nil || st.SnapshotErrors != 0 {
		t.Fatalf("before any snapshot: %+v", st)
	}
	s.Set("k", []byte("v"), Params{})
	dir := t.TempDir()
	if _, err := s.SaveFile(filepath.Join(dir, "ok.snap"), CompressNone); err != nil {
		t.Fatal(err)
	}
	// A directory where the file should go makes the save fail.
	bad := filepath.Join(dir, "isadir")
	os.Mkdir(bad, 0o700)
	if _, err := s.SaveFile(bad, CompressNone); err == nil {
		t.Fatal("saving over a directory succeeded")
	}
	st := s.Stats()
	if st.Snapshot == nil || st.Snapshot.Entries != 1 || st.Snapshot.Bytes == 0 || st.SnapshotErrors != 1 {
		t.Fatalf("stats after one good and one failed snapshot: %+v, snapshot %+v", st, st.Snapshot)
	}
}

// TestSnapshotHintsOfExpiredTag loads a snapshot whose large tag's entries
// all expired meanwhile: the set sized from the hints must not stay behind.
func TestSnapshotHintsOfExpiredTag(t *testing.T) {
	src, clock := newModelStore(t, Config{Shards: 4})
	now := clock.Load()
	for i := range 2 * hintedTagSize {
		src.Set(fmt.Sprintf("k%d", i), []byte("v"), Params{Expires: now + 1000, Tags: []string{"big"}})
	}
	src.Set("kept", []byte("v"), Params{Tags: []string{"small"}})
	var buf bytes.Buffer
	if _, err := src.WriteSnapshot(&buf, CompressNone); err != nil {
		t.Fatal(err)
	}
	dst, dclock := newModelStore(t, Config{Shards: 4})
	dclock.Store(now + 2000)
	st, err := dst.ReadSnapshot(&buf)
	if err != nil || st.Entries != 1 || st.Expired != int64(2*hintedTagSize) {
		t.Fatalf("load: %+v, %v", st, err)
	}
	if got := dst.Stats(); got.Tags != 1 || got.Items != 1 {
		t.Fatalf("stats after load: %+v; want only the tag small", got)
	}
	checkInvariants(t, dst)
}
