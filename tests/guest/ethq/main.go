// Command ethq is the test guest's `ethtool -l/-L`: it reads and sets a
// network device's channel (queue pair) counts through SIOCETHTOOL, so the
// busybox guest can change virtio-net's active queue pairs.
//
//	ethq IFACE          print "combined CUR max MAX"
//	ethq IFACE N        set the combined channels to N
package main

import (
	"fmt"
	"os"
	"strconv"
	"unsafe"

	"golang.org/x/sys/unix"
)

// struct ethtool_channels (linux/ethtool.h).
type channels struct {
	cmd                                         uint32
	maxRX, maxTX, maxOther, maxCombined         uint32
	rxCount, txCount, otherCount, combinedCount uint32
}

const (
	ethtoolGChannels = 0x3c // ETHTOOL_GCHANNELS
	ethtoolSChannels = 0x3d // ETHTOOL_SCHANNELS
)

// ifreq with ifr_data, padded to the kernel's 40 bytes.
type ifreq struct {
	name [unix.IFNAMSIZ]byte
	data uintptr
	_    [16]byte
}

func ethtool(iface string, c *channels) error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("socket: %w", err)
	}
	defer unix.Close(fd)
	var r ifreq
	copy(r.name[:unix.IFNAMSIZ-1], iface)
	r.data = uintptr(unsafe.Pointer(c))
	if _, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.SIOCETHTOOL, uintptr(unsafe.Pointer(&r))); e != 0 {
		return e
	}
	return nil
}

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "ethq:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	if len(args) < 1 || len(args) > 2 {
		return fmt.Errorf("usage: ethq IFACE [COMBINED]")
	}
	c := channels{cmd: ethtoolGChannels}
	if err := ethtool(args[0], &c); err != nil {
		return fmt.Errorf("get channels of %s: %w", args[0], err)
	}
	if len(args) == 1 {
		fmt.Printf("combined %d max %d\n", c.combinedCount, c.maxCombined)
		return nil
	}
	n, err := strconv.ParseUint(args[1], 10, 32)
	if err != nil || n == 0 {
		return fmt.Errorf("channel count %q: want a positive number", args[1])
	}
	c.cmd, c.combinedCount = ethtoolSChannels, uint32(n)
	if err := ethtool(args[0], &c); err != nil {
		return fmt.Errorf("set %s to %d combined channels: %w", args[0], n, err)
	}
	return nil
}
