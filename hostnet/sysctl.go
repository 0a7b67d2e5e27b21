package hostnet

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// A sysctl key is its path below /proc/sys with '/' separators, because
// interface names may contain dots ("net/ipv4/conf/eth0.100/forwarding").
const (
	sysctlIPForward      = "net/ipv4/ip_forward"
	sysctlBridgeNFCallV4 = "net/bridge/bridge-nf-call-iptables"
)

func sysctlRouteLocalnet(dev string) string {
	return "net/ipv4/conf/" + dev + "/route_localnet"
}

// sysctlName is the key as `sysctl` prints it (dots; a dot inside an
// interface name becomes '/').
func sysctlName(key string) string {
	parts := strings.Split(key, "/")
	for i, p := range parts {
		parts[i] = strings.ReplaceAll(p, ".", "/")
	}
	return strings.Join(parts, ".")
}

// readSysctl reads /proc/sys/<key> in the host's namespace (/proc/sys/net is
// per namespace, resolved by the opening thread's namespace).
func (h *Host) readSysctl(key string) (string, error) {
	var v string
	err := h.Do(func() error {
		b, err := os.ReadFile(filepath.Join("/proc/sys", key))
		if err != nil {
			return err
		}
		v = strings.TrimSpace(string(b))
		return nil
	})
	if err != nil {
		return "", fmt.Errorf("read sysctl %s: %w", sysctlName(key), err)
	}
	return v, nil
}

// writeSysctl writes value to /proc/sys/<key> in the host's namespace.
func (h *Host) writeSysctl(key, value string) error {
	err := h.Do(func() error {
		f, err := os.OpenFile(filepath.Join("/proc/sys", key), os.O_WRONLY, 0)
		if err != nil {
			return err
		}
		_, werr := f.WriteString(value + "\n")
		cerr := f.Close()
		if werr != nil {
			return werr
		}
		return cerr
	})
	if err != nil {
		return classify(fmt.Sprintf("set sysctl %s=%s", sysctlName(key), value), err)
	}
	return nil
}
