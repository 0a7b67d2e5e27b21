package report

import (
	"math"
	"slices"
	"time"
)

// Summary describes a set of latency samples. Percentiles are nearest-rank: P(p) is the smallest
// sample such that at least p % of the samples are less than or equal to it, so every reported
// figure is a latency that was actually measured. JSON figures are milliseconds.
type Summary struct {
	Count int     `json:"count"`
	Mean  float64 `json:"mean_ms"`
	P50   float64 `json:"p50_ms"`
	P95   float64 `json:"p95_ms"`
	P99   float64 `json:"p99_ms"`
	Max   float64 `json:"max_ms"`
}

// Percentile returns the nearest-rank p-th percentile (0 < p <= 100) of sorted, which must be in
// ascending order; 0 for no samples.
func Percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(math.Ceil(p / 100 * float64(len(sorted))))
	rank = min(max(rank, 1), len(sorted))
	return sorted[rank-1]
}

// Summarize sorts samples in place and summarizes them.
func Summarize(samples []time.Duration) Summary {
	if len(samples) == 0 {
		return Summary{}
	}
	slices.Sort(samples)
	var sum time.Duration
	for _, d := range samples {
		sum += d
	}
	return Summary{
		Count: len(samples),
		Mean:  Millis(sum / time.Duration(len(samples))),
		P50:   Millis(Percentile(samples, 50)),
		P95:   Millis(Percentile(samples, 95)),
		P99:   Millis(Percentile(samples, 99)),
		Max:   Millis(samples[len(samples)-1]),
	}
}

// Millis is d in milliseconds, rounded to microseconds.
func Millis(d time.Duration) float64 { return math.Round(float64(d)/1e3) / 1e3 }
