package console

import (
	"os"

	"golang.org/x/sys/unix"
)

// fcntlFlags reads f's status flags without f.Fd(), which would make the
// descriptor blocking as a side effect.
func fcntlFlags(f *os.File) (int, error) {
	rc, err := f.SyscallConn()
	if err != nil {
		return 0, err
	}
	var flags int
	var ferr error
	if err := rc.Control(func(fd uintptr) { flags, ferr = unix.FcntlInt(fd, unix.F_GETFL, 0) }); err != nil {
		return 0, err
	}
	return flags, ferr
}
