package store

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/klauspost/compress/zstd"
)

// Snapshot format, version 2. A 16-byte header: the magic "TCSNAP", the
// version (uint16), the compression (0 none, 1 zstd), 3 reserved bytes and
// the CRC-32C of those 12 bytes. Then, compressed as a whole if so, a run of
// chunks: length (uint32), CRC-32C of the payload (uint32), payload. The
// first chunk holds sizing hints (version 1, written before the hints, has
// none and is read too): the number of entries and of the keys of
// each large tag when the snapshot began, so that loading can size its maps
// once instead of growing them. The others hold whole records: key, value,
// flags, absolute expiry (Unix ms), state (bit 0: stale) and tags, lengths
// as uvarints. A chunk of length 0 ends the file; it is followed by the
// number of records (uint64) and its CRC-32C. Integers are little-endian.
const (
	snapshotMagic   = "TCSNAP"
	snapshotVersion = 2
	headerSize      = 16
	chunkTarget     = 64 << 10
	maxChunk        = MaxItemSizeLimit + MaxKeyLengthLimit + 1<<20
	// hintedTagSize is the fewest keys a tag needs to be in the hints:
	// smaller sets grow cheaply.
	hintedTagSize = 64
)

// Compression of a snapshot's body.
const (
	CompressNone = 0
	CompressZstd = 1
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// ErrCorruptSnapshot is returned for a snapshot that is truncated, fails a
// checksum or is otherwise malformed.
var ErrCorruptSnapshot = errors.New("corrupt snapshot")

// SnapshotStats describe a written or loaded snapshot.
type SnapshotStats struct {
	// Entries written, or loaded.
	Entries int64 `json:"entries"`
	// Bytes of the snapshot file or stream.
	Bytes int64 `json:"bytes"`
	// Expired entries skipped when loading.
	Expired int64 `json:"expired,omitempty"`
	// Entries not loaded because the memory budget was full, or because
	// they break this store's key, value or tag limits.
	OverBudget int64 `json:"over_budget,omitempty"`
	Invalid    int64 `json:"invalid,omitempty"`
	// Started is when the snapshot began (Unix ms); Duration how long it
	// took.
	Started  int64         `json:"started"`
	Duration time.Duration `json:"duration_ns"`
}

// snapshotRecord is one entry's view taken under its shard's read lock.
// Values and tags are immutable in the store, so holding them is enough:
// nothing is copied.
type snapshotRecord struct {
	key     string
	value   []byte
	flags   uint32
	expires int64
	stale   bool
	tags    []string
}

// WriteSnapshot writes every live entry to w, shard by shard: a shard is
// read-locked only while its entries' references are collected, so reads
// and writes go on during a snapshot.
func (s *Store) WriteSnapshot(w io.Writer, compression int) (SnapshotStats, error) {
	start := time.Now()
	st := SnapshotStats{Started: start.UnixMilli()}
	cw := &countingWriter{w: w}
	var header [headerSize]byte
	copy(header[:], snapshotMagic)
	binary.LittleEndian.PutUint16(header[6:], snapshotVersion)
	header[8] = byte(compression)
	binary.LittleEndian.PutUint32(header[12:], crc32.Checksum(header[:12], castagnoli))
	if _, err := cw.Write(header[:]); err != nil {
		return st, err
	}
	var body io.Writer = cw
	var zw *zstd.Encoder
	switch compression {
	case CompressNone:
	case CompressZstd:
		var err error
		if zw, err = zstd.NewWriter(cw, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderConcurrency(1)); err != nil {
			return st, err
		}
		body = zw
	default:
		return st, fmt.Errorf("unknown snapshot compression %d", compression)
	}
	cwr := chunkWriter{w: body}
	cwr.buf = s.appendHints(cwr.buf)
	if err := cwr.flush(); err != nil {
		return st, err
	}
	var recs []snapshotRecord
	for i := range s.shards {
		recs = s.collect(&s.shards[i], recs[:0])
		for j := range recs {
			if err := cwr.add(&recs[j]); err != nil {
				return st, err
			}
			st.Entries++
		}
		clear(recs) // let collected values go as soon as they are written
	}
	if err := cwr.finish(uint64(st.Entries)); err != nil {
		return st, err
	}
	if zw != nil {
		if err := zw.Close(); err != nil {
			return st, err
		}
	}
	st.Bytes = cw.n
	st.Duration = time.Since(start)
	return st, nil
}

// appendHints encodes the sizing hints: the entry count, then the large
// tags with their key counts.
func (s *Store) appendHints(b []byte) []byte {
	b = binary.AppendUvarint(b, uint64(s.Stats().Items))
	var large []TagInfo
	for _, t := range s.ListTags(0) {
		if t.Count >= hintedTagSize {
			large = append(large, t)
		}
	}
	b = binary.AppendUvarint(b, uint64(len(large)))
	for _, t := range large {
		b = binary.AppendUvarint(b, uint64(len(t.Tag)))
		b = append(b, t.Tag...)
		b = binary.AppendUvarint(b, uint64(t.Count))
	}
	return b
}

// useHints sizes an empty store's maps for the snapshot about to load.
func (s *Store) useHints(p []byte) error {
	entries, k := binary.Uvarint(p)
	if k <= 0 {
		return errBadHints
	}
	p = p[k:]
	ntags, k := binary.Uvarint(p)
	if k <= 0 || ntags > uint64(len(p)) {
		return errBadHints
	}
	p = p[k:]
	tags := make(map[string]int, ntags)
	for range ntags {
		n, k := binary.Uvarint(p)
		if k <= 0 || n > uint64(len(p)-k) {
			return errBadHints
		}
		tag := string(p[k : k+int(n)])
		p = p[k+int(n):]
		count, k := binary.Uvarint(p)
		if k <= 0 {
			return errBadHints
		}
		p = p[k:]
		tags[tag] = int(min(count, 1<<24))
	}
	if len(p) != 0 {
		return errBadHints
	}
	perShard := int(min(entries, 1<<30) / uint64(len(s.shards)))
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		if len(sh.m) == 0 && perShard > 0 {
			sh.m = make(map[string]*entry, perShard+perShard/8)
			sh.ring = make([]*entry, 0, perShard+perShard/8)
		}
		sh.mu.Unlock()
	}
	for tag, n := range tags {
		ts := s.tagShardFor(tag)
		ts.mu.Lock()
		if ts.m[tag] == nil {
			set := &tagSet{name: tag, keys: make(map[string]struct{}, n)}
			ts.m[set.name] = set
			s.used.Add(tagSetOverhead + int64(len(tag)))
		}
		ts.mu.Unlock()
	}
	return nil
}

