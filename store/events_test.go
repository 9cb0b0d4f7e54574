package store

import (
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// recorder collects invalidations, copying what the store may reuse.
type recorder struct {
	mu     sync.Mutex
	events []Invalidation
}

func (r *recorder) record(ev Invalidation) {
	ev.Tags = slices.Clone(ev.Tags)
	r.mu.Lock()
	r.events = append(r.events, ev)
	r.mu.Unlock()
}

func (r *recorder) take() []Invalidation {
	r.mu.Lock()
	defer r.mu.Unlock()
	evs := r.events
	r.events = nil
	return evs
}

func TestOnInvalidateReportsEachOperation(t *testing.T) {
	s, clk := openManual(t, Config{Shards: 4})
	var r recorder
	cancel := s.OnInvalidate(r.record)
	defer cancel()

	mustSet(t, s, "a", "1", Params{Tags: []string{"t", "u"}})
	mustSet(t, s, "b", "2", Params{Tags: []string{"t"}})
	mustSet(t, s, "c", "3", Params{})
	mustSet(t, s, "d", "4", Params{})
	mustSet(t, s, "e", "5", Params{Tags: []string{"s"}})
	mustSet(t, s, "f", "6", Params{Tags: []string{"s"}})
	if evs := r.take(); len(evs) != 0 {
		t.Fatalf("writes reported %+v", evs)
	}

	steps := []struct {
		name string
		op   func()
		want []Invalidation
	}{
		{"delete", func() { s.Delete("c") }, []Invalidation{{Kind: KeyDeleted, Key: "c"}}},
		{"delete missing", func() { s.Delete("c") }, nil},
		{"get and delete", func() { s.GetAndDelete("d") }, []Invalidation{{Kind: KeyDeleted, Key: "d"}}},
		{"get and delete missing", func() { s.GetAndDelete("d") }, nil},
		{"mark stale", func() { s.MarkStale("e") }, []Invalidation{{Kind: KeyStale, Key: "e"}}},
		{"mark stale missing", func() { s.MarkStale("zz") }, nil},
		{"stale tags", func() { s.StaleTags("s", "none") }, []Invalidation{{Kind: TagsStale, Tags: []string{"s", "none"}, Count: 1}}},
		{"invalidate", func() { s.InvalidateTags("t", "nothing") }, []Invalidation{{Kind: TagsInvalidated, Tags: []string{"t", "nothing"}, Count: 2}}},
		{"invalidate empty tag", func() { s.InvalidateTags("t") }, []Invalidation{{Kind: TagsInvalidated, Tags: []string{"t"}}}},
		{"overwrite", func() { mustSet(t, s, "e", "x", Params{}) }, nil},
		{"touch", func() { s.Touch("e", clk.After(10)) }, nil},
		{"expiry", func() { clk.Advance(20); s.Get("e") }, nil},
		{"flush", func() { s.Flush(0) }, []Invalidation{{Kind: Flushed}}},
		{"delayed flush set", func() { s.Flush(time.Second) }, nil},
		{"delayed flush due", func() { clk.Advance(1000); s.Get("x") }, []Invalidation{{Kind: Flushed}}},
	}
	for _, st := range steps {
		st.op()
		got := r.take()
		if len(got) != len(st.want) {
			t.Fatalf("%s: events %+v, want %+v", st.name, got, st.want)
		}
		for i := range got {
			g, w := got[i], st.want[i]
			if g.Kind != w.Kind || g.Key != w.Key || g.Count != w.Count || !slices.Equal(g.Tags, w.Tags) {
				t.Fatalf("%s: event %+v, want %+v", st.name, g, w)
			}
		}
	}

	cancel()
	cancel() // idempotent
	mustSet(t, s, "a", "1", Params{})
	s.Delete("a")
	if evs := r.take(); len(evs) != 0 {
		t.Fatalf("cancelled listener got %+v", evs)
	}
}

func TestOnInvalidateListenerMayUseStoreAndCancelItself(t *testing.T) {
	s, _ := openManual(t, Config{Shards: 1})
	mustSet(t, s, "a", "1", Params{Tags: []string{"t"}})
	mustSet(t, s, "b", "2", Params{})
	var cancel func()
	var calls atomic.Int32
	cancel = s.OnInvalidate(func(ev Invalidation) {
		calls.Add(1)
		// No store lock is held: the listener may write to the store, in
		// the shard that was just changed, and unregister itself.
		mustSet(t, s, "seen", ev.Kind.String(), Params{})
		cancel()
	})
	var other recorder
	defer s.OnInvalidate(other.record)()
	s.InvalidateTags("t")
	s.Delete("b")
	if calls.Load() != 1 {
		t.Fatalf("self-cancelling listener called %d times", calls.Load())
	}
	if it, ok := s.Get("seen"); !ok || string(it.Value) != "tags invalidated" {
		t.Fatalf("listener's write: %q %v", it.Value, ok)
	}
	if evs := other.take(); len(evs) != 2 {
		t.Fatalf("second listener got %+v, want two events", evs)
	}
}

func TestOnInvalidateConcurrent(t *testing.T) {
	s := openStore(t, Config{Shards: 8, SweepInterval: -1})
	var got atomic.Int64
	var wg, churn sync.WaitGroup
	stop := make(chan struct{})
	// Listeners come and go while other goroutines delete and invalidate.
	churn.Add(1)
	go func() {
		defer churn.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			cancel := s.OnInvalidate(func(Invalidation) {})
			cancel()
		}
	}()
	defer s.OnInvalidate(func(ev Invalidation) {
		if ev.Kind == KeyDeleted {
			got.Add(1)
		}
	})()
	var deleted atomic.Int64
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; i < 500; i++ {
				k := fmt.Sprintf("k%d-%d", w, i)
				if _, err := s.Set(k, []byte("v"), Params{Tags: []string{"t"}}); err != nil {
					t.Error(err)
					return
				}
				if i%2 == 0 {
					if s.Delete(k) == nil {
						deleted.Add(1)
					}
				} else {
					s.InvalidateTags("t")
				}
			}
		}(w)
	}
	wg.Wait()
	close(stop)
	churn.Wait()
	if got.Load() != deleted.Load() {
		t.Fatalf("listener saw %d deletions, store made %d", got.Load(), deleted.Load())
	}
}
