package ninep

import (
	"errors"
	"fmt"
	"io"
	"strconv"
	"sync"

	"github.com/hugelgupf/p9/fsimpl/templatefs"
	"github.com/hugelgupf/p9/linux"
	"github.com/hugelgupf/p9/p9"
	"golang.org/x/sys/unix"
)

// The share is served from file descriptors only: every file the guest
// holds a fid for is an O_PATH descriptor, every lookup is one openat2 of one
// name relative to the directory descriptor the guest walked from, with
// RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS (which implies RESOLVE_NO_MAGICLINKS)
// and O_NOFOLLOW. No host path string is ever built from guest names, ".."
// and names with "/" are refused, and a symlink is never followed on the
// host: walking to a link yields the link itself, whose text the guest reads
// with Treadlink and resolves in its own mount. Open reopens the inode the
// walk already holds (through /proc/self/fd, never a name lookup), so a
// rename or symlink swap between Twalk and Tlopen cannot redirect it, and
// only regular files and directories can be opened: a device node in the
// share would otherwise hand the guest a host device.
//
// What fds cannot prevent: a host process moving a directory the guest has
// a fid for out of the share; the guest then reaches it at its new place.
// The guest itself cannot rename anything in a read-only share.

// resolveFlags are used for every lookup. RESOLVE_NO_XDEV keeps the share
// on one file system, so inode numbers are unique QID paths; a mount point
// inside the share is not entered (EXDEV).
const resolveFlags = unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS | unix.RESOLVE_NO_XDEV

// attacher hands out the share's root.
type attacher struct {
	root int // O_PATH directory; owned by the Device
}

// Attach returns a new fid's file for the root of the share.
func (a *attacher) Attach() (p9.File, error) {
	fd, err := unix.Openat2(a.root, ".", &unix.OpenHow{
		Flags:   unix.O_PATH | unix.O_DIRECTORY | unix.O_CLOEXEC,
		Resolve: resolveFlags,
	})
	if err != nil {
		return nil, errno(err)
	}
	return &file{fd: fd}, nil
}

// file is one node of a read-only share.
type file struct {
	p9.DefaultWalkGetAttr
	templatefs.NotLockable
	templatefs.NoopRenamed

	fd int // O_PATH descriptor, owned; -1 once closed

	mu     sync.Mutex
	opened int // descriptor from Open, owned; -1 or 0 before Open
	isOpen bool
	dir    *dirList // entries read by Readdir, for directories
}

// errno turns a host error into the errno the guest sees.
func errno(err error) error {
	var e unix.Errno
	if errors.As(err, &e) {
		return linux.Errno(e)
	}
	return linux.EIO
}

func (f *file) stat() (unix.Stat_t, error) {
	var st unix.Stat_t
	if err := unix.Fstatat(f.fd, "", &st, unix.AT_EMPTY_PATH|unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return st, errno(err)
	}
	return st, nil
}

func qidOf(st *unix.Stat_t) p9.QID {
	return p9.QID{Type: p9.FileMode(st.Mode).QIDType(), Path: st.Ino}
}

// validName accepts exactly one path component.
func validName(name string) bool {
	if name == "" || name == "." || name == ".." || len(name) > 255 {
		return false
	}
	for i := 0; i < len(name); i++ {
		if name[i] == '/' || name[i] == 0 {
			return false
		}
	}
	return true
}

// lookup opens name in the directory fd as an O_PATH descriptor of the
// entry itself (a symlink is not followed).
func lookup(dir int, name string) (int, error) {
	if !validName(name) {
		return -1, linux.EINVAL
	}
	fd, err := unix.Openat2(dir, name, &unix.OpenHow{
		Flags:   unix.O_PATH | unix.O_NOFOLLOW | unix.O_CLOEXEC,
		Resolve: resolveFlags,
	})
	if err != nil {
		return -1, errno(err)
	}
	return fd, nil
}

// Walk walks names one component at a time, each from the descriptor of
// the previous one.
func (f *file) Walk(names []string) ([]p9.QID, p9.File, error) {
	if len(names) == 0 {
		fd, err := unix.FcntlInt(uintptr(f.fd), unix.F_DUPFD_CLOEXEC, 0)
		if err != nil {
			return nil, nil, errno(err)
		}
		return nil, &file{fd: fd}, nil
	}
	qids := make([]p9.QID, 0, len(names))
	cur := f.fd
	for i, name := range names {
		fd, err := lookup(cur, name)
		if cur != f.fd {
			unix.Close(cur)
		}
		if err != nil {
			return nil, nil, err
		}
		cur = fd
		var st unix.Stat_t
		if err := unix.Fstatat(fd, "", &st, unix.AT_EMPTY_PATH|unix.AT_SYMLINK_NOFOLLOW); err != nil {
			unix.Close(fd)
			return nil, nil, errno(err)
		}
		if i < len(names)-1 && st.Mode&unix.S_IFMT != unix.S_IFDIR {
			unix.Close(fd)
			return nil, nil, linux.ENOTDIR
		}
		qids = append(qids, qidOf(&st))
	}
	return qids, &file{fd: cur}, nil
}