var errBadHints = fmt.Errorf("%w: malformed sizing hints", ErrCorruptSnapshot)

// dropEmptyTagSets removes the tag sets that have no keys. Only useHints
// makes such sets: a set that loses its last key is removed at once.
func (s *Store) dropEmptyTagSets() {
	for i := range s.tagShards {
		ts := &s.tagShards[i]
		ts.mu.Lock()
		for name, set := range ts.m {
			if set.len() == 0 {
				delete(ts.m, name)
				s.used.Add(-(tagSetOverhead + int64(len(name))))
			}
		}
		ts.mu.Unlock()
	}
}

func (s *Store) collect(sh *shard, recs []snapshotRecord) []snapshotRecord {
	now := s.now()
	sh.mu.RLock()
	defer sh.mu.RUnlock()
	for k, e := range sh.m {
		if e.expired(now) {
			continue
		}
		recs = append(recs, snapshotRecord{key: k, value: e.value(), flags: e.flags, expires: e.expires, stale: e.stale(), tags: e.tags()})
	}
	return recs
}

type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// chunkWriter packs records into checksummed chunks. A record bigger than a
// chunk gets a chunk of its own, and its value is written straight from the
// store rather than copied into the chunk buffer.
type chunkWriter struct {
	w   io.Writer
	buf []byte
	// head and tail are scratch space for a record's encoding around its
	// value, reused so that a record costs no allocation.
	head, tail []byte
}

