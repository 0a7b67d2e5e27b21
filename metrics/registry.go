// Package metrics exports the VM's counters in the Prometheus format: vCPU
// exits by reason, virtio queue kicks and interrupts, the userspace
// datapath's packets, bytes and drops, which datapath each network device
// runs with its queue pairs in use and control commands, block requests, 9p share requests, console clients, and the VMM
// process itself (Go runtime, CPU, RSS).
//
// Components keep their own atomic counters; a Registry is given closures
// that take a snapshot of them and calls those only when scraped, so
// nothing is copied on a hot path. Nothing here is global: each Registry has
// its own prometheus.Registry.
package metrics

import (
	"errors"
	"fmt"
	"strconv"
	"sync"

	"github.com/hlsvmm/hlsvmm/console"
	"github.com/hlsvmm/hlsvmm/internal/uapi"
	"github.com/hlsvmm/hlsvmm/metrics/exits"
	"github.com/hlsvmm/hlsvmm/virtio/blk"
	vnet "github.com/hlsvmm/hlsvmm/virtio/net"
	"github.com/hlsvmm/hlsvmm/virtio/ninep"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// Datapath names as the network backends report them (Backend.Name()).
const (
	DatapathVhostNet  = "vhost-net"
	DatapathUserspace = "userspace"
)

// ErrSource is wrapped by every error about a source that cannot be added
// (no name, a name already taken, a second vCPU or console source).
var ErrSource = errors.New("invalid metrics source")

// NetDevice is one virtio-net device as the exporter sees it.
type NetDevice struct {
	// Name is the device label ("net0"), unique among all devices.
	Name string
	// Datapath is what moves its packets: DatapathVhostNet or
	// DatapathUserspace (the backend's Name()).
	Datapath string
	// Snapshot reads the device's counters (virtio/net Device.Metrics()
	// .Snapshot). Nil when hlsvmm does not see the traffic — vhost-net
	// moves packets in the kernel, kicks arrive by ioeventfd and interrupts
	// leave by irqfd — so zeros are not exported as if they were counts.
	Snapshot func() vnet.MetricsSnapshot
	// Control reads the device model's own counters (virtio/net
	// Device.Metrics().ControlSnapshot): queue pairs in use and control
	// commands, counted by hlsvmm whatever the datapath. Nil: not exported.
	Control func() vnet.ControlSnapshot
}

// BlockDevice is one virtio-blk device as the exporter sees it.
type BlockDevice struct {
	// Name is the device label ("blk0"), unique among all devices.
	Name string
	// Snapshot reads the device's counters (virtio/blk Device.Metrics()
	// .Snapshot). Required.
	Snapshot func() blk.MetricsSnapshot
}

// ShareDevice is one virtio-9p device as the exporter sees it.
type ShareDevice struct {
	// Name is the device label ("9p0"), unique among all devices.
	Name string
	// Tag is the share's mount tag, the tag label of the 9p families.
	Tag string
	// Snapshot reads the device's counters (virtio/ninep Device.Metrics()
	// .Snapshot). Required.
	Snapshot func() ninep.MetricsSnapshot
}

// Registry collects the VM's metrics from the sources added to it. Sources
// may be added at any time, also while it is being scraped.
type Registry struct {
	reg *prometheus.Registry
	c   *collector
}

// NewRegistry makes a registry with the Go runtime and process collectors
// (the VMM's own CPU time, RSS, file descriptors) and no VM sources yet.
func NewRegistry() (*Registry, error) {
	r := &Registry{reg: prometheus.NewRegistry(), c: newCollector()}
	for _, c := range []prometheus.Collector{
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		r.c,
	} {
		if err := r.reg.Register(c); err != nil {
			return nil, fmt.Errorf("register metrics collector: %w", err)
		}
	}
	return r, nil
}

// Gatherer is the underlying registry, for promhttp or tests.
func (r *Registry) Gatherer() prometheus.Gatherer { return r.reg }

// SetVCPUExits sets the source of per-vCPU exit counts: snapshot returns
// one exits.Snapshot per vCPU, indexed by vCPU id. It may be set once.
func (r *Registry) SetVCPUExits(snapshot func() []exits.Snapshot) error {
	if snapshot == nil {
		return fmt.Errorf("%w: vCPU exits: nil snapshot function", ErrSource)
	}
	r.c.mu.Lock()
	defer r.c.mu.Unlock()
	if r.c.vcpuExits != nil {
		return fmt.Errorf("%w: vCPU exits already have a source", ErrSource)
	}
	r.c.vcpuExits = snapshot
	return nil
}

// SetConsole sets the source of console statistics (console.Console.Stats).
// It may be set once.
func (r *Registry) SetConsole(stats func() console.Stats) error {
	if stats == nil {
		return fmt.Errorf("%w: console: nil stats function", ErrSource)
	}
	r.c.mu.Lock()
	defer r.c.mu.Unlock()
	if r.c.console != nil {
		return fmt.Errorf("%w: console already has a source", ErrSource)
	}
	r.c.console = stats
	return nil
}

// AddNet adds a network device.
func (r *Registry) AddNet(d NetDevice) error {
	if d.Datapath == "" {
		return fmt.Errorf("%w: network device %q: no datapath", ErrSource, d.Name)
	}
	r.c.mu.Lock()
	defer r.c.mu.Unlock()
	if err := r.c.claimLocked(d.Name); err != nil {
		return err
	}
	r.c.nets = append(r.c.nets, d)
	return nil
}

// AddBlock adds a block device.
func (r *Registry) AddBlock(d BlockDevice) error {
	if d.Snapshot == nil {
		return fmt.Errorf("%w: block device %q: nil snapshot function", ErrSource, d.Name)
	}
	r.c.mu.Lock()
	defer r.c.mu.Unlock()
	if err := r.c.claimLocked(d.Name); err != nil {
		return err
	}
	r.c.blocks = append(r.c.blocks, d)
	return nil
}

// AddShare adds a virtio-9p device.
func (r *Registry) AddShare(d ShareDevice) error {
	if d.Snapshot == nil {
		return fmt.Errorf("%w: 9p device %q: nil snapshot function", ErrSource, d.Name)
	}
	if d.Tag == "" {
		return fmt.Errorf("%w: 9p device %q: no mount tag", ErrSource, d.Name)
	}
	r.c.mu.Lock()
	defer r.c.mu.Unlock()
	if err := r.c.claimLocked(d.Name); err != nil {
		return err
	}
	r.c.shares = append(r.c.shares, d)
	return nil
}

// Metric descriptions. Counters end in _total, byte counts in _bytes_total.
var (
	descVCPUExits = prometheus.NewDesc("hlsvmm_vcpu_exits_total",
		"KVM_RUN returns by exit reason (KVM_EXIT_* in lower case; 'other' for reasons beyond the counted range).",
		[]string{"vcpu", "reason"}, nil)

	descQueueKicks = prometheus.NewDesc("hlsvmm_virtio_queue_kicks_total",
		"Driver notifications hlsvmm handled. queue is rx/tx for network devices (summed over queue pairs), all for block and 9p devices.",
		[]string{"device", "queue"}, nil)
	descQueueInterrupts = prometheus.NewDesc("hlsvmm_virtio_queue_interrupts_total",
		"Used-buffer interrupts hlsvmm signalled. queue is all: devices count them for all their queues together.",
		[]string{"device", "queue"}, nil)
	descMalformedChains = prometheus.NewDesc("hlsvmm_virtio_malformed_chains_total",
		"Guest errors (bad descriptor chains) that broke a queue of the device.",
		[]string{"device"}, nil)

	netLabels          = []string{"device", "datapath"}
	descNetDatapath    = prometheus.NewDesc("hlsvmm_net_datapath_info", "The datapath moving the network device's packets (value always 1).", netLabels, nil)
	descNetRxPackets   = prometheus.NewDesc("hlsvmm_net_rx_packets_total", "Frames delivered to the guest by the userspace datapath.", netLabels, nil)
	descNetRxBytes     = prometheus.NewDesc("hlsvmm_net_rx_bytes_total", "Bytes of frames delivered to the guest by the userspace datapath (virtio-net header excluded).", netLabels, nil)
	descNetTxPackets   = prometheus.NewDesc("hlsvmm_net_tx_packets_total", "Guest frames written to the TAP by the userspace datapath.", netLabels, nil)
	descNetTxBytes     = prometheus.NewDesc("hlsvmm_net_tx_bytes_total", "Bytes of guest frames written to the TAP by the userspace datapath (virtio-net header excluded).", netLabels, nil)
	descNetDrops       = prometheus.NewDesc("hlsvmm_net_drops_total", "Frames the userspace datapath dropped: rx = from the TAP with no guest buffer free, tx = from the guest not written (bad size, TAP error).", []string{"device", "datapath", "direction"}, nil)
	descNetTapErrors   = prometheus.NewDesc("hlsvmm_net_tap_errors_total", "Failed TAP reads and writes of the userspace datapath.", []string{"device", "datapath", "op"}, nil)
	descNetPairs       = prometheus.NewDesc("hlsvmm_net_queue_pairs_active", "Queue pairs the guest driver uses: 0 until it is ready, 1 until it sends VQ_PAIRS_SET (ethtool -L).", []string{"device"}, nil)
	descNetControl     = prometheus.NewDesc("hlsvmm_net_control_commands_total", "Control-queue commands by class (rx, mac, mq, other) and answer (ok, err).", []string{"device", "class", "result"}, nil)
	descBlockRequests  = prometheus.NewDesc("hlsvmm_block_requests_total", "Block requests completed successfully, by type (read, write, flush, get_id).", []string{"device", "op"}, nil)
	descBlockErrors    = prometheus.NewDesc("hlsvmm_block_errors_total", "Block requests answered with an error status (ioerr: bad request or I/O error; unsupp: unsupported type).", []string{"device", "status"}, nil)
	descBlockReadByte  = prometheus.NewDesc("hlsvmm_block_read_bytes_total", "Bytes read by the guest.", []string{"device"}, nil)
	descBlockWriteByte = prometheus.NewDesc("hlsvmm_block_written_bytes_total", "Bytes written by the guest.", []string{"device"}, nil)

	shareLabels     = []string{"device", "tag"}
	desc9PRequests  = prometheus.NewDesc("hlsvmm_9p_requests_total", "9P requests answered (replies returned to the guest, Rlerror included).", shareLabels, nil)
	desc9PErrors    = prometheus.NewDesc("hlsvmm_9p_errors_total", "9P requests answered with Rlerror.", shareLabels, nil)
	desc9PReadBytes = prometheus.NewDesc("hlsvmm_9p_read_bytes_total", "File data returned to the guest in Rread replies.", shareLabels, nil)
	desc9PInFlight  = prometheus.NewDesc("hlsvmm_9p_requests_in_flight", "9P requests the guest posted that are not answered yet.", shareLabels, nil)

	descConsoleClients     = prometheus.NewDesc("hlsvmm_console_clients", "TCP console clients attached now.", nil, nil)
	descConsoleConnections = prometheus.NewDesc("hlsvmm_console_connections_total", "TCP console clients accepted.", nil, nil)
	descConsoleDropped     = prometheus.NewDesc("hlsvmm_console_dropped_bytes_total", "Console output bytes a client missed because it read too slowly.", nil, nil)
)

// collector turns the sources' snapshots into constant metrics on each
// scrape.
type collector struct {
	mu        sync.Mutex
	names     map[string]bool
	vcpuExits func() []exits.Snapshot
	console   func() console.Stats
	nets      []NetDevice
	blocks    []BlockDevice
	shares    []ShareDevice
}

func newCollector() *collector { return &collector{names: make(map[string]bool)} }

func (c *collector) claimLocked(name string) error {
	if name == "" {
		return fmt.Errorf("%w: device with no name", ErrSource)
	}
	if c.names[name] {
		return fmt.Errorf("%w: device name %q already used", ErrSource, name)
	}
	c.names[name] = true
	return nil
}

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{
		descVCPUExits, descQueueKicks, descQueueInterrupts, descMalformedChains,
		descNetDatapath, descNetRxPackets, descNetRxBytes, descNetTxPackets, descNetTxBytes, descNetDrops, descNetTapErrors,
		descNetPairs, descNetControl,
		descBlockRequests, descBlockErrors, descBlockReadByte, descBlockWriteByte,
		desc9PRequests, desc9PErrors, desc9PReadBytes, desc9PInFlight,
		descConsoleClients, descConsoleConnections, descConsoleDropped,
	} {
		ch <- d
	}
}