// GetAttr reports the node's attributes from fstat.
func (f *file) GetAttr(req p9.AttrMask) (p9.QID, p9.AttrMask, p9.Attr, error) {
	st, err := f.stat()
	if err != nil {
		return p9.QID{}, p9.AttrMask{}, p9.Attr{}, err
	}
	attr := p9.Attr{
		Mode:             p9.FileMode(st.Mode),
		UID:              p9.UID(st.Uid),
		GID:              p9.GID(st.Gid),
		NLink:            p9.NLink(st.Nlink),
		RDev:             p9.Dev(st.Rdev),
		Size:             uint64(st.Size),
		BlockSize:        uint64(st.Blksize),
		Blocks:           uint64(st.Blocks),
		ATimeSeconds:     uint64(st.Atim.Sec),
		ATimeNanoSeconds: uint64(st.Atim.Nsec),
		MTimeSeconds:     uint64(st.Mtim.Sec),
		MTimeNanoSeconds: uint64(st.Mtim.Nsec),
		CTimeSeconds:     uint64(st.Ctim.Sec),
		CTimeNanoSeconds: uint64(st.Ctim.Nsec),
	}
	valid := p9.AttrMask{Mode: true, NLink: true, UID: true, GID: true, RDev: true, ATime: true,
		MTime: true, CTime: true, INo: true, Size: true, Blocks: true}
	return qidOf(&st), valid, attr, nil
}

// StatFS reports the host file system's statistics.
func (f *file) StatFS() (p9.FSStat, error) {
	var s unix.Statfs_t
	if err := unix.Fstatfs(f.fd, &s); err != nil {
		return p9.FSStat{}, errno(err)
	}
	return p9.FSStat{
		Type: uint32(s.Type), BlockSize: uint32(s.Bsize), Blocks: s.Blocks, BlocksFree: s.Bfree,
		BlocksAvailable: s.Bavail, Files: s.Files, FilesFree: s.Ffree,
		FSID: uint64(uint32(s.Fsid.Val[0])) | uint64(uint32(s.Fsid.Val[1]))<<32, NameLength: uint32(s.Namelen),
	}, nil
}

// Open opens the node read-only. Only regular files and directories open;
// any write access is EROFS.
func (f *file) Open(mode p9.OpenFlags) (p9.QID, uint32, error) {
	if mode.Mode() != p9.ReadOnly || mode&p9.OpenFlags(unix.O_TRUNC|unix.O_CREAT|unix.O_APPEND) != 0 {
		return p9.QID{}, 0, linux.EROFS
	}
	st, err := f.stat()
	if err != nil {
		return p9.QID{}, 0, err
	}
	flags := unix.O_RDONLY | unix.O_CLOEXEC | unix.O_NOCTTY | unix.O_NONBLOCK
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFREG:
	case unix.S_IFDIR:
		flags |= unix.O_DIRECTORY
	default:
		return p9.QID{}, 0, linux.EACCES
	}
	// Reopen the very inode we hold: no name is looked up again.
	fd, err := unix.Open("/proc/self/fd/"+strconv.Itoa(f.fd), flags, 0)
	if err != nil {
		return p9.QID{}, 0, errno(err)
	}
	var st2 unix.Stat_t
	if err := unix.Fstat(fd, &st2); err != nil || st2.Dev != st.Dev || st2.Ino != st.Ino {
		unix.Close(fd)
		return p9.QID{}, 0, linux.ESTALE
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.isOpen {
		unix.Close(fd)
		return p9.QID{}, 0, linux.EBUSY
	}
	f.opened, f.isOpen = fd, true
	return qidOf(&st), 0, nil
}

func (f *file) openFD() (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.isOpen {
		return -1, linux.EBADF
	}
	return f.opened, nil
}

// ReadAt reads from the opened file.
func (f *file) ReadAt(p []byte, offset int64) (int, error) {
	fd, err := f.openFD()
	if err != nil {
		return 0, err
	}
	if offset < 0 {
		return 0, linux.EINVAL
	}
	n, err := unix.Pread(fd, p, offset)
	if err != nil {
		return 0, errno(err)
	}
	if n == 0 && len(p) > 0 {
		return 0, io.EOF
	}
	return n, nil
}

// Readlink returns the link's text; the link is not followed.
func (f *file) Readlink() (string, error) {
	buf := make([]byte, unix.PathMax)
	n, err := unix.Readlinkat(f.fd, "", buf)
	if err != nil {
		return "", errno(err)
	}
	return string(buf[:n]), nil
}

// Close releases the node's descriptors. It is idempotent.
func (f *file) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.isOpen {
		unix.Close(f.opened)
		f.isOpen = false
	}
	if f.fd >= 0 {
		unix.Close(f.fd)
		f.fd = -1
	}
	f.dir = nil
	return nil
}