func (c *chunkWriter) add(r *snapshotRecord) error {
	c.head = appendRecordHead(c.head[:0], r)
	c.tail = appendRecordTail(c.tail[:0], r)
	head, tail := c.head, c.tail
	size := len(head) + len(r.value) + len(tail)
	if len(c.buf)+size <= chunkTarget {
		c.buf = append(c.buf, head...)
		c.buf = append(c.buf, r.value...)
		c.buf = append(c.buf, tail...)
		return nil
	}
	if err := c.flush(); err != nil {
		return err
	}
	if size <= chunkTarget {
		c.buf = append(append(append(c.buf, head...), r.value...), tail...)
		return nil
	}
	crc := crc32.Update(crc32.Update(crc32.Checksum(head, castagnoli), castagnoli, r.value), castagnoli, tail)
	var hdr [8]byte
	binary.LittleEndian.PutUint32(hdr[:], uint32(size))
	binary.LittleEndian.PutUint32(hdr[4:], crc)
	for _, part := range [][]byte{hdr[:], head, r.value, tail} {
		if _, err := c.w.Write(part); err != nil {
			return err
		}
	}
	return nil
}

func (c *chunkWriter) flush() error {
	if len(c.buf) == 0 {
		return nil
	}
	var hdr [8]byte
	binary.LittleEndian.PutUint32(hdr[:], uint32(len(c.buf)))
	binary.LittleEndian.PutUint32(hdr[4:], crc32.Checksum(c.buf, castagnoli))
	if _, err := c.w.Write(hdr[:]); err != nil {
		return err
	}
	_, err := c.w.Write(c.buf)
	c.buf = c.buf[:0]
	return err
}

func (c *chunkWriter) finish(entries uint64) error {
	if err := c.flush(); err != nil {
		return err
	}
	var end [20]byte // an empty chunk, then the trailer
	binary.LittleEndian.PutUint64(end[8:], entries)
	binary.LittleEndian.PutUint32(end[16:], crc32.Checksum(end[8:16], castagnoli))
	_, err := c.w.Write(end[:])
	return err
}

// appendRecordHead encodes a record up to its value bytes.
func appendRecordHead(b []byte, r *snapshotRecord) []byte {
	b = binary.AppendUvarint(b, uint64(len(r.key)))
	b = append(b, r.key...)
	return binary.AppendUvarint(b, uint64(len(r.value)))
}

// appendRecordTail encodes a record after its value bytes.
func appendRecordTail(b []byte, r *snapshotRecord) []byte {
	b = binary.AppendUvarint(b, uint64(r.flags))
	b = binary.AppendVarint(b, r.expires)
	var state byte
	if r.stale {
		state = 1
	}
	b = append(b, state)
	b = binary.AppendUvarint(b, uint64(len(r.tags)))
	for _, t := range r.tags {
		b = binary.AppendUvarint(b, uint64(len(t)))
		b = append(b, t...)
	}
	return b
}

