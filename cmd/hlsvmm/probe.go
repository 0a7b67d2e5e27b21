package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/google/nftables"
	"github.com/hlsvmm/hlsvmm/internal/uapi"
	"github.com/hlsvmm/hlsvmm/vhost"
	"github.com/hlsvmm/hlsvmm/vmm"
	"github.com/urfave/cli/v2"
	"golang.org/x/sys/unix"
)

// probeCaps are the KVM capabilities the probe reports: the ones hlsvmm
// requires, then the optional ones it uses when present.
func probeCaps() []vmm.Capability {
	return append(vmm.RequiredCapabilities(),
		vmm.Capability{Cap: uapi.KVM_CAP_TSC_DEADLINE_TIMER, Name: "KVM_CAP_TSC_DEADLINE_TIMER"},
		vmm.Capability{Cap: uapi.KVM_CAP_MAX_VCPUS, Name: "KVM_CAP_MAX_VCPUS"})
}

type probeKVM struct {
	Device           string         `json:"device"`
	OK               bool           `json:"ok"`
	Error            string         `json:"error,omitempty"`
	APIVersion       int            `json:"api_version,omitempty"`
	Backend          string         `json:"backend,omitempty"`
	Capabilities     map[string]int `json:"capabilities,omitempty"`
	MaxVCPUs         int            `json:"max_vcpus,omitempty"`
	RecommendedVCPUs int            `json:"recommended_vcpus,omitempty"`
	CPUIDEntries     int            `json:"supported_cpuid_entries,omitempty"`
	KVMCPUIDLeaves   bool           `json:"kvm_cpuid_leaves,omitempty"`
}

type probeItem struct {
	OK       bool   `json:"ok"`
	Error    string `json:"error,omitempty"`
	Features string `json:"features,omitempty"` // vhost-net: VHOST_GET_FEATURES, hex
	Tables   *int   `json:"tables,omitempty"`   // nf_tables: tables listed
}

type probeReport struct {
	KVM         probeKVM  `json:"kvm"`
	VhostNet    probeItem `json:"vhost_net"`
	Tun         probeItem `json:"tun"`
	CapNetAdmin probeItem `json:"cap_net_admin"`
	NFTables    probeItem `json:"nf_tables"`
}

func probeCommand() *cli.Command {
	return &cli.Command{
		Name:  "probe",
		Usage: "report what this host offers hlsvmm: KVM, vhost-net, TUN, CAP_NET_ADMIN, nf_tables",
		Description: "Exits non-zero when KVM cannot run hlsvmm (the other items are reported; " +
			"vhost-net has a userspace fallback, networking needs only what `network setup` uses).",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "json", Usage: "print the report as JSON"},
			&cli.StringFlag{Name: "device", Value: vmm.DefaultDevice, Usage: "KVM device to probe"},
		},
		Action: func(c *cli.Context) error {
			r := probe(c.String("device"))
			out := c.App.Writer
			if c.Bool("json") {
				enc := json.NewEncoder(out)
				enc.SetIndent("", "  ")
				if err := enc.Encode(r); err != nil {
					return err
				}
			} else {
				printProbe(out, r)
			}
			if !r.KVM.OK {
				return exitWith(1, errors.New(r.KVM.Error))
			}
			return nil
		},
	}
}

func probe(device string) probeReport {
	var r probeReport
	r.KVM = probeKVMDevice(device)

	if n, err := vhost.OpenNet(); err != nil {
		r.VhostNet.Error = err.Error()
		var ns *vhost.NotSupportedError
		if errors.As(err, &ns) {
			r.VhostNet.Features = fmt.Sprintf("%#x", ns.Offered)
		}
	} else {
		r.VhostNet = probeItem{OK: true, Features: fmt.Sprintf("%#x", n.Features())}
		n.Close()
	}

	if fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC, 0); err != nil {
		r.Tun.Error = fmt.Sprintf("open /dev/net/tun: %v (modprobe tun)", err)
	} else {
		unix.Close(fd)
		r.Tun.OK = true
	}

	if ok, err := hasCapNetAdmin(); err != nil {
		r.CapNetAdmin.Error = err.Error()
	} else if !ok {
		r.CapNetAdmin.Error = "not in the effective set (run as root, or grant it: setcap cap_net_admin+ep)"
	} else {
		r.CapNetAdmin.OK = true
	}

	if conn, err := nftables.New(); err != nil {
		r.NFTables.Error = fmt.Sprintf("netlink: %v", err)
	} else if tables, err := conn.ListTables(); err != nil {
		r.NFTables.Error = fmt.Sprintf("list tables over netlink: %v (modprobe nf_tables; needs CAP_NET_ADMIN)", err)
	} else {
		n := len(tables)
		r.NFTables = probeItem{OK: true, Tables: &n}
	}
	return r
}

