package report

import (
	"fmt"
	"math"
	"time"
)

// BitsPerSecond is the rate of bytes moved in d; 0 if d is not positive.
func BitsPerSecond(bytes int64, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return float64(bytes) * 8 / d.Seconds()
}

// MiBps converts bits/s to MiB/s.
func MiBps(bps float64) float64 { return bps / 8 / (1 << 20) }

// Mbps converts bits/s to Mbit/s (10^6 bits).
func Mbps(bps float64) float64 { return bps / 1e6 }

// Rate formats bits/s as "597.3 Mbit/s (71.20 MiB/s)".
func Rate(bps float64) string {
	return fmt.Sprintf("%.1f Mbit/s (%.2f MiB/s)", Mbps(bps), MiBps(bps))
}

// Size formats a byte count with a binary unit.
func Size(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.2f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.2f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

// Ms formats milliseconds with a precision that suits their size.
func Ms(ms float64) string {
	switch {
	case ms >= 100:
		return fmt.Sprintf("%.0f ms", ms)
	case ms >= 10:
		return fmt.Sprintf("%.1f ms", ms)
	}
	return fmt.Sprintf("%.2f ms", ms)
}

// Round rounds x to n decimals, for stable JSON figures.
func Round(x float64, n int) float64 {
	p := math.Pow(10, float64(n))
	return math.Round(x*p) / p
}