// ReadSnapshot loads the entries of a snapshot into the store: expired ones
// are skipped, deadlines are kept as they were, and loading stops taking
// entries once the memory budget is full (OverBudget counts the rest). On
// an error the entries read so far stay loaded; the caller decides (a
// store being warmed at start flushes them).
func (s *Store) ReadSnapshot(r io.Reader) (SnapshotStats, error) {
	// Tag sets made from the hints that no loaded entry joined must go.
	defer s.dropEmptyTagSets()
	start := time.Now()
	st := SnapshotStats{Started: start.UnixMilli()}
	cr := &countingReader{r: r}
	var header [headerSize]byte
	if _, err := io.ReadFull(cr, header[:]); err != nil {
		return st, fmt.Errorf("%w: header: %v", ErrCorruptSnapshot, err)
	}
	if string(header[:6]) != snapshotMagic || binary.LittleEndian.Uint32(header[12:]) != crc32.Checksum(header[:12], castagnoli) {
		return st, fmt.Errorf("%w: not a tagcache snapshot", ErrCorruptSnapshot)
	}
	version := binary.LittleEndian.Uint16(header[6:])
	if version < 1 || version > snapshotVersion {
		return st, fmt.Errorf("%w: version %d, this build reads versions 1 to %d", ErrCorruptSnapshot, version, snapshotVersion)
	}
	var body io.Reader = bufio.NewReaderSize(cr, 1<<20)
	switch header[8] {
	case CompressNone:
	case CompressZstd:
		zr, err := zstd.NewReader(body, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxMemory(uint64(maxChunk)*2))
		if err != nil {
			return st, err
		}
		defer zr.Close()
		body = zr
	default:
		return st, fmt.Errorf("%w: unknown compression %d", ErrCorruptSnapshot, header[8])
	}
	var buf []byte
	var records uint64
	for hints := version >= 2; ; hints = false {
		var hdr [8]byte
		if _, err := io.ReadFull(body, hdr[:]); err != nil {
			return st, fmt.Errorf("%w: truncated: %v", ErrCorruptSnapshot, err)
		}
		n := binary.LittleEndian.Uint32(hdr[:])
		if n == 0 {
			var trailer [12]byte
			if _, err := io.ReadFull(body, trailer[:]); err != nil {
				return st, fmt.Errorf("%w: truncated trailer: %v", ErrCorruptSnapshot, err)
			}
			if binary.LittleEndian.Uint32(trailer[8:]) != crc32.Checksum(trailer[:8], castagnoli) ||
				binary.LittleEndian.Uint64(trailer[:8]) != records {
				return st, fmt.Errorf("%w: trailer does not match the %d records read", ErrCorruptSnapshot, records)
			}
			break
		}
		if n > maxChunk {
			return st, fmt.Errorf("%w: chunk of %d bytes", ErrCorruptSnapshot, n)
		}
		if cap(buf) < int(n) {
			buf = make([]byte, n)
		}
		buf = buf[:n]
		if _, err := io.ReadFull(body, buf); err != nil {
			return st, fmt.Errorf("%w: truncated chunk: %v", ErrCorruptSnapshot, err)
		}
		if crc32.Checksum(buf, castagnoli) != binary.LittleEndian.Uint32(hdr[4:]) {
			return st, fmt.Errorf("%w: chunk checksum mismatch", ErrCorruptSnapshot)
		}
		if hints {
			if err := s.useHints(buf); err != nil {
				return st, err
			}
			continue
		}
		for p := buf; len(p) > 0; {
			var rec snapshotRecord
			var err error
			if p, err = decodeRecord(p, &rec); err != nil {
				return st, err
			}
			records++
			s.restore(&rec, &st)
		}
	}
	st.Bytes = cr.n
	st.Duration = time.Since(start)
	return st, nil
}

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

var errBadRecord = fmt.Errorf("%w: malformed record", ErrCorruptSnapshot)

// decodeRecord decodes one record from p and returns the rest. The record's
// key, value and tags alias p.
func decodeRecord(p []byte, r *snapshotRecord) ([]byte, error) {
	bytesField := func() []byte {
		n, k := binary.Uvarint(p)
		if k <= 0 || n > uint64(len(p)-k) {
			p = nil
			return nil
		}
		b := p[k : k+int(n)]
		p = p[k+int(n):]
		return b
	}
	key := bytesField()
	if p == nil {
		return nil, errBadRecord
	}
	r.key = aliasString(key)
	r.value = bytesField()
	if p == nil {
		return nil, errBadRecord
	}
	flags, k := binary.Uvarint(p)
	if k <= 0 || flags > 1<<32-1 {
		return nil, errBadRecord
	}
	p = p[k:]
	r.flags = uint32(flags)
	if r.expires, k = binary.Varint(p); k <= 0 || len(p) < k+1 {
		return nil, errBadRecord
	}
	r.stale = p[k]&1 != 0
	p = p[k+1:]
	ntags, k := binary.Uvarint(p)
	if k <= 0 || ntags > uint64(len(p)) {
		return nil, errBadRecord
	}
	p = p[k:]
	for range ntags {
		t := bytesField()
		if p == nil {
			return nil, errBadRecord
		}
		r.tags = append(r.tags, aliasString(t))
	}
	return p, nil
}

