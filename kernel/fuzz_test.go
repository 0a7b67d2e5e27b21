package kernel

import (
	"errors"
	"testing"

	"github.com/hlsvmm/hlsvmm/vmm/memory"
)

// FuzzParseBzImage feeds arbitrary files to the parser: it must never
// panic, must return exactly one of a header or an error, every error must
// be one of the typed ones, and an accepted header must describe a layout
// that lies inside the file.
func FuzzParseBzImage(f *testing.F) {
	f.Add(fakeBzImage(nil))
	f.Add(fakeBzImage(put16(offVersion, 0x0205)))
	f.Add([]byte("\x7fELF\x02\x01\x01"))
	f.Add(fakeBzImage(nil)[:0x230])
	f.Fuzz(func(t *testing.T, data []byte) {
		h, err := ParseBzImage(data)
		if (h == nil) == (err == nil) {
			t.Fatalf("header %v, error %v", h, err)
		}
		if err != nil {
			for _, e := range []error{ErrNotBzImage, ErrProtocolTooOld, ErrTruncated, ErrBadHeader} {
				if errors.Is(err, e) {
					return
				}
			}
			t.Fatalf("untyped error %v", err)
		}
		if h.SetupSize <= 0 || h.SetupSize+h.PayloadSize != len(data) || h.PayloadSize <= 0 ||
			h.HeaderEnd > h.SetupSize || h.HeaderEnd < hdrOffset || h.Protocol < MinProtocol {
			t.Fatalf("inconsistent header %+v for %d bytes", *h, len(data))
		}
	})
}

// FuzzLoad loads arbitrary images with arbitrary command lines and initrd
// sizes into a small guest: Load must never panic and must either fail or
// return an entry point inside RAM.
func FuzzLoad(f *testing.F) {
	small := func(b []byte) {
		put64(offPrefAddress, 2<<20)(b)
		put32(offInitSize, 4<<20)(b)
	}
	f.Add(fakeBzImage(small), "console=ttyS0", uint16(300), uint8(2))
	f.Add(fakeBzImage(func(b []byte) { small(b); put16(offXloadflags, 0)(b) }), "", uint16(0), uint8(1))
	f.Add(fakeBzImage(func(b []byte) { small(b); put16(offVersion, 0x0209)(b) }), "x", uint16(9000), uint8(8))
	ram := make([]byte, 12<<20)
	f.Fuzz(func(t *testing.T, image []byte, cmdline string, initrdKiB uint16, cpus uint8) {
		m, err := memory.FromRegions(memory.Region{GuestPhys: 0, Host: ram})
		if err != nil {
			t.Fatal(err)
		}
		initrd := make([]byte, int(initrdKiB)<<10)
		s, err := Load(m, Config{Kernel: image, Initrd: initrd, Cmdline: cmdline, CPUs: int(cpus)})
		if err != nil {
			return
		}
		if _, err := m.Slice(s.RIP, 1); err != nil {
			t.Fatalf("entry point %#x outside RAM", s.RIP)
		}
	})
}
