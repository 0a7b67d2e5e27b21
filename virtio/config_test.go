package virtio

import (
	"bytes"
	"math"
	"testing"
)

func TestReadConfigSpace(t *testing.T) {
	space := []byte{1, 2, 3, 4}
	for _, tc := range []struct {
		offset uint64
		n      int
		want   []byte
	}{
		{0, 4, []byte{1, 2, 3, 4}},
		{1, 2, []byte{2, 3}},
		{2, 4, []byte{3, 4, 0, 0}},
		{4, 2, []byte{0, 0}},
		{math.MaxUint64, 3, []byte{0, 0, 0}}, // offset+i wraps to 0, 1
		{math.MaxUint64 - 1, 4, []byte{0, 0, 0, 0}},
	} {
		data := bytes.Repeat([]byte{0xee}, tc.n)
		ReadConfigSpace(space, tc.offset, data)
		if !bytes.Equal(data, tc.want) {
			t.Errorf("offset %#x width %d: got %v, want %v", tc.offset, tc.n, data, tc.want)
		}
	}
}
