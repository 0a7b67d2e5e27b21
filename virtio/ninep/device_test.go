package ninep

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hugelgupf/p9/linux"
	"github.com/hugelgupf/p9/p9"
	"golang.org/x/sys/unix"

	"github.com/hlsvmm/hlsvmm/virtio"
	"github.com/hlsvmm/hlsvmm/virtio/queue"
)

// tree makes base/share with files, a directory, a symlink inside, links
// pointing out, a FIFO, and base/outside/secret next to it.
func tree(t testing.TB) (share string, big []byte) {
	t.Helper()
	base := t.TempDir()
	share = filepath.Join(base, "share")
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(share, "a", "b"), 0o755))
	must(os.MkdirAll(filepath.Join(share, "empty"), 0o755))
	must(os.MkdirAll(filepath.Join(base, "outside"), 0o755))
	must(os.WriteFile(filepath.Join(base, "outside", "secret"), []byte("SECRET"), 0o644))
	must(os.WriteFile(filepath.Join(share, "a", "b", "hello.txt"), []byte("hello, guest\n"), 0o644))
	big = make([]byte, 300<<10+123)
	rand.NewChaCha8([32]byte{1}).Read(big) //nolint:errcheck // never fails
	must(os.WriteFile(filepath.Join(share, "big.bin"), big, 0o444))
	must(os.Symlink("a/b/hello.txt", filepath.Join(share, "link")))
	must(os.Symlink("/etc", filepath.Join(share, "etc")))
	must(os.Symlink("../outside", filepath.Join(share, "up")))
	must(os.Symlink("../../outside/secret", filepath.Join(share, "a", "deep")))
	must(unix.Mkfifo(filepath.Join(share, "fifo"), 0o644))
	return share, big
}

func walk(t *testing.T, f p9.File, names ...string) p9.File {
	t.Helper()
	_, nf, err := f.Walk(names)
	if err != nil {
		t.Fatalf("walk %q: %v", names, err)
	}
	t.Cleanup(func() { nf.Close() })
	return nf
}

func readAll(t *testing.T, f p9.File, chunk int) []byte {
	t.Helper()
	if _, _, err := f.Open(p9.ReadOnly); err != nil {
		t.Fatalf("open: %v", err)
	}
	var out []byte
	buf := make([]byte, chunk)
	for {
		n, err := f.ReadAt(buf, int64(len(out)))
		out = append(out, buf[:n]...)
		if errors.Is(err, io.EOF) || (err == nil && n == 0) {
			return out
		}
		if err != nil {
			t.Fatalf("read at %d: %v", len(out), err)
		}
	}
}

