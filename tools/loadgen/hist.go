package main

import (
	"math"
	"math/bits"
	"sync/atomic"
	"time"
)

// subBits sets the histogram's precision: each power of two is split into
// 2^subBits buckets, so a recorded value is off by at most 1/64 (1.6%).
const (
	subBits  = 6
	subCount = 1 << subBits
	nBuckets = (64 - subBits + 1) * subCount
)

// Histogram counts durations in log-linear buckets, like HdrHistogram with
// two significant digits: fixed memory (30 KB) whatever the count, and
// mergeable across goroutines and processes. The zero value is empty and
// ready. Safe for concurrent use.
type Histogram struct {
	counts [nBuckets]atomic.Uint64
	n      atomic.Uint64
	sum    atomic.Uint64 // nanoseconds
	max    atomic.Uint64
}

func bucketOf(v uint64) int {
	if v < subCount {
		return int(v)
	}
	e := bits.Len64(v) - subBits - 1 // v>>e is in [subCount, 2*subCount)
	return (e+1)*subCount + int(v>>e) - subCount
}

// bucketRange returns the smallest value of bucket i and the bucket's width.
func bucketRange(i int) (lo, width uint64) {
	if i < subCount {
		return uint64(i), 1
	}
	e := uint(i/subCount - 1)
	m := uint64(i%subCount + subCount)
	return m << e, 1 << e
}

// Record adds one duration; negative durations count as zero.
func (h *Histogram) Record(d time.Duration) {
	v := uint64(max(d, 0))
	h.counts[bucketOf(v)].Add(1)
	h.n.Add(1)
	h.sum.Add(v)
	for {
		m := h.max.Load()
		if v <= m || h.max.CompareAndSwap(m, v) {
			return
		}
	}
}

// Count is the number of recorded values.
func (h *Histogram) Count() uint64 { return h.n.Load() }

// HistSnapshot is a histogram in a form that JSON carries between processes:
// only non-empty buckets.
type HistSnapshot struct {
	Buckets map[int]uint64 `json:"buckets"`
	Count   uint64         `json:"count"`
	SumNs   uint64         `json:"sum_ns"`
	MaxNs   uint64         `json:"max_ns"`
}

// Snapshot copies the current counts.
func (h *Histogram) Snapshot() HistSnapshot {
	s := HistSnapshot{Buckets: map[int]uint64{}, Count: h.n.Load(), SumNs: h.sum.Load(), MaxNs: h.max.Load()}
	for i := range h.counts {
		if c := h.counts[i].Load(); c > 0 {
			s.Buckets[i] = c
		}
	}
	return s
}

// Merge adds s to h.
func (h *Histogram) Merge(s HistSnapshot) {
	for i, c := range s.Buckets {
		if i >= 0 && i < nBuckets {
			h.counts[i].Add(c)
		}
	}
	h.n.Add(s.Count)
	h.sum.Add(s.SumNs)
	for {
		m := h.max.Load()
		if s.MaxNs <= m || h.max.CompareAndSwap(m, s.MaxNs) {
			return
		}
	}
}

// Quantile returns the value at quantile q (0..1): the middle of the bucket
// holding that rank, never above the largest value recorded.
func (h *Histogram) Quantile(q float64) time.Duration {
	n := h.n.Load()
	if n == 0 {
		return 0
	}
	rank := uint64(math.Ceil(q * float64(n)))
	rank = min(max(rank, 1), n)
	var seen uint64
	for i := range h.counts {
		seen += h.counts[i].Load()
		if seen >= rank {
			lo, w := bucketRange(i)
			return time.Duration(min(lo+w/2, h.max.Load()))
		}
	}
	return time.Duration(h.max.Load())
}

// Summary is what a report shows of a latency histogram, in milliseconds.
type Summary struct {
	Count  uint64  `json:"count"`
	MeanMs float64 `json:"mean_ms"`
	P50Ms  float64 `json:"p50_ms"`
	P90Ms  float64 `json:"p90_ms"`
	P99Ms  float64 `json:"p99_ms"`
	P999Ms float64 `json:"p999_ms"`
	MaxMs  float64 `json:"max_ms"`
}

func ms(d time.Duration) float64 { return math.Round(float64(d)/1e3) / 1e3 }

// Summary computes the percentiles.
func (h *Histogram) Summary() Summary {
	n := h.n.Load()
	if n == 0 {
		return Summary{}
	}
	return Summary{
		Count:  n,
		MeanMs: ms(time.Duration(h.sum.Load() / n)),
		P50Ms:  ms(h.Quantile(0.50)),
		P90Ms:  ms(h.Quantile(0.90)),
		P99Ms:  ms(h.Quantile(0.99)),
		P999Ms: ms(h.Quantile(0.999)),
		MaxMs:  ms(time.Duration(h.max.Load())),
	}
}

// histFrom rebuilds a histogram from a snapshot.
func histFrom(s HistSnapshot) *Histogram {
	h := &Histogram{}
	h.Merge(s)
	return h
}