func probeKVMDevice(device string) probeKVM {
	k := probeKVM{Device: device, Backend: vmm.Backend()}
	s, err := vmm.OpenUnchecked(device)
	if err != nil {
		k.Error = err.Error()
		return k
	}
	defer s.Close()
	k.APIVersion = s.APIVersion()
	caps := probeCaps()
	k.Capabilities = make(map[string]int, len(caps))
	for _, c := range caps {
		k.Capabilities[c.Name] = s.CheckExtension(c.Cap)
	}
	k.MaxVCPUs, k.RecommendedVCPUs = s.MaxVCPUs(), s.RecommendedVCPUs()
	if cpuid, err := s.SupportedCPUID(); err != nil {
		k.Error = err.Error()
		return k
	} else {
		k.CPUIDEntries, k.KVMCPUIDLeaves = len(cpuid), cpuid.HasKVMLeaves()
	}
	// The full check hlsvmm run makes: backend and every required capability.
	full, err := vmm.Open(device)
	if err != nil {
		k.Error = err.Error()
		return k
	}
	full.Close()
	k.OK = true
	return k
}

// hasCapNetAdmin reports whether CAP_NET_ADMIN is in the effective set.
func hasCapNetAdmin() (bool, error) {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return false, fmt.Errorf("capget: %w", err)
	}
	return data[unix.CAP_NET_ADMIN/32].Effective&(1<<(unix.CAP_NET_ADMIN%32)) != 0, nil
}

func printProbe(w io.Writer, r probeReport) {
	yes := func(ok bool) string {
		if ok {
			return "yes"
		}
		return "NO"
	}
	k := r.KVM
	fmt.Fprintf(w, "KVM            %s: %s\n", k.Device, map[bool]string{true: "usable", false: "NOT USABLE"}[k.OK])
	if k.Error != "" {
		fmt.Fprintf(w, "  problem      %s\n", k.Error)
	}
	if k.Backend != "" {
		fmt.Fprintf(w, "  backend      %s\n", k.Backend)
	}
	if k.APIVersion != 0 {
		fmt.Fprintf(w, "  API version  %d\n", k.APIVersion)
		var caps []string
		for _, c := range probeCaps() {
			caps = append(caps, fmt.Sprintf("%s=%s", strings.TrimPrefix(c.Name, "KVM_CAP_"), yes(k.Capabilities[c.Name] > 0)))
		}
		fmt.Fprintf(w, "  capabilities %s\n", strings.Join(caps, " "))
		fmt.Fprintf(w, "  max vCPUs    %d (recommended %d)\n", k.MaxVCPUs, k.RecommendedVCPUs)
		fmt.Fprintf(w, "  CPUID        %d supported entries, KVM leaves %s\n", k.CPUIDEntries, yes(k.KVMCPUIDLeaves))
	}
	item := func(name string, it probeItem, extra string) {
		fmt.Fprintf(w, "%-14s %s%s\n", name, yes(it.OK), extra)
		if it.Error != "" {
			fmt.Fprintf(w, "  problem      %s\n", it.Error)
		}
	}
	vh := ""
	if r.VhostNet.Features != "" {
		vh = ", features " + r.VhostNet.Features
	}
	item("vhost-net", r.VhostNet, vh)
	item("TUN", r.Tun, "")
	item("CAP_NET_ADMIN", r.CapNetAdmin, "")
	nf := ""
	if r.NFTables.Tables != nil {
		nf = fmt.Sprintf(", %d tables", *r.NFTables.Tables)
	}
	item("nf_tables", r.NFTables, nf)
}
