package report

import (
	"math"
	"slices"
)

// Stat summarises one metric over the samples of one cell. With N = 0,
// Median, Min and Max are NaN.
type Stat struct {
	N                int
	Median, Min, Max float64
}

// Summarize returns the count, median, minimum and maximum of xs. The
// median of an even count is the mean of the two middle values. xs is
// not modified.
func Summarize(xs []float64) Stat {
	if len(xs) == 0 {
		nan := math.NaN()
		return Stat{Median: nan, Min: nan, Max: nan}
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	n := len(s)
	m := s[n/2]
	if n%2 == 0 {
		m = (s[n/2-1] + s[n/2]) / 2
	}
	return Stat{N: n, Median: m, Min: s[0], Max: s[n-1]}
}

// Median returns the median of xs (NaN when xs is empty).
func Median(xs []float64) float64 { return Summarize(xs).Median }

// ratio returns a/b, or NaN when either is unknown or b is not positive.
func ratio(a, b float64) float64 {
	if math.IsNaN(a) || math.IsNaN(b) || b <= 0 {
		return math.NaN()
	}
	return a / b
}
