// Package units reads and writes the byte counts a person types and
// reads: sizes such as 512MB or 1.5TiB, shown back in decimal units.
package units

import (
	"fmt"
	"strconv"
	"strings"
)

// ParseBytes reads sizes such as "512MB", "50GB", "1.5TiB" or "1048576"
// (decimal units by powers of 1000, binary ones, KiB to TiB, by powers of
// 1024; case does not matter).
func ParseBytes(s string) (int64, error) {
	t := strings.ToUpper(strings.TrimSpace(s))
	mult := 1.0
	for _, u := range []struct {
		suffix string
		m      float64
	}{{"TIB", 1 << 40}, {"GIB", 1 << 30}, {"MIB", 1 << 20}, {"KIB", 1 << 10}, {"TB", 1e12}, {"GB", 1e9}, {"MB", 1e6}, {"KB", 1e3}, {"B", 1}} {
		if strings.HasSuffix(t, u.suffix) {
			t, mult = strings.TrimSpace(strings.TrimSuffix(t, u.suffix)), u.m
			break
		}
	}
	v, err := strconv.ParseFloat(t, 64)
	if err != nil || v < 0 || v*mult > 1<<62 {
		return 0, fmt.Errorf("%q is not a size (like 512MB or 50GB)", s)
	}
	return int64(v * mult), nil
}

// FormatBytes shows a byte count with one decimal in the largest decimal
// unit it reaches: 1.5 GB, 12.0 MB, 3.2 kB, 512 B.
func FormatBytes(n int64) string {
	switch {
	case n >= 1e9:
		return fmt.Sprintf("%.1f GB", float64(n)/1e9)
	case n >= 1e6:
		return fmt.Sprintf("%.1f MB", float64(n)/1e6)
	case n >= 1e3:
		return fmt.Sprintf("%.1f kB", float64(n)/1e3)
	}
	return fmt.Sprintf("%d B", n)
}