// restore stores one loaded record unless it expired, breaks a limit, or
// does not fit the budget without evicting what was loaded before it.
func (s *Store) restore(r *snapshotRecord, st *SnapshotStats) {
	if r.expires != 0 && r.expires <= s.now() {
		st.Expired++
		return
	}
	lim := s.limits.Load()
	c := change{value: r.value, params: Params{Flags: r.flags, Expires: r.expires, Tags: r.tags}}
	if lim.checkKey(r.key) != nil || s.checkChange(lim, r.key, &c) != nil {
		st.Invalid++
		return
	}
	if s.used.Load()+int64(entryOverhead+len(r.key)+len(r.value)+len(r.tags)*(tagRefOverhead+tagSetOverhead)) > s.maxMem.Load() {
		st.OverBudget++
		return
	}
	if _, err := s.Set(r.key, r.value, c.params); err != nil {
		st.Invalid++
		return
	}
	if r.stale {
		s.MarkStale(r.key)
	}
	st.Entries++
}

// ErrNoSnapshot is returned by LoadFile when there is no snapshot file.
var ErrNoSnapshot = errors.New("no snapshot")

// snapshotFiles coalesces concurrent SaveFile calls on a store: a call made
// while a save runs waits for it and shares its result.
type snapshotFiles struct {
	mu      sync.Mutex
	running *saveCall
	last    SnapshotStats
	lastErr error
	errors  uint64
}

type saveCall struct {
	done chan struct{}
	st   SnapshotStats
	err  error
}

// SaveFile writes a snapshot to path without ever leaving a partial file
// there: it writes a temporary file in the same directory, syncs it,
// renames it over path and syncs the directory. Calls made while one runs
// share its result.
func (s *Store) SaveFile(path string, compression int) (SnapshotStats, error) {
	sf := &s.snapshots
	sf.mu.Lock()
	if c := sf.running; c != nil {
		sf.mu.Unlock()
		<-c.done
		return c.st, c.err
	}
	c := &saveCall{done: make(chan struct{})}
	sf.running = c
	sf.mu.Unlock()

	c.st, c.err = s.saveFile(path, compression)

	sf.mu.Lock()
	sf.running = nil
	sf.lastErr = c.err
	if c.err != nil {
		sf.errors++
	} else {
		sf.last = c.st
	}
	sf.mu.Unlock()
	close(c.done)
	return c.st, c.err
}

func (s *Store) saveFile(path string, compression int) (SnapshotStats, error) {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return SnapshotStats{}, err
	}
	f, err := os.CreateTemp(dir, filepath.Base(path)+".tmp-*")
	if err != nil {
		return SnapshotStats{}, err
	}
	tmp := f.Name()
	defer os.Remove(tmp) // a no-op once renamed
	bw := bufio.NewWriterSize(f, 1<<20)
	st, err := s.WriteSnapshot(bw, compression)
	if err == nil {
		err = bw.Flush()
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err == nil {
		err = syncDir(dir)
	}
	if err != nil {
		return st, fmt.Errorf("snapshot %s: %w", path, err)
	}
	st.Duration = time.Since(time.UnixMilli(st.Started))
	return st, nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// LoadFile loads the snapshot at path (see ReadSnapshot) into a new, empty
// store. A missing file is ErrNoSnapshot. A corrupt one is moved aside to
// path.corrupt-<time>, not deleted, and the store is emptied again; the
// error says where the file went.
func (s *Store) LoadFile(path string) (SnapshotStats, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return SnapshotStats{}, ErrNoSnapshot
	}
	if err != nil {
		return SnapshotStats{}, err
	}
	st, err := s.ReadSnapshot(f)
	f.Close()
	if err != nil && errors.Is(err, ErrCorruptSnapshot) {
		s.Flush(0)
		aside := fmt.Sprintf("%s.corrupt-%s", path, time.Now().UTC().Format("20060102T150405Z"))
		if rerr := os.Rename(path, aside); rerr != nil {
			return st, fmt.Errorf("%w; moving it aside failed: %v", err, rerr)
		}
		return st, fmt.Errorf("%w; moved to %s", err, aside)
	}
	return st, err
}

// LastSnapshot returns the stats of the last SaveFile that succeeded, the
// error of the last one, and how many failed.
func (s *Store) LastSnapshot() (SnapshotStats, error, uint64) {
	sf := &s.snapshots
	sf.mu.Lock()
	defer sf.mu.Unlock()
	return sf.last, sf.lastErr, sf.errors
}
