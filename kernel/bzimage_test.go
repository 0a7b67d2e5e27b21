package kernel

import (
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Defaults of the synthetic bzImage: a relocatable 64-bit kernel speaking
// protocol 2.15, like any current distro kernel but tiny.
const (
	fakeSetupSects = 4
	fakePayload    = 4096
	fakePref       = 16 << 20
	fakeInitSize   = 32 << 20
	fakeAlign      = 2 << 20
	fakeCmdline    = 2047
	fakeInitrdMax  = 0x7fffffff
)

// fakeBzImage builds a minimal bzImage: boot sector and setup sectors with
// a setup header, then a payload whose bytes are i%251 so misplaced copies
// show. mod, if set, edits the bytes before they are returned.
func fakeBzImage(mod func(b []byte)) []byte {
	setup := (fakeSetupSects + 1) * sectorSize
	b := make([]byte, setup+fakePayload)
	le := binary.LittleEndian
	b[offSetupSects] = fakeSetupSects
	le.PutUint32(b[offSyssize:], fakePayload/16)
	le.PutUint16(b[offBootFlag:], bootFlagMagic)
	b[offJump], b[offJump+1] = 0xeb, setupHeaderEnd-offHeader
	copy(b[offHeader:], "HdrS")
	le.PutUint16(b[offVersion:], 0x020f)
	b[offLoadflags] = LoadedHigh
	le.PutUint32(b[offCode32Start:], 0x100000)
	le.PutUint32(b[offInitrdAddrMax:], fakeInitrdMax)
	le.PutUint32(b[offKernelAlignment:], fakeAlign)
	b[offRelocatableKernel] = 1
	le.PutUint16(b[offXloadflags:], XLFKernel64|XLFCanBeLoadedAbove4G)
	le.PutUint32(b[offCmdlineSize:], fakeCmdline)
	le.PutUint64(b[offPrefAddress:], fakePref)
	le.PutUint32(b[offInitSize:], fakeInitSize)
	for i := setup; i < len(b); i++ {
		b[i] = byte((i - setup) % 251)
	}
	if mod != nil {
		mod(b)
	}
	return b
}

func put16(off int, v uint16) func([]byte) {
	return func(b []byte) { binary.LittleEndian.PutUint16(b[off:], v) }
}

func put32(off int, v uint32) func([]byte) {
	return func(b []byte) { binary.LittleEndian.PutUint32(b[off:], v) }
}

func put64(off int, v uint64) func([]byte) {
	return func(b []byte) { binary.LittleEndian.PutUint64(b[off:], v) }
}

func TestParseBzImage(t *testing.T) {
	h, err := ParseBzImage(fakeBzImage(nil))
	if err != nil {
		t.Fatal(err)
	}
	want := Header{
		Protocol: 0x020f, SetupSects: fakeSetupSects, Loadflags: LoadedHigh,
		Xloadflags: XLFKernel64 | XLFCanBeLoadedAbove4G, Relocatable: true,
		KernelAlignment: fakeAlign, PrefAddress: fakePref, InitSize: fakeInitSize,
		InitrdAddrMax: fakeInitrdMax, CmdlineSize: fakeCmdline, Syssize: fakePayload / 16,
		SetupSize: (fakeSetupSects + 1) * sectorSize, PayloadSize: fakePayload, HeaderEnd: setupHeaderEnd,
	}
	if *h != want {
		t.Fatalf("header\n got %+v\nwant %+v", *h, want)
	}
	if !h.Has64BitEntry() || h.ProtocolString() != "2.15" {
		t.Fatalf("Has64BitEntry %v, protocol %q", h.Has64BitEntry(), h.ProtocolString())
	}
}

func TestParseBzImageSetupSectsZeroMeansFour(t *testing.T) {
	h, err := ParseBzImage(fakeBzImage(func(b []byte) { b[offSetupSects] = 0 }))
	if err != nil {
		t.Fatal(err)
	}
	if h.SetupSects != 4 || h.SetupSize != 5*512 {
		t.Fatalf("setup_sects 0: SetupSects %d SetupSize %d, want 4 and 2560", h.SetupSects, h.SetupSize)
	}
}

// Fields newer than the image's protocol read as zero even if the bytes
// happen to be set: before 2.10 there is no pref_address/init_size, before
// 2.12 no xloadflags, before 2.05 no relocatable_kernel.
func TestParseBzImageIgnoresFieldsNewerThanProtocol(t *testing.T) {
	for _, tc := range []struct {
		proto                uint16
		reloc, xlf, prefInit bool
	}{
		{0x0206, true, false, false},
		{0x0209, true, false, false},
		{0x020a, true, false, true},
		{0x020c, true, true, true},
	} {
		h, err := ParseBzImage(fakeBzImage(put16(offVersion, tc.proto)))
		if err != nil {
			t.Fatalf("protocol %#x: %v", tc.proto, err)
		}
		if h.Relocatable != tc.reloc || (h.Xloadflags != 0) != tc.xlf ||
			(h.PrefAddress != 0) != tc.prefInit || (h.InitSize != 0) != tc.prefInit {
			t.Errorf("protocol %#x: %+v", tc.proto, *h)
		}
	}
	// A header that declares itself short (jump byte) hides the fields past
	// it: ending at 0x23c keeps xloadflags, drops pref_address and init_size.
	h, err := ParseBzImage(fakeBzImage(func(b []byte) { b[offJump+1] = 0x3a })) // ends at 0x23c
	if err != nil {
		t.Fatal(err)
	}
	if h.Xloadflags == 0 || h.PrefAddress != 0 || h.InitSize != 0 || h.HeaderEnd != 0x23c {
		t.Fatalf("short header: %+v", *h)
	}
}

func TestParseBzImageErrors(t *testing.T) {
	valid := fakeBzImage(nil)
	elf := append([]byte("\x7fELF\x02\x01\x01"), make([]byte, 64)...)
	for _, tc := range []struct {
		name    string
		data    []byte
		want    error
		mention []string
	}{
		{"empty", nil, ErrTruncated, []string{"0 bytes"}},
		{"shorter than header", valid[:0x205], ErrTruncated, nil},
		{"header cut before cmdline_size", valid[:0x230], ErrTruncated, nil},
		{"ELF vmlinux", elf, ErrNotBzImage, []string{"ELF", "bzImage"}},
		{"ELF vmlinux large", append([]byte("\x7fELF"), valid[4:]...), ErrNotBzImage, []string{"ELF", "arch/x86/boot/bzImage"}},
		{"no HdrS", fakeBzImage(func(b []byte) { copy(b[offHeader:], "HdrX") }), ErrNotBzImage, []string{"HdrS"}},
		{"no boot flag", fakeBzImage(put16(offBootFlag, 0)), ErrNotBzImage, []string{"0xaa55"}},
		{"protocol 2.05", fakeBzImage(put16(offVersion, 0x0205)), ErrProtocolTooOld, []string{"2.05", "2.06"}},
		{"protocol 2.00", fakeBzImage(put16(offVersion, 0x0200)), ErrProtocolTooOld, []string{"2.00"}},
		{"setup beyond file", fakeBzImage(func(b []byte) { b[offSetupSects] = 200 }), ErrTruncated, []string{"200 setup sectors"}},
		{"setup is whole file", valid[:(fakeSetupSects+1)*sectorSize], ErrTruncated, nil},
		{"zImage", fakeBzImage(func(b []byte) { b[offLoadflags] = 0 }), ErrNotBzImage, []string{"LOADED_HIGH"}},
		{"syssize beyond file", fakeBzImage(put32(offSyssize, fakePayload/16+1)), ErrTruncated, []string{"syssize"}},
		{"payload truncated", valid[:len(valid)-1], ErrTruncated, []string{"syssize"}},
		{"alignment not power of two", fakeBzImage(put32(offKernelAlignment, 3<<20)), ErrBadHeader, []string{"kernel_alignment"}},
		{"alignment zero", fakeBzImage(put32(offKernelAlignment, 0)), ErrBadHeader, []string{"kernel_alignment"}},
		{"alignment 2 GiB", fakeBzImage(put32(offKernelAlignment, 1<<31)), ErrBadHeader, []string{"kernel_alignment"}},
		{"cmdline_size zero", fakeBzImage(put32(offCmdlineSize, 0)), ErrBadHeader, []string{"cmdline_size"}},
		{"initrd_addr_max zero", fakeBzImage(put32(offInitrdAddrMax, 0)), ErrBadHeader, []string{"initrd_addr_max"}},
		{"pref_address unaligned", fakeBzImage(put64(offPrefAddress, fakePref+1)), ErrBadHeader, []string{"pref_address"}},
		{"pref_address low", fakeBzImage(put64(offPrefAddress, 0x8000)), ErrBadHeader, []string{"pref_address"}},
		{"pref_address huge", fakeBzImage(put64(offPrefAddress, 1<<63)), ErrBadHeader, []string{"pref_address"}},
		{"header too short", fakeBzImage(func(b []byte) { b[offJump+1] = 0x10 }), ErrBadHeader, []string{"jump"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, err := ParseBzImage(tc.data)
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v (header %+v), want %v", err, h, tc.want)
			}
			if h != nil {
				t.Fatalf("header %+v returned with error", h)
			}
			for _, m := range tc.mention {
				if !strings.Contains(err.Error(), m) {
					t.Errorf("error %q does not mention %q", err, m)
				}
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error %q spans lines", err)
			}
		})
	}
}