func TestParseShareSpec(t *testing.T) {
	for _, tc := range []struct {
		spec string
		want Share
		bad  bool
	}{
		{spec: "/nix/store:ro-store,ro", want: Share{Path: "/nix/store", Tag: "ro-store", ReadOnly: true}},
		{spec: "/srv/data:data", want: Share{Path: "/srv/data", Tag: "data"}},
		{spec: "/srv/data:data,rw", want: Share{Path: "/srv/data", Tag: "data"}},
		{spec: "/a:b/c:tag,ro", want: Share{Path: "/a:b/c", Tag: "tag", ReadOnly: true}},
		{spec: "/nix/store", bad: true},
		{spec: ":tag", bad: true},
		{spec: "/x:", bad: true},
		{spec: "/x:,ro", bad: true},
		{spec: "/x:tag,rx", bad: true},
		{spec: "/x:t g", bad: true},
		{spec: "/x:" + string(bytes.Repeat([]byte("t"), 256)), bad: true},
	} {
		got, err := ParseShareSpec(tc.spec)
		if tc.bad {
			if err == nil {
				t.Errorf("ParseShareSpec(%q) = %+v, want an error", tc.spec, got)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("ParseShareSpec(%q) = %+v, %v; want %+v", tc.spec, got, err, tc.want)
		}
		if back, err := ParseShareSpec(got.String()); err != nil || back != got {
			t.Errorf("ParseShareSpec(%q) does not round-trip: %+v, %v", got.String(), back, err)
		}
	}
}

func TestNewRefuses(t *testing.T) {
	share, _ := tree(t)
	for name, s := range map[string]Share{
		"read-write":    {Path: share, Tag: "t"},
		"missing":       {Path: filepath.Join(share, "nope"), Tag: "t", ReadOnly: true},
		"not directory": {Path: filepath.Join(share, "big.bin"), Tag: "t", ReadOnly: true},
		"bad tag":       {Path: share, Tag: "a,b", ReadOnly: true},
	} {
		if d, err := New(Config{Share: s}); err == nil {
			d.Close()
			t.Errorf("%s: New(%+v) succeeded", name, s)
		}
	}
}

func TestDeviceIdentity(t *testing.T) {
	share, _ := tree(t)
	d, err := New(Config{Share: Share{Path: share, Tag: "ro-store", ReadOnly: true}})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if d.ID() != virtio.Device9P || d.ID() != 9 {
		t.Errorf("ID = %d", d.ID())
	}
	if !virtio.HasFeature(d.Features(), FeatureMountTag) || !virtio.HasFeature(d.Features(), virtio.FeatureVersion1) {
		t.Errorf("features %#x lack MOUNT_TAG or VERSION_1", d.Features())
	}
	if got := d.QueueMaxSizes(); !slices.Equal(got, []uint16{DefaultQueueSize}) {
		t.Errorf("QueueMaxSizes = %v", got)
	}
	cfg := make([]byte, 12)
	d.ReadConfig(0, cfg)
	want := append([]byte{8, 0}, "ro-store\x00\x00"...)
	if !bytes.Equal(cfg, want) {
		t.Errorf("config space % x, want % x", cfg, want)
	}
	one := make([]byte, 2)
	d.ReadConfig(3, one)
	if string(one) != "o-" {
		t.Errorf("config at 3 = %q", one)
	}
	d.ReadConfig(^uint64(0), one) // no overflow, no panic
	d.WriteConfig(0, []byte{0xff, 0xff})
	d.ReadConfig(0, cfg[:2])
	if cfg[0] != 8 || cfg[1] != 0 {
		t.Errorf("config write changed the tag length: % x", cfg[:2])
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if err := d.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

func TestRoundTrips(t *testing.T) {
	share, big := tree(t)
	h := newHarness(t, share, 128, 64<<20)
	_, root := h.client(64 << 10)

	// Twalk + Tgetattr.
	qids, f, err := root.Walk([]string{"a", "b", "hello.txt"})
	if err != nil {
		t.Fatalf("walk: %v", err)
	}
	defer f.Close()
	if len(qids) != 3 || qids[0].Type != p9.TypeDir || qids[2].Type != p9.TypeRegular {
		t.Errorf("walk qids %v", qids)
	}
	var st unix.Stat_t
	if err := unix.Stat(filepath.Join(share, "a", "b", "hello.txt"), &st); err != nil {
		t.Fatal(err)
	}
	qid, valid, attr, err := f.GetAttr(p9.AttrMaskAll)
	if err != nil {
		t.Fatalf("getattr: %v", err)
	}
	if !valid.Mode || !valid.Size || attr.Size != 13 || !attr.Mode.IsRegular() || attr.Mode.Permissions() != 0o644 || qid.Path != st.Ino {
		t.Errorf("getattr: qid %v valid %v attr %v", qid, valid, attr)
	}
	// Tlopen + Tread.
	if got := readAll(t, f, 4096); string(got) != "hello, guest\n" {
		t.Errorf("read %q", got)
	}
	// A file larger than msize, read in msize chunks and odd ones.
	for _, chunk := range []int{60 << 10, 4096, 777} {
		bf := walk(t, root, "big.bin")
		if got := readAll(t, bf, chunk); !bytes.Equal(got, big) {
			t.Errorf("big.bin read in %d-byte chunks: %d bytes, mismatch", chunk, len(got))
		}
	}
	// Treadlink: the link's text, not its target.
	for name, want := range map[string]string{"link": "a/b/hello.txt", "etc": "/etc", "up": "../outside"} {
		l := walk(t, root, name)
		got, err := l.Readlink()
		if err != nil || got != want {
			t.Errorf("readlink %s = %q, %v; want %q", name, got, err, want)
		}
	}
	// Treaddir, across several calls with a small count.
	d := walk(t, root)
	if _, _, err := d.Open(p9.ReadOnly); err != nil {
		t.Fatalf("open root: %v", err)
	}
	types := map[string]p9.QIDType{}
	var off uint64
	for range 100 {
		ents, err := d.Readdir(off, 64)
		if err != nil {
			t.Fatalf("readdir at %d: %v", off, err)
		}
		if len(ents) == 0 {
			break
		}
		for _, e := range ents {
			types[e.Name] = e.Type
			off = e.Offset
		}
	}
	want := map[string]p9.QIDType{"a": unix.DT_DIR, "empty": unix.DT_DIR, "big.bin": unix.DT_REG, "link": unix.DT_LNK,
		"etc": unix.DT_LNK, "up": unix.DT_LNK, "fifo": unix.DT_FIFO}
	if len(types) != len(want) {
		t.Errorf("readdir entries %v, want %v", types, want)
	}
	for n, ty := range want {
		if types[n] != ty {
			t.Errorf("readdir %s: type %d, want DT %d", n, types[n], ty)
		}
	}
	// Tstatfs.
	if fs, err := root.StatFS(); err != nil || fs.BlockSize == 0 || fs.NameLength == 0 {
		t.Errorf("statfs %+v, %v", fs, err)
	}
	// Concurrent readers: replies find their chains.
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, bf, err := root.Walk([]string{"big.bin"})
			if err != nil {
				t.Error(err)
				return
			}
			defer bf.Close()
			if _, _, err := bf.Open(p9.ReadOnly); err != nil {
				t.Error(err)
				return
			}
			buf := make([]byte, 1000+i)
			for off := int64(i); off < int64(len(big)); off += 40000 {
				n, err := bf.ReadAt(buf, off)
				if err != nil && !errors.Is(err, io.EOF) {
					t.Error(err)
					return
				}
				if !bytes.Equal(buf[:n], big[off:min(off+int64(len(buf)), int64(len(big)))]) {
					t.Errorf("reader %d at %d: wrong data", i, off)
					return
				}
			}
		}()
	}
	wg.Wait()
	h.notBroken()
}

func TestReadOnly(t *testing.T) {
	share, _ := tree(t)
	before := snapshot(t, filepath.Dir(share))
	h := newHarness(t, share, 128, 16<<20)
	_, root := h.client(32 << 10)
	dir := walk(t, root, "a")
	checks := map[string]error{}
	_, _, _, err := dir.Create("new", p9.ReadWrite, 0o644, 0, 0)
	checks["Tlcreate"] = err
	_, err = dir.Mkdir("newdir", 0o755, 0, 0)
	checks["Tmkdir"] = err
	checks["Tunlinkat"] = dir.UnlinkAt("b", 0)
	checks["Tunlinkat dir"] = dir.UnlinkAt("b", unix.AT_REMOVEDIR)
	_, err = dir.Symlink("x", "sym", 0, 0)
	checks["Tsymlink"] = err
	_, err = dir.Mknod("node", p9.ModeNamedPipe|0o644, 0, 0, 0, 0)
	checks["Tmknod"] = err
	checks["Trenameat"] = dir.RenameAt("b", root, "moved")
	f := walk(t, root, "big.bin")
	checks["Tsetattr"] = f.SetAttr(p9.SetAttrMask{Size: true, Permissions: true}, p9.SetAttr{Size: 0, Permissions: 0o777})
	checks["Tlink"] = dir.Link(f, "hard")
	checks["Txattrcreate"] = f.SetXattr("user.x", []byte("y"), 0)
	for _, mode := range []p9.OpenFlags{p9.WriteOnly, p9.ReadWrite, p9.ReadOnly | p9.OpenFlags(unix.O_TRUNC)} {
		g := walk(t, root, "big.bin")
		_, _, err := g.Open(mode)
		checks["Tlopen "+mode.String()] = err
	}
	g := walk(t, root, "big.bin")
	if _, _, err := g.Open(p9.ReadOnly); err != nil {
		t.Fatal(err)
	}
	_, err = g.WriteAt([]byte("overwrite"), 0)
	checks["Twrite"] = err
	for op, err := range checks {
		if err == nil {
			t.Errorf("%s on a read-only share succeeded", op)
		}
	}
	for _, op := range []string{"Tlcreate", "Tmkdir", "Tunlinkat", "Tsetattr", "Tlopen ReadWrite"} {
		if !errors.Is(checks[op], linux.EROFS) {
			t.Errorf("%s: %v, want EROFS", op, checks[op])
		}
	}
	if after := snapshot(t, filepath.Dir(share)); !maps(before, after) {
		t.Errorf("host tree changed:\nbefore %v\nafter  %v", before, after)
	}
	h.notBroken()
}

// snapshot maps every path under dir to its mode, size and content hash.
func snapshot(t *testing.T, dir string) map[string]string {
	t.Helper()
	m := map[string]string{}
	err := filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		v := fi.Mode().String()
		if fi.Mode().IsRegular() {
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			v += string(rune(len(b))) + string(b[:min(len(b), 64)])
		}
		m[p] = v
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func maps(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

func TestEscapes(t *testing.T) {
	share, _ := tree(t)
	h := newHarness(t, share, 128, 16<<20)
	c, root := h.client(32 << 10)
	for _, names := range [][]string{
		{".."}, {"a", ".."}, {"a", "..", ".."}, {"."}, {"a/b"}, {"/etc"}, {""},
		{"etc", "passwd"}, {"up", "secret"}, {"link", "x"}, {"a", "deep", "x"},
	} {
		if _, f, err := root.Walk(names); err == nil {
			f.Close()
			t.Errorf("walk %q succeeded", names)
		}
	}
	// Attach names go through the same walk.
	for _, name := range []string{"..", "/..", "up", "etc/passwd"} {
		if f, err := c.Attach(name); err == nil {
			if data, rerr := tryRead(f); rerr == nil {
				t.Errorf("attach %q: read %q", name, data)
			}
			f.Close()
		}
	}
	// Walking to a link yields the link; it cannot be opened.
	for _, name := range [][]string{{"etc"}, {"up"}, {"a", "deep"}, {"link"}} {
		f := walk(t, root, name...)
		if _, _, err := f.Open(p9.ReadOnly); err == nil {
			t.Errorf("open of symlink %q succeeded", name)
		}
		if _, _, attr, err := f.GetAttr(p9.AttrMaskAll); err != nil || !attr.Mode.IsSymlink() {
			t.Errorf("getattr of symlink %q: %v, %v (want the link itself)", name, attr.Mode, err)
		}
	}
	// A FIFO (like any non-regular file) is refused, and does not block.
	fifo := walk(t, root, "fifo")
	if _, _, err := fifo.Open(p9.ReadOnly); !errors.Is(err, linux.EACCES) {
		t.Errorf("open fifo: %v, want EACCES", err)
	}
	h.notBroken()
}

func tryRead(f p9.File) ([]byte, error) {
	if _, _, err := f.Open(p9.ReadOnly); err != nil {
		return nil, err
	}
	buf := make([]byte, 64)
	n, err := f.ReadAt(buf, 0)
	return buf[:n], err
}

// TestSymlinkRace swaps a directory for a symlink to the outside while the
// guest walks through it: the walk sees the directory or fails, never the
// outside.
func TestSymlinkRace(t *testing.T) {
	share, _ := tree(t)
	base := filepath.Dir(share)
	in := filepath.Join(share, "inside")
	if err := os.Mkdir(in, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(in, "secret"), []byte("inside"), 0o644); err != nil {
		t.Fatal(err)
	}
	// "swap" and "alt" trade places atomically (RENAME_EXCHANGE): one is the
	// directory, the other a symlink to the outside directory.
	swap, alt := filepath.Join(share, "swap"), filepath.Join(share, "alt")
	if err := os.Rename(in, swap); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(base, "outside"), alt); err != nil {
		t.Fatal(err)
	}
	h := newHarness(t, share, 128, 16<<20)
	_, root := h.client(32 << 10)
	var stop atomic.Bool
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for !stop.Load() {
			if err := unix.Renameat2(unix.AT_FDCWD, swap, unix.AT_FDCWD, alt, unix.RENAME_EXCHANGE); err != nil {
				t.Errorf("exchange: %v", err)
				return
			}
		}
	}()
	deadline := time.Now().Add(2 * time.Second)
	var seen, failed int
	for time.Now().Before(deadline) {
		_, f, err := root.Walk([]string{"swap", "secret"})
		if err != nil {
			failed++
			continue
		}
		data, err := tryRead(f)
		f.Close()
		if bytes.Contains(data, []byte("SECRET")) {
			t.Fatalf("read %q from outside the share through a racing symlink", data)
		}
		if err == nil {
			seen++
		}
	}
	stop.Store(true)
	wg.Wait()
	t.Logf("walks through the racing entry: %d read inside, %d refused", seen, failed)
	if seen == 0 || failed == 0 {
		t.Errorf("the race was not exercised: %d reads inside, %d refusals", seen, failed)
	}
	h.notBroken()
}

func TestRawVersionXattrFlush(t *testing.T) {
	share, _ := tree(t)
	h := newHarness(t, share, 8, 16<<20)
	// msize above the cap comes back capped; NOTAG is preserved.
	r := h.roundTrip(tmsg(msgTversion, noTag, u32(1<<20), str("9P2000.L")), 8192)
	if len(r) < 13 || r[4] != msgTversion+1 || binary.LittleEndian.Uint16(r[5:]) != noTag {
		t.Fatalf("Rversion % x", r)
	}
	if m := binary.LittleEndian.Uint32(r[7:]); m != DefaultMaxMessageSize {
		t.Errorf("negotiated msize %d, want %d", m, DefaultMaxMessageSize)
	}
	// Tattach fid 1, then xattr walks get ENODATA / EOPNOTSUPP.
	r = h.roundTrip(tmsg(104, 7, u32(1), u32(^uint32(0)), str(""), str(""), u32(0)), 8192)
	if r[4] != 105 || binary.LittleEndian.Uint16(r[5:]) != 7 {
		t.Fatalf("Rattach % x", r)
	}
	for name, code := range map[string]uint32{"security.capability": errnoENODATA, "": errnoEOPNOTSUPP} {
		r = h.roundTrip(tmsg(msgTxattrwk, 9, u32(1), u32(2), str(name)), 8192)
		if len(r) != rlerrorSize || r[4] != msgRlerror || binary.LittleEndian.Uint16(r[5:]) != 9 || binary.LittleEndian.Uint32(r[7:]) != code {
			t.Errorf("Txattrwalk %q: % x, want Rlerror %d", name, r, code)
		}
	}
	// Duplicate guest tags in flight: each chain gets its own reply with
	// the guest's tag (the server never sees the duplicate).
	p1 := h.q.AddChain(bufR(tmsg(24, 3, u32(1), u64(0x7ff))), bufW(4096)) // Tgetattr
	p2 := h.q.AddChain(bufR(tmsg(24, 3, u32(1), u64(0x7ff))), bufW(4096))
	h.q.KickDevice()
	got := map[uint32]bool{}
	for range 2 {
		e := h.q.WaitUsed(5 * time.Second)
		got[e.ID] = true
		b := h.g.Bytes(map[uint32]uint64{uint32(p1.Head): p1.Addr[1], uint32(p2.Head): p2.Addr[1]}[e.ID], uint64(e.Len))
		if b[4] != 25 || binary.LittleEndian.Uint16(b[5:]) != 3 {
			t.Errorf("reply % x", b[:7])
		}
	}
	if !got[uint32(p1.Head)] || !got[uint32(p2.Head)] {
		t.Errorf("used %v, want heads %d and %d", got, p1.Head, p2.Head)
	}
	// Tflush of a tag not in flight answers at once.
	r = h.roundTrip(tmsg(msgTflush, 4, u16(77)), 64)
	if r[4] != msgTflush+1 || binary.LittleEndian.Uint16(r[5:]) != 4 {
		t.Errorf("Rflush % x", r)
	}
	// An unknown message type gets an Rlerror with its tag.
	r = h.roundTrip(tmsg(250, 5), 64)
	if r[4] != msgRlerror || binary.LittleEndian.Uint16(r[5:]) != 5 {
		t.Errorf("unknown type: % x", r)
	}
	h.notBroken()
}

func TestMetrics(t *testing.T) {
	share, _ := tree(t)
	h := newHarness(t, share, 8, 16<<20)
	reply := func(msg []byte, typ uint8) []byte {
		t.Helper()
		r := h.roundTrip(msg, 8192)
		if len(r) < hdrSize || r[4] != typ {
			t.Fatalf("reply % x, want type %d", r, typ)
		}
		return r
	}
	reply(tmsg(msgTversion, noTag, u32(8192), str("9P2000.L")), msgTversion+1)
	reply(tmsg(msgTattach, 1, u32(1), u32(^uint32(0)), str(""), str(""), u32(0)), msgTattach+1) // fid 1
	r := reply(tmsg(msgTwalk, 2, u32(1), u32(2), u16(1), str("missing")), msgRlerror)
	if code := binary.LittleEndian.Uint32(r[7:]); code != uint32(unix.ENOENT) {
		t.Errorf("walk to a missing name: errno %d, want ENOENT", code)
	}
	reply(tmsg(msgTwalk, 3, u32(1), u32(3), u16(3), str("a"), str("b"), str("hello.txt")), msgTwalk+1)
	reply(tmsg(msgTlopen, 4, u32(3), u32(0)), msgTlopen+1) // O_RDONLY
	r = reply(tmsg(msgTread, 5, u32(3), u64(0), u32(4096)), msgRread)
	if n := binary.LittleEndian.Uint32(r[7:]); n != uint32(len("hello, guest\n")) || len(r) != rreadHdr+int(n) {
		t.Fatalf("Rread of %d bytes, count %d", len(r), n)
	}
	reply(tmsg(msgTxattrwk, 6, u32(3), u32(4), str("security.capability")), msgRlerror) // answered by the session
	h.notBroken()

	// Reset waits for the session's goroutines: every count is final.
	h.d.Reset()
	got := h.d.Metrics().Snapshot()
	want := MetricsSnapshot{Requests: 7, Errors: 2, ReadBytes: uint64(len("hello, guest\n")), Kicks: got.Kicks, Interrupts: got.Interrupts}
	if got != want {
		t.Errorf("metrics %+v, want %+v", got, want)
	}
	// Each reply was awaited before the next request was posted, so the
	// driver's kicks can coalesce only with the worker's first drain, and
	// the harness leaves used_event at 0: the first reply interrupts.
	if got.Kicks < 1 || got.Kicks > 7 || got.Interrupts < 1 || got.Interrupts > 7 {
		t.Errorf("kicks %d, interrupts %d: want 1 to 7 each", got.Kicks, got.Interrupts)
	}
}

func bufR(b []byte) virtiotestBuf { return virtiotestBuf{Data: b} }
func bufW(n int) virtiotestBuf    { return virtiotestBuf{Len: n, Write: true} }

func TestMalformed(t *testing.T) {
	share, _ := tree(t)
	version := tmsg(msgTversion, noTag, u32(8192), str("9P2000.L"))
	for _, tc := range []struct {
		name string
		post func(h *harness)
	}{
		{"short header", func(h *harness) { h.q.AddChain(bufR([]byte{7, 0, 0}), bufW(64)) }},
		{"size beyond chain", func(h *harness) {
			m := tmsg(msgTflush, 1, u16(2))
			binary.LittleEndian.PutUint32(m, 100)
			h.q.AddChain(bufR(m), bufW(64))
		}},
		{"size below header", func(h *harness) { h.q.AddChain(bufR([]byte{3, 0, 0, 0, 108, 1, 0}), bufW(64)) }},
		{"no room for a reply", func(h *harness) { h.q.AddChain(bufR(tmsg(msgTflush, 1, u16(2))), bufW(8)) }},
		{"writable only", func(h *harness) { h.q.AddChain(bufW(4096)) }},
		{"beyond msize", func(h *harness) {
			h.roundTrip(version, 4096)
			h.q.AddChain(bufR(tmsg(118, 1, u32(1), u64(0), u32(1), make([]byte, 9000))), bufW(64))
		}},
		{"body does not decode", func(h *harness) {
			// Twalk with a name length running past the end.
			h.q.AddChain(bufR(tmsg(110, 1, u32(1), u32(2), u16(1), u16(500))), bufW(64))
		}},
		{"reply larger than chain", func(h *harness) {
			h.roundTrip(version, 4096)
			h.roundTrip(tmsg(104, 2, u32(1), u32(^uint32(0)), str(""), str(""), u32(0)), 4096)
			// Tgetattr's reply is 160 bytes; offer 64.
			h.q.AddChain(bufR(tmsg(24, 3, u32(1), u64(0x7ff))), bufW(64))
		}},
		{"descriptor out of range", func(h *harness) {
			h.q.WriteDesc(0, 0x10_0000, 16, virtiotestNext, 200)
			h.q.Post(0)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, share, 8, 1<<20)
			fds := openFDs(t)
			tc.post(h)
			h.q.KickDevice()
			h.expectBroken(queue.ErrMalformed)
			m := h.d.Metrics()
			if n := m.MalformedChains.Load(); n != 1 {
				t.Errorf("%d malformed chains counted, want 1", n)
			}
			// These bad chains reached the server: in flight until the reset.
			admitted := map[string]int64{"body does not decode": 1, "reply larger than chain": 1}
			if n, want := m.InFlight.Load(), admitted[tc.name]; n != want {
				t.Errorf("%d requests in flight on the broken device, want %d", n, want)
			}
			h.d.Reset()
			if n := m.InFlight.Load(); n != 0 {
				t.Errorf("%d requests in flight after reset, want 0", n)
			}
			if n := openFDs(t); n > fds {
				t.Errorf("%d descriptors open after reset, %d before", n, fds)
			}
			// The device comes back after a reset.
			h2q := h.g.NewQueue(0, 8)
			h.q = h2q
			h.activate()
			r := h.roundTrip(version, 4096)
			if r[4] != msgTversion+1 {
				t.Errorf("after reset: % x", r)
			}
		})
	}
}

