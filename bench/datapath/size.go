package datapath

import (
	"fmt"
	"strconv"
	"strings"
)

// ParseSize parses a byte count: a decimal number with an optional binary unit K, M, G (or
// KiB, MiB, GiB; case-insensitive), e.g. "256MiB", "64M", "1048576".
func ParseSize(s string) (int64, error) {
	num, shift := strings.TrimSpace(s), 0
	lower := strings.ToLower(num)
	for _, u := range []struct {
		suffix string
		shift  int
	}{{"kib", 10}, {"mib", 20}, {"gib", 30}, {"k", 10}, {"m", 20}, {"g", 30}, {"b", 0}} {
		if strings.HasSuffix(lower, u.suffix) {
			num, shift = strings.TrimSpace(num[:len(num)-len(u.suffix)]), u.shift
			break
		}
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n < 0 || n > (1<<40)>>shift {
		return 0, fmt.Errorf("size %q: want a number of bytes up to 1 TiB, with an optional unit K, M or G (binary)", s)
	}
	return n << shift, nil
}