// Extended attributes: none. (Txattrwalk never reaches here: the device
// answers it itself, see session.go.)
func (f *file) GetXattr(string) ([]byte, error)              { return nil, linux.ENODATA }
func (f *file) ListXattrs() ([]string, error)                { return nil, nil }
func (f *file) SetXattr(string, []byte, p9.XattrFlags) error { return linux.EROFS }
func (f *file) RemoveXattr(string) error                     { return linux.EROFS }
func (f *file) FSync() error                                 { return nil }
func (f *file) WriteAt([]byte, int64) (int, error)           { return 0, linux.EROFS }
func (f *file) SetAttr(p9.SetAttrMask, p9.SetAttr) error     { return linux.EROFS }
func (f *file) Link(p9.File, string) error                   { return linux.EROFS }
func (f *file) Rename(p9.File, string) error                 { return linux.EROFS }
func (f *file) RenameAt(string, p9.File, string) error       { return linux.EROFS }
func (f *file) UnlinkAt(string, uint32) error                { return linux.EROFS }
func (f *file) Mkdir(string, p9.FileMode, p9.UID, p9.GID) (p9.QID, error) {
	return p9.QID{}, linux.EROFS
}
func (f *file) Symlink(string, string, p9.UID, p9.GID) (p9.QID, error) {
	return p9.QID{}, linux.EROFS
}
func (f *file) Mknod(string, p9.FileMode, uint32, uint32, p9.UID, p9.GID) (p9.QID, error) {
	return p9.QID{}, linux.EROFS
}
func (f *file) Create(string, p9.OpenFlags, p9.FileMode, p9.UID, p9.GID) (p9.File, p9.QID, uint32, error) {
	return nil, p9.QID{}, 0, linux.EROFS
}

// dirList is a directory's entries as read once at offset 0; 9P offsets
// are entry indexes plus one.
type dirList struct {
	ents []p9.Dirent
}

// Readdir returns entries from offset on. Offset 0 rereads the directory
// (rewinddir), later offsets continue from that listing, so a huge
// directory is read from the host once per pass, not once per call.
func (f *file) Readdir(offset uint64, count uint32) (p9.Dirents, error) {
	fd, err := f.openFD()
	if err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if offset == 0 || f.dir == nil {
		d, err := readDir(fd)
		if err != nil {
			return nil, err
		}
		f.dir = d
	}
	if offset >= uint64(len(f.dir.ents)) {
		return nil, nil
	}
	// count is in bytes; every entry takes at least 24 bytes on the wire,
	// the server trims the rest.
	end := min(uint64(len(f.dir.ents)), offset+uint64(count)/24+1)
	return append(p9.Dirents(nil), f.dir.ents[offset:end]...), nil
}

func readDir(fd int) (*dirList, error) {
	if _, err := unix.Seek(fd, 0, io.SeekStart); err != nil {
		return nil, errno(err)
	}
	d := &dirList{}
	buf := make([]byte, 64<<10)
	for {
		n, err := unix.Getdents(fd, buf)
		if err != nil {
			return nil, errno(err)
		}
		if n <= 0 {
			return d, nil
		}
		if err := parseDirents(buf[:n], d); err != nil {
			return nil, err
		}
	}
}

// parseDirents decodes struct linux_dirent64 records.
func parseDirents(b []byte, d *dirList) error {
	for len(b) > 0 {
		if len(b) < 19 {
			return fmt.Errorf("short dirent: %w", linux.EIO)
		}
		ino := le64(b[0:])
		reclen := int(b[16]) | int(b[17])<<8
		typ := b[18]
		if reclen < 19 || reclen > len(b) {
			return fmt.Errorf("bad dirent length %d: %w", reclen, linux.EIO)
		}
		name := b[19:reclen]
		for i, c := range name {
			if c == 0 {
				name = name[:i]
				break
			}
		}
		s := string(name)
		b = b[reclen:]
		if s == "." || s == ".." {
			continue
		}
		qt := p9.TypeRegular
		switch typ {
		case unix.DT_DIR:
			qt = p9.TypeDir
		case unix.DT_LNK:
			qt = p9.TypeSymlink
		}
		// Linux's v9fs hands the entry's type byte to dir_emit as d_type,
		// so it carries the DT_* value (as QEMU sends it), not a QID type.
		d.ents = append(d.ents, p9.Dirent{
			QID:    p9.QID{Type: qt, Path: ino},
			Offset: uint64(len(d.ents) + 1),
			Type:   p9.QIDType(typ),
			Name:   s,
		})
	}
	return nil
}

func le64(b []byte) uint64 {
	return uint64(b[0]) | uint64(b[1])<<8 | uint64(b[2])<<16 | uint64(b[3])<<24 |
		uint64(b[4])<<32 | uint64(b[5])<<40 | uint64(b[6])<<48 | uint64(b[7])<<56
}
