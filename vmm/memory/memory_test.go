package memory

import (
	"errors"
	"fmt"
	"os"
	"regexp"
	"strings"
	"testing"
	"unsafe"
)

func TestNewLeavesOutPCIHole(t *testing.T) {
	m, err := New(4 << 30)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	rs := m.Regions()
	if len(rs) != 2 || rs[0].GuestPhys != 0 || rs[0].End() != HoleStart || rs[1].GuestPhys != HoleEnd || rs[1].End() != HoleEnd+1<<30 {
		t.Fatalf("layout = %v", describe(rs))
	}
	if m.Size() != 4<<30 {
		t.Fatalf("Size = %d", m.Size())
	}
	if _, err := m.Slice(HoleStart-8, 16); !errors.Is(err, ErrOutOfRange) {
		t.Fatalf("slice across the hole: err = %v", err)
	}
	b, err := m.Slice(HoleEnd, 8)
	if err != nil {
		t.Fatal(err)
	}
	b[0] = 1
	if rs[1].Host[0] != 1 {
		t.Fatal("slice does not alias the region")
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	if err := m.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

func TestNewRejectsBadSize(t *testing.T) {
	for _, size := range []uint64{0, 4097} {
		if _, err := New(size); err == nil {
			t.Errorf("New(%d) succeeded", size)
		}
	}
}

func TestSliceBounds(t *testing.T) {
	m, err := FromRegions(Region{GuestPhys: 0x1000, Host: make([]byte, 0x1000)})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		gpa, n uint64
		ok     bool
	}{
		{0x1000, 0x1000, true},
		{0x1fff, 1, true},
		{0x2000, 0, true},
		{0x1fff, 2, false},
		{0xfff, 1, false},
		{^uint64(0), 2, false},
		{0x1000, ^uint64(0), false},
	} {
		b, err := m.Slice(tc.gpa, tc.n)
		if tc.ok != (err == nil) {
			t.Errorf("Slice(%#x, %#x) err = %v, want ok=%v", tc.gpa, tc.n, err, tc.ok)
		}
		if err == nil && (uint64(len(b)) != tc.n || uint64(cap(b)) != tc.n) {
			t.Errorf("Slice(%#x, %#x) len %d cap %d", tc.gpa, tc.n, len(b), cap(b))
		}
	}
}

func TestFromRegionsRejectsOverlap(t *testing.T) {
	_, err := FromRegions(Region{0, make([]byte, 16)}, Region{8, make([]byte, 16)})
	if err == nil {
		t.Fatal("overlapping regions accepted")
	}
}

func describe(rs []Region) [][2]uint64 {
	var out [][2]uint64
	for _, r := range rs {
		out = append(out, [2]uint64{r.GuestPhys, r.End()})
	}
	return out
}

// TestNewMapsHugeAligned checks that each region's host mapping starts on a
// huge page boundary, is exactly the region's size (the over-allocation was
// trimmed) and carries MADV_HUGEPAGE ("hg" in smaps' VmFlags) where the
// kernel has transparent huge pages.
func TestNewMapsHugeAligned(t *testing.T) {
	const size = 64 << 20
	for range 4 { // a lucky aligned mmap would pass once
		m, err := New(size)
		if err != nil {
			t.Fatal(err)
		}
		host := m.Regions()[0].Host
		addr := uintptr(unsafe.Pointer(unsafe.SliceData(host)))
		if addr%HugeAlign != 0 {
			t.Fatalf("region host address %#x is not %d-byte aligned", addr, HugeAlign)
		}
		vma, err := smapsEntry(addr)
		if err != nil {
			t.Fatal(err)
		}
		if want := fmt.Sprintf("Size: %d kB", size>>10); !strings.Contains(strings.Join(strings.Fields(vma), " "), want) {
			t.Fatalf("mapping at %#x: want %q (trimmed to the region), smaps:\n%s", addr, want, vma)
		}
		if _, err := os.Stat("/sys/kernel/mm/transparent_hugepage/enabled"); err == nil && !regexp.MustCompile(`VmFlags:.* hg`).MatchString(vma) {
			t.Fatalf("mapping at %#x is not advised MADV_HUGEPAGE, smaps:\n%s", addr, vma)
		}
		if err := m.Close(); err != nil {
			t.Fatal(err)
		}
		if _, err := smapsEntry(addr); err == nil {
			t.Fatalf("mapping at %#x still present after Close", addr)
		}
	}
}

// smapsEntry returns this process's /proc/self/smaps entry for the mapping
// starting at addr.
func smapsEntry(addr uintptr) (string, error) {
	b, err := os.ReadFile("/proc/self/smaps")
	if err != nil {
		return "", err
	}
	prefix := fmt.Sprintf("%x-", addr)
	var out []string
	in := false
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) > 0 && strings.Contains(f[0], "-") && !strings.HasSuffix(f[0], ":") {
			if in {
				break
			}
			in = strings.HasPrefix(line, prefix)
		}
		if in {
			out = append(out, line)
		}
	}
	if len(out) == 0 {
		return "", fmt.Errorf("no mapping starts at %#x", addr)
	}
	return strings.Join(out, "\n"), nil
}