// realKernel returns a distro bzImage: $HLSVMM_KERNEL, else the newest
// /boot/vmlinuz-*. This coverage is optional (the synthetic tests are the
// required ones), so a missing kernel skips even under CI.
func realKernel(t *testing.T) (string, []byte) {
	t.Helper()
	path := os.Getenv("HLSVMM_KERNEL")
	if path == "" {
		matches, _ := filepath.Glob("/boot/vmlinuz-*")
		if len(matches) == 0 {
			t.Skip("no kernel: set HLSVMM_KERNEL to a bzImage (e.g. apt-get download linux-image-amd64's image package and dpkg -x it) or install one in /boot")
		}
		path = matches[len(matches)-1]
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read kernel: %v", err)
	}
	return path, data
}

func TestParseRealKernel(t *testing.T) {
	path, data := realKernel(t)
	h, err := ParseBzImage(data)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	t.Logf("%s: protocol %s, %+v", path, h.ProtocolString(), *h)
	if !h.Has64BitEntry() || !h.Relocatable || h.PrefAddress < 1<<20 || h.InitSize == 0 {
		t.Fatalf("%s: expected a relocatable 64-bit kernel with pref_address and init_size: %+v", path, *h)
	}
	if h.HeaderEnd != setupHeaderEnd && h.Protocol >= 0x020f {
		t.Errorf("protocol %s header ends at %#x, want %#x", h.ProtocolString(), h.HeaderEnd, setupHeaderEnd)
	}
}