func TestResetClosesFids(t *testing.T) {
	share, _ := tree(t)
	h := newHarness(t, share, 128, 16<<20)
	before := openFDs(t)
	c, root := h.client(32 << 10)
	var files []p9.File
	for range 20 {
		_, f, err := root.Walk([]string{"big.bin"})
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := f.Open(p9.ReadOnly); err != nil {
			t.Fatal(err)
		}
		files = append(files, f)
	}
	if n := openFDs(t); n < before+40 {
		t.Fatalf("%d descriptors open with 20 open fids, %d before", n, before)
	}
	h.d.Reset()
	c.Close()
	if n := openFDs(t); n > before {
		t.Errorf("%d descriptors open after reset, %d before", n, before)
	}
	_ = files
}

func TestActivateChecks(t *testing.T) {
	share, _ := tree(t)
	h := newHarness(t, share, 8, 1<<20)
	if err := h.d.Activate(virtio.Activation{Features: h.d.Features(), Memory: h.g.Mem, Queues: []virtio.QueueConfig{h.q.Config()}}); !errors.Is(err, ErrActive) {
		t.Errorf("second Activate: %v, want ErrActive", err)
	}
	h.d.Reset()
	q := h.g.NewQueue(0, 8)
	for name, a := range map[string]virtio.Activation{
		"no VERSION_1":   {Features: 1 << FeatureMountTag, Memory: h.g.Mem, Queues: []virtio.QueueConfig{q.Config()}},
		"extra features": {Features: h.d.Features() | 1<<40, Memory: h.g.Mem, Queues: []virtio.QueueConfig{q.Config()}},
		"two queues":     {Features: h.d.Features(), Memory: h.g.Mem, Queues: []virtio.QueueConfig{q.Config(), q.Config()}},
		"queue too big":  {Features: h.d.Features(), Memory: h.g.Mem, Queues: []virtio.QueueConfig{{Size: 256, Kick: q.Kick, Call: q.Call}}},
	} {
		if err := h.d.Activate(a); err == nil {
			h.d.Reset()
			t.Errorf("%s: Activate succeeded", name)
		}
	}
}
