package main

import (
	"bufio"
	"bytes"
	"testing"
	"time"
)

func TestKeysAndTags(t *testing.T) {
	ks := &keySpace{keys: 1_000_000, tags: 1000, hotEvery: 10, value: []byte("v")}
	for _, tc := range []struct {
		i         int
		key, tags string
		hot       bool
	}{
		{i: 0, key: "key:000000000000", tags: "t0,hot", hot: true},
		{i: 7, key: "key:000000000007", tags: "t7"},
		{i: 1010, key: "key:000000001010", tags: "t10,hot", hot: true},
		{i: 999_999, key: "key:000000999999", tags: "t999"},
	} {
		if got := string(ks.key(nil, tc.i)); got != tc.key || len(got) != 16 {
			t.Errorf("key(%d) = %q, want %q (16 bytes)", tc.i, got, tc.key)
		}
		if got := string(ks.tagList(nil, tc.i)); got != tc.tags {
			t.Errorf("tagList(%d) = %q, want %q", tc.i, got, tc.tags)
		}
		if ks.isHot(tc.i) != tc.hot {
			t.Errorf("isHot(%d) = %v", tc.i, !tc.hot)
		}
	}
	if n := ks.hotKeys(); n != 100_000 {
		t.Errorf("hotKeys() = %d, want 100000", n)
	}
	if n := (&keySpace{keys: 25, hotEvery: 10}).hotKeys(); n != 3 {
		t.Errorf("hotKeys() of 25 keys, every 10th = %d, want 3 (0, 10, 20)", n)
	}
	untagged := &keySpace{keys: 10}
	if got := untagged.tagList(nil, 3); len(got) != 0 {
		t.Errorf("tagList without tags = %q", got)
	}
}

func TestSetCommands(t *testing.T) {
	for _, tc := range []struct {
		proto      setter
		tags, want string
	}{
		{tabProto{}, "t1,hot", "PUT\tk\t-\tt1,hot\tabc\n"},
		{tabProto{}, "", "PUT\tk\t-\t-\tabc\n"},
		{memcachedProto{}, "t1,hot", "set k 0 0 3 tags=t1,hot\r\nabc\r\n"},
		{memcachedProto{}, "", "set k 0 0 3\r\nabc\r\n"},
	} {
		var buf bytes.Buffer
		w := bufio.NewWriter(&buf)
		tc.proto.writeSet(w, []byte("k"), []byte(tc.tags), []byte("abc"))
		w.Flush()
		if buf.String() != tc.want {
			t.Errorf("%T with tags %q wrote %q, want %q", tc.proto, tc.tags, buf.String(), tc.want)
		}
	}
	if err := (memcachedProto{}).readSet(bufio.NewReader(bytes.NewBufferString("STORED\r\n"))); err != nil {
		t.Errorf("STORED: %v", err)
	}
	if err := (tabProto{}).readSet(bufio.NewReader(bytes.NewBufferString("ERR out of memory\n"))); err == nil {
		t.Error("an error reply to PUT was taken for OK")
	}
}

func TestSummarize(t *testing.T) {
	var ds []time.Duration
	for i := 1000; i >= 1; i-- {
		ds = append(ds, time.Duration(i)*time.Microsecond)
	}
	got := summarize(ds)
	want := latencies{n: 1000, p50: 501 * time.Microsecond, p99: 991 * time.Microsecond, p999: 1000 * time.Microsecond, mx: 1000 * time.Microsecond}
	if got != want {
		t.Errorf("summarize = %+v, want %+v", got, want)
	}
	if got := summarize(nil); got != (latencies{}) {
		t.Errorf("summarize(nil) = %+v", got)
	}
}
