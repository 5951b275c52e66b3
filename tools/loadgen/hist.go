package main

import (
	"math"
	"math/bits"
	"time"
)

// hist is a log-linear latency histogram in microseconds: exact below 64 µs,
// then 64 buckets per power of two (relative error under 1.6%). It is not
// safe for concurrent use; each goroutine keeps its own and merges at the end.
type hist struct {
	counts []uint64
	n      uint64
	sum    float64 // µs
	max    int64   // µs
}

const (
	histSub     = 64
	histBuckets = histSub * 42 // up to 2^41 µs, about 25 days
)

func newHist() *hist { return &hist{counts: make([]uint64, histBuckets)} }

func histIndex(v int64) int {
	if v < histSub {
		return int(max(v, 0))
	}
	shift := bits.Len64(uint64(v)) - 7 // v>>shift is in [64, 128)
	i := (shift+1)*histSub + int(v>>shift) - histSub
	return min(i, histBuckets-1)
}

// histUpper is the largest value bucket i holds.
func histUpper(i int) int64 {
	if i < histSub {
		return int64(i)
	}
	shift := i/histSub - 1
	mant := int64(i%histSub + histSub)
	return (mant+1)<<shift - 1
}

func (h *hist) add(d time.Duration) {
	us := d.Microseconds()
	if us < 0 {
		us = 0
	}
	h.counts[histIndex(us)]++
	h.n++
	h.sum += float64(us)
	h.max = max(h.max, us)
}

func (h *hist) merge(o *hist) {
	if o == nil {
		return
	}
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.n += o.n
	h.sum += o.sum
	h.max = max(h.max, o.max)
}

// quantile returns the q-quantile in milliseconds (the upper bound of its
// bucket, never above the maximum seen); NaN when empty.
func (h *hist) quantile(q float64) float64 {
	if h.n == 0 {
		return math.NaN()
	}
	rank := uint64(math.Ceil(q * float64(h.n)))
	rank = max(rank, 1)
	var cum uint64
	for i, c := range h.counts {
		cum += c
		if cum >= rank {
			return float64(min(histUpper(i), h.max)) / 1000
		}
	}
	return float64(h.max) / 1000
}

// summary is a histogram's figures in milliseconds.
type summary struct {
	Count uint64  `json:"count"`
	Mean  float64 `json:"mean_ms"`
	P50   float64 `json:"p50_ms"`
	P90   float64 `json:"p90_ms"`
	P99   float64 `json:"p99_ms"`
	Max   float64 `json:"max_ms"`
}

func (h *hist) summary() summary {
	if h.n == 0 {
		return summary{}
	}
	return summary{
		Count: h.n,
		Mean:  round3(h.sum / float64(h.n) / 1000),
		P50:   round3(h.quantile(0.50)),
		P90:   round3(h.quantile(0.90)),
		P99:   round3(h.quantile(0.99)),
		Max:   round3(float64(h.max) / 1000),
	}
}

func round3(v float64) float64 {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return 0
	}
	return math.Round(v*1000) / 1000
}
