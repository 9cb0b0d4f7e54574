package main

import (
	"math/bits"
	"time"
)

// histogram records latencies in log-linear buckets: exact below 64 ns,
// then 64 buckets per power of two, so a reported value is within 1/64
// (1.6%) of the recorded one. Its size is fixed (about 30 KiB) whatever
// the number of samples.
type histogram struct {
	counts [bucketCount]uint64
	total  uint64
	max    time.Duration
}

const (
	subBits     = 6 // 64 buckets per power of two
	subBuckets  = 1 << subBits
	bucketCount = (64-subBits)*subBuckets + subBuckets
)

func bucketOf(v uint64) int {
	if v < subBuckets {
		return int(v)
	}
	shift := bits.Len64(v) - 1 - subBits
	return shift*subBuckets + int(v>>shift)
}

// bucketValue is the middle of bucket i's range.
func bucketValue(i int) uint64 {
	if i < 2*subBuckets {
		return uint64(i)
	}
	shift := i/subBuckets - 1
	low := uint64(i%subBuckets+subBuckets) << shift
	return low + (uint64(1)<<shift)/2
}

func (h *histogram) record(d time.Duration) {
	if d < 0 {
		d = 0
	}
	h.counts[bucketOf(uint64(d))]++
	h.total++
	h.max = max(h.max, d)
}

func (h *histogram) merge(o *histogram) {
	for i, n := range o.counts {
		h.counts[i] += n
	}
	h.total += o.total
	h.max = max(h.max, o.max)
}

// quantile returns the latency below which a fraction q of the samples
// fall.
func (h *histogram) quantile(q float64) time.Duration {
	if h.total == 0 {
		return 0
	}
	rank := uint64(q*float64(h.total) + 0.5)
	rank = min(max(rank, 1), h.total)
	var seen uint64
	for i, n := range h.counts {
		seen += n
		if seen >= rank {
			return min(time.Duration(bucketValue(i)), h.max)
		}
	}
	return h.max
}
