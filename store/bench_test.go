package store

import (
	"fmt"
	"runtime"
	"strconv"
	"testing"
	"time"
	"unsafe"
)

func benchStore(b *testing.B, cfg Config) *Store {
	s, err := New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(s.Close)
	return s
}

func benchKeys(n int) []string {
	keys := make([]string, n)
	for i := range keys {
		keys[i] = fmt.Sprintf("key:%012d", i) // 16 bytes
	}
	return keys
}

var value100 = make([]byte, 100)

func BenchmarkGetHit(b *testing.B) {
	s := benchStore(b, Config{})
	keys := benchKeys(1 << 16)
	for _, k := range keys {
		s.Set(k, value100, Params{})
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, ok := s.Get(keys[i&(len(keys)-1)]); !ok {
			b.Fatal("miss")
		}
	}
}

func BenchmarkGetMiss(b *testing.B) {
	s := benchStore(b, Config{})
	keys := benchKeys(1 << 16)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		s.Get(keys[i&(len(keys)-1)])
	}
}

func BenchmarkSet(b *testing.B) {
	s := benchStore(b, Config{})
	keys := benchKeys(1 << 16)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		s.Set(keys[i&(len(keys)-1)], value100, Params{})
	}
}

func BenchmarkSetTags3(b *testing.B) {
	s := benchStore(b, Config{})
	keys := benchKeys(1 << 16)
	tags := make([][]string, 64)
	for i := range tags {
		tags[i] = []string{"site", "product:" + strconv.Itoa(i), "page:" + strconv.Itoa(i%7)}
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		s.Set(keys[i&(len(keys)-1)], value100, Params{Tags: tags[i&63]})
	}
}

func BenchmarkIncr(b *testing.B) {
	s := benchStore(b, Config{})
	keys := benchKeys(1 << 10)
	for _, k := range keys {
		s.Set(k, []byte("0"), Params{})
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := s.Incr(keys[i&(len(keys)-1)], 1); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkParallelMix is 90% Get, 10% Set over 64k keys; run it with
// -cpu 1,2 to see how it scales.
func BenchmarkParallelMix(b *testing.B) {
	s := benchStore(b, Config{})
	keys := benchKeys(1 << 16)
	for _, k := range keys {
		s.Set(k, value100, Params{})
	}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			i++
			k := keys[(i*7919)&(len(keys)-1)]
			if i%10 == 0 {
				s.Set(k, value100, Params{})
			} else {
				s.Get(k)
			}
		}
	})
}

// BenchmarkInvalidateTag100k removes a tag carried by 100k keys.
func BenchmarkInvalidateTag100k(b *testing.B) {
	s := benchStore(b, Config{})
	keys := benchKeys(100_000)
	tags := []string{"big"}
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		for _, k := range keys {
			s.Set(k, value100, Params{Tags: tags})
		}
		b.StartTimer()
		if n := s.InvalidateTags("big"); n != len(keys) {
			b.Fatalf("invalidated %d", n)
		}
	}
}

// BenchmarkHeapPerItem stores 1M items of 16-byte keys and 100-byte values
// and reports the Go heap they take per item, and the part of it beyond the
// key and value bytes. It also reports what the budget accounting counted.
func BenchmarkHeapPerItem(b *testing.B) {
	for i := 0; i < b.N; i++ {
		keys := benchKeys(1_000_000)
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		s := benchStore(b, Config{MaxMemory: 1 << 30})
		for _, k := range keys {
			s.Set(k, value100, Params{})
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		per := float64(after.HeapAlloc-before.HeapAlloc) / float64(len(keys))
		b.ReportMetric(per, "heapB/item")
		b.ReportMetric(per-116, "overheadB/item")
		b.ReportMetric(float64(s.Stats().Bytes)/float64(len(keys)), "countedB/item")
		runtime.KeepAlive(s)
	}
}

func TestEntrySize(t *testing.T) {
	if n := unsafe.Sizeof(entry{}); n != 48 {
		t.Fatalf("entry is %d bytes, want 48", n)
	}
}

// BenchmarkSnapshot1M writes and loads a snapshot of 1M entries of 16-byte
// keys, 100-byte values and 2 tags, reporting write and load seconds and the
// file size.
func BenchmarkSnapshot1M(b *testing.B) {
	for _, comp := range []int{CompressNone, CompressZstd} {
		b.Run(fmt.Sprint("compression=", comp), func(b *testing.B) {
			s := benchStore(b, Config{MaxMemory: 4 << 30})
			keys := benchKeys(1_000_000)
			for i, k := range keys {
				s.Set(k, value100, Params{Tags: []string{"t" + strconv.Itoa(i%1000), "all"}})
			}
			path := b.TempDir() + "/bench.snap"
			for i := 0; i < b.N; i++ {
				st, err := s.SaveFile(path, comp)
				if err != nil {
					b.Fatal(err)
				}
				dst := benchStore(b, Config{MaxMemory: 4 << 30})
				lst, err := dst.LoadFile(path)
				if err != nil || lst.Entries != 1_000_000 {
					b.Fatalf("load: %+v %v", lst, err)
				}
				b.ReportMetric(st.Duration.Seconds(), "write-s")
				b.ReportMetric(lst.Duration.Seconds(), "load-s")
				b.ReportMetric(float64(st.Bytes)/(1<<20), "file-MiB")
				dst.Close()
			}
		})
	}
}

// BenchmarkGetDuringSnapshot measures single-goroutine Get throughput over
// 1M entries while snapshots are written back to back, and without; it
// reports both and their ratio.
func BenchmarkGetDuringSnapshot(b *testing.B) {
	s := benchStore(b, Config{MaxMemory: 4 << 30})
	keys := benchKeys(1_000_000)
	for _, k := range keys {
		s.Set(k, value100, Params{Tags: []string{"a", "b"}})
	}
	path := b.TempDir() + "/bench.snap"
	getsFor := func(d time.Duration) float64 {
		n := 0
		start := time.Now()
		for time.Since(start) < d {
			for range 1000 {
				s.Get(keys[(n*7919)%len(keys)])
				n++
			}
		}
		return float64(n) / time.Since(start).Seconds()
	}
	for i := 0; i < b.N; i++ {
		base := getsFor(2 * time.Second)
		stop := make(chan struct{})
		done := make(chan struct{})
		go func() {
			defer close(done)
			for {
				select {
				case <-stop:
					return
				default:
					s.SaveFile(path, CompressNone)
				}
			}
		}()
		during := getsFor(2 * time.Second)
		close(stop)
		<-done
		b.ReportMetric(base, "gets/s")
		b.ReportMetric(during, "gets/s-during-snapshot")
		b.ReportMetric(during/base, "ratio")
	}
}