// alwaysExported says whether an exit reason is one a running guest
// produces all the time; those are exported from zero so rate() sees their
// first exits. Others appear once they happened.
func alwaysExported(reason int) bool {
	switch reason {
	case uapi.KVM_EXIT_IO, uapi.KVM_EXIT_MMIO, uapi.KVM_EXIT_INTR:
		return true
	}
	return false
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	vcpuExits, stats := c.vcpuExits, c.console
	nets, blocks, shares := c.nets, c.blocks, c.shares
	c.mu.Unlock()

	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	if vcpuExits != nil {
		for id, s := range vcpuExits() {
			vcpu := strconv.Itoa(id)
			for reason, v := range s {
				if v != 0 || alwaysExported(reason) {
					counter(descVCPUExits, v, vcpu, exits.ReasonName(reason))
				}
			}
		}
	}
	for _, d := range nets {
		ch <- prometheus.MustNewConstMetric(descNetDatapath, prometheus.GaugeValue, 1, d.Name, d.Datapath)
		if d.Control != nil {
			s := d.Control()
			ch <- prometheus.MustNewConstMetric(descNetPairs, prometheus.GaugeValue, float64(s.ActivePairs), d.Name)
			for c := range vnet.NumCtrlClasses {
				counter(descNetControl, s.CtrlOK[c], d.Name, c.String(), "ok")
				counter(descNetControl, s.CtrlErr[c], d.Name, c.String(), "err")
			}
		}
		if d.Snapshot == nil {
			continue
		}
		s := d.Snapshot()
		counter(descNetRxPackets, s.RxPackets, d.Name, d.Datapath)
		counter(descNetRxBytes, s.RxBytes, d.Name, d.Datapath)
		counter(descNetTxPackets, s.TxPackets, d.Name, d.Datapath)
		counter(descNetTxBytes, s.TxBytes, d.Name, d.Datapath)
		counter(descNetDrops, s.RxDrops, d.Name, d.Datapath, "rx")
		counter(descNetDrops, s.TxDrops, d.Name, d.Datapath, "tx")
		counter(descNetTapErrors, s.TapReadErrors, d.Name, d.Datapath, "read")
		counter(descNetTapErrors, s.TapWriteErrors, d.Name, d.Datapath, "write")
		counter(descQueueKicks, s.RxKicks, d.Name, "rx")
		counter(descQueueKicks, s.TxKicks, d.Name, "tx")
		counter(descQueueInterrupts, s.Interrupts, d.Name, "all")
		counter(descMalformedChains, s.MalformedChains, d.Name)
	}
	for _, d := range blocks {
		s := d.Snapshot()
		counter(descBlockRequests, s.Reads, d.Name, "read")
		counter(descBlockRequests, s.Writes, d.Name, "write")
		counter(descBlockRequests, s.Flushes, d.Name, "flush")
		counter(descBlockRequests, s.GetIDs, d.Name, "get_id")
		counter(descBlockErrors, s.Errors, d.Name, "ioerr")
		counter(descBlockErrors, s.Unsupported, d.Name, "unsupp")
		counter(descBlockReadByte, s.ReadBytes, d.Name)
		counter(descBlockWriteByte, s.WriteBytes, d.Name)
		counter(descQueueKicks, s.Kicks, d.Name, "all")
		counter(descQueueInterrupts, s.Interrupts, d.Name, "all")
		counter(descMalformedChains, s.MalformedChains, d.Name)
	}
	for _, d := range shares {
		s := d.Snapshot()
		counter(desc9PRequests, s.Requests, d.Name, d.Tag)
		counter(desc9PErrors, s.Errors, d.Name, d.Tag)
		counter(desc9PReadBytes, s.ReadBytes, d.Name, d.Tag)
		ch <- prometheus.MustNewConstMetric(desc9PInFlight, prometheus.GaugeValue, float64(s.InFlight), d.Name, d.Tag)
		counter(descQueueKicks, s.Kicks, d.Name, "all")
		counter(descQueueInterrupts, s.Interrupts, d.Name, "all")
		counter(descMalformedChains, s.MalformedChains, d.Name)
	}
	if stats != nil {
		s := stats()
		clients := 0.0
		if s.Connected {
			clients = 1
		}
		ch <- prometheus.MustNewConstMetric(descConsoleClients, prometheus.GaugeValue, clients)
		counter(descConsoleConnections, s.Connections)
		counter(descConsoleDropped, s.Dropped)
	}
}
