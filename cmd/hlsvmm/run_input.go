package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"

	"golang.org/x/sys/unix"
)

// readInput maps a whole input file (kernel, initrd) read-only and says
// clearly what is wrong with it. The mapping is private to hlsvmm and its
// pages come from the page cache: the file is never copied onto the Go heap,
// whose high-water mark would otherwise stay in hlsvmm's RSS for the VM's
// life. Release it with releaseInput once the guest is loaded.
func readInput(flag, path string) ([]byte, error) {
	f, err := os.Open(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil, exitWith(1, fmt.Errorf("%s %s: no such file", flag, path))
	case err != nil:
		return nil, exitWith(1, fmt.Errorf("%s: %w", flag, err))
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, exitWith(1, fmt.Errorf("%s: %w", flag, err))
	}
	switch {
	case st.IsDir():
		return nil, exitWith(1, fmt.Errorf("%s %s: is a directory", flag, path))
	case !st.Mode().IsRegular():
		return nil, exitWith(1, fmt.Errorf("%s %s: not a regular file", flag, path))
	case st.Size() == 0:
		return nil, exitWith(1, fmt.Errorf("%s %s: empty file", flag, path))
	case st.Size() > maxInputSize:
		return nil, exitWith(1, fmt.Errorf("%s %s: %d MiB, larger than any guest memory hlsvmm accepts", flag, path, st.Size()>>20))
	}
	b, err := unix.Mmap(int(f.Fd()), 0, int(st.Size()), unix.PROT_READ, unix.MAP_PRIVATE)
	if err != nil {
		return nil, exitWith(1, fmt.Errorf("%s: map %s: %w", flag, path, err))
	}
	return b, nil
}

// maxInputSize bounds an input file: nothing larger fits in --mem's maximum.
const maxInputSize = maxMemMiB << 20

// releaseInput unmaps what readInput mapped; nil is fine.
func releaseInput(b []byte) {
	if len(b) > 0 {
		unix.Munmap(b[:cap(b)])
	}
}
