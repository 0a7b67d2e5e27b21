package main

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/hlsvmm/hlsvmm/hostnet"
)

func TestHostNetCmdline(t *testing.T) {
	p := &hostNetPlan{cfg: hostnet.DefaultConfig(), ipArg: true}
	if got, want := p.cmdline("console=ttyS0"), "console=ttyS0 ip=10.177.0.10::10.177.0.1:255.255.255.0::eth0:off"; got != want {
		t.Errorf("cmdline = %q, want %q", got, want)
	}
	for _, s := range []string{"console=ttyS0 ip=1.2.3.4::1.2.3.1:255.0.0.0::eth0:off", "ip=dhcp quiet"} {
		if got := p.cmdline(s); got != s {
			t.Errorf("cmdline(%q) = %q: a given ip= must be kept", s, got)
		}
	}
	p.cfg.VM = netip.MustParseAddr("10.177.0.11")
	p.cfg.Subnet = netip.MustParsePrefix("10.177.0.0/16")
	if got := p.cmdline(""); got != "ip=10.177.0.11::10.177.0.1:255.255.0.0::eth0:off" {
		t.Errorf("cmdline = %q", got)
	}
	p.ipArg = false
	if got := p.cmdline("quiet"); got != "quiet" {
		t.Errorf("macvtap without --vm-ip: cmdline = %q", got)
	}
	var none *hostNetPlan
	if got := none.cmdline("quiet"); got != "quiet" {
		t.Errorf("--net none: cmdline = %q", got)
	}
}

func TestVMMAC(t *testing.T) {
	if got := vmMAC(netip.MustParseAddr("10.177.0.11")); got != [6]byte{2, 0, 10, 177, 0, 11} {
		t.Errorf("vmMAC = %x", got)
	}
}

// TestRunNetBadInput: --net and the network flags are checked before
// anything is read or opened, with one line and status 2.
func TestRunNetBadInput(t *testing.T) {
	good := writeFile(t, "bzImage", tinyBzImage(0x020f))
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"unknown mode", []string{"--net", "wifi"}, `--net "wifi"`},
		{"none with tap", []string{"--net", "none", "--tap", "x0"}, "--tap: --net none has no network device"},
		{"none with vhost", []string{"--net", "none", "--vhost", "on"}, "--vhost: --net none"},
		{"tap without name", []string{"--net", "tap"}, "--net tap needs --tap NAME"},
		{"vm outside subnet", []string{"--vm-ip", "192.168.1.2"}, "not in subnet"},
		{"gateway is vm", []string{"--vm-ip", "10.177.0.1"}, "both 10.177.0.1"},
		{"bad forward", []string{"--forward", "80"}, "HOST:GUEST"},
		{"macvtap without link", []string{"--net", "macvtap"}, "--link"},
		{"bad mac", []string{"--mac", "zz"}, "--mac"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, msg, _ := runApp(t, append([]string{"run", "--kernel", good}, tc.args...)...)
			if code != 2 || !strings.Contains(msg, tc.want) || strings.Contains(msg, "\n") {
				t.Errorf("exit %d, error %q; want 2 and one line mentioning %q", code, msg, tc.want)
			}
		})
	}
}

func TestJoinParams(t *testing.T) {
	for _, tc := range []struct{ base, extra, want string }{
		{"console=ttyS0 quiet", "", "console=ttyS0 quiet"},
		{"console=ttyS0", "no-kvmapf", "console=ttyS0 no-kvmapf"},
		{"", " a=1 b ", "a=1 b"},
		{" console=ttyS0 ", " ", "console=ttyS0"},
	} {
		if got := joinParams(tc.base, tc.extra); got != tc.want {
			t.Errorf("joinParams(%q, %q) = %q, want %q", tc.base, tc.extra, got, tc.want)
		}
	}
}
