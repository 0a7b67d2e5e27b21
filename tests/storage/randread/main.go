// Command randread measures a file's or block device's read speed inside
// the test guest (busybox has no fio): 4 KiB random reads (IOPS) or one
// sequential pass (MiB/s). Static, stdlib only; built into the storage
// test system.
//
//	randread [-direct] [-n READS] [-bs BYTES] [-seed N] FILE   # random reads
//	randread -seq [-direct] [-bs BYTES] FILE                     # sequential
//
// It prints one line of KEY=VALUE figures, e.g.
//
//	randread: mode=random file=/dev/vda bs=4096 reads=2000 bytes=8192000 secs=1.234 iops=1620.7 mibs=6.33 direct=1
//
// -direct asks for O_DIRECT and falls back to buffered reads (direct=0 in
// the output) where the file system refuses it.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"syscall"
	"time"
	"unsafe"
)

func main() {
	seq := flag.Bool("seq", false, "one sequential pass instead of random reads")
	direct := flag.Bool("direct", false, "O_DIRECT (falls back to buffered where refused)")
	n := flag.Int("n", 2000, "random reads")
	bs := flag.Int("bs", 4096, "bytes per read (a multiple of 512 with -direct)")
	seed := flag.Uint64("seed", 1, "random seed")
	flag.Parse()
	if flag.NArg() != 1 || *bs <= 0 || *n <= 0 {
		fmt.Fprintln(os.Stderr, "usage: randread [-seq] [-direct] [-n READS] [-bs BYTES] [-seed N] FILE")
		os.Exit(2)
	}
	if err := run(flag.Arg(0), *seq, *direct, *n, *bs, *seed); err != nil {
		fmt.Fprintln(os.Stderr, "randread:", err)
		os.Exit(1)
	}
}

func run(path string, seq, direct bool, n, bs int, seed uint64) error {
	f, isDirect, err := open(path, direct)
	if err != nil {
		return err
	}
	defer f.Close()
	size, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		return fmt.Errorf("size of %s: %w", path, err)
	}
	if size < int64(bs) {
		return fmt.Errorf("%s: %d bytes, smaller than one %d-byte read", path, size, bs)
	}
	buf := aligned(bs, 4096)
	var total int64
	reads := 0
	start := time.Now()
	if seq {
		for off := int64(0); off < size; off += int64(bs) {
			m, err := f.ReadAt(buf, off)
			total += int64(m)
			reads++
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				return fmt.Errorf("read %s at %d: %w", path, off, err)
			}
		}
	} else {
		r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
		blocks := size / int64(bs)
		for range n {
			off := r.Int64N(blocks) * int64(bs)
			m, err := f.ReadAt(buf, off)
			if err != nil && !errors.Is(err, io.EOF) {
				return fmt.Errorf("read %s at %d: %w", path, off, err)
			}
			total += int64(m)
			reads++
		}
	}
	secs := time.Since(start).Seconds()
	mode := "random"
	if seq {
		mode = "seq"
	}
	d := 0
	if isDirect {
		d = 1
	}
	fmt.Printf("randread: mode=%s file=%s bs=%d reads=%d bytes=%d secs=%.3f iops=%.1f mibs=%.2f direct=%d\n",
		mode, path, bs, reads, total, secs, float64(reads)/secs, float64(total)/secs/(1<<20), d)
	return nil
}

// open opens path read-only, with O_DIRECT if asked and allowed.
func open(path string, direct bool) (*os.File, bool, error) {
	if direct {
		f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_DIRECT, 0)
		if err == nil {
			return f, true, nil
		}
		if !errors.Is(err, syscall.EINVAL) {
			return nil, false, err
		}
	}
	f, err := os.Open(path)
	return f, false, err
}

// aligned returns n bytes starting at a multiple of align (O_DIRECT needs it).
func aligned(n, align int) []byte {
	b := make([]byte, n+align)
	off := int(uintptr(unsafe.Pointer(&b[0])) & uintptr(align-1))
	if off != 0 {
		off = align - off
	}
	return b[off : off+n]
}
