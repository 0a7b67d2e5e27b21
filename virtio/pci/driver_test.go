package pci

import (
	"encoding/binary"
	"testing"

	"github.com/hlsvmm/hlsvmm/vmm/pcibus"
)

// driver plays Linux: arch/x86/pci (type 1 access, BAR sizing), the MSI-X
// core and drivers/virtio/virtio_pci_{modern_dev,modern,common}.c, through
// the configuration ports and the MMIO bus only.
type driver struct {
	t    *testing.T
	vm   *fakeVM
	slot int

	bar                         uint64 // BAR 0 address
	barSize                     uint64
	common, isr, device, notify uint64 // BAR offsets from the capabilities
	notifyLen, notifyMult       uint32
	msixCap                     int
	msixVectors                 int
	tableBAR, tableOff, pbaOff  uint64
}

func (d *driver) out32(port uint64, v uint32) {
	d.t.Helper()
	var b [4]byte
	binary.LittleEndian.PutUint32(b[:], v)
	if !d.vm.pio.Write(port, b[:]) {
		d.t.Fatalf("port %#x not claimed", port)
	}
}

func (d *driver) cfgRead(slot, reg, n int) uint32 {
	d.t.Helper()
	d.out32(0xCF8, 1<<31|uint32(slot)<<11|uint32(reg&0xFC))
	b := make([]byte, 4)
	if !d.vm.pio.Read(0xCFC+uint64(reg&3), b[:n]) {
		d.t.Fatalf("config data port not claimed")
	}
	return binary.LittleEndian.Uint32(b)
}

func (d *driver) cfgWrite(slot, reg, n int, v uint32) {
	d.t.Helper()
	d.out32(0xCF8, 1<<31|uint32(slot)<<11|uint32(reg&0xFC))
	var b [4]byte
	binary.LittleEndian.PutUint32(b[:], v)
	if !d.vm.pio.Write(0xCFC+uint64(reg&3), b[:n]) {
		d.t.Fatalf("config data port not claimed")
	}
}

func (d *driver) read(addr uint64, n int) uint64 {
	d.t.Helper()
	b := make([]byte, 8)
	if !d.vm.mmio.Read(addr, b[:n]) {
		d.t.Fatalf("MMIO read at %#x not claimed", addr)
	}
	return binary.LittleEndian.Uint64(b)
}

func (d *driver) write(addr uint64, n int, v uint64) {
	d.t.Helper()
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], v)
	if !d.vm.mmio.Write(addr, b[:n]) {
		d.t.Fatalf("MMIO write at %#x not claimed", addr)
	}
}

func (d *driver) rc(off uint64, n int) uint64    { d.t.Helper(); return d.read(d.bar+d.common+off, n) }
func (d *driver) wc(off uint64, n int, v uint64) { d.t.Helper(); d.write(d.bar+d.common+off, n, v) }
func (d *driver) status() uint8                  { d.t.Helper(); return uint8(d.rc(regDeviceStatus, 1)) }
func (d *driver) setStatus(s uint8)              { d.t.Helper(); d.wc(regDeviceStatus, 1, uint64(s)) }
func (d *driver) entry(v int) uint64             { return d.bar + d.tableOff + uint64(v)*16 }
func (d *driver) notifyAddr(q int) uint64        { return d.bar + d.notify + uint64(q)*uint64(d.notifyMult) }

// probe enumerates bus 0, finds the virtio device, sizes and reads its BAR
// and walks its capabilities, checking what vp_modern_probe checks.
func (d *driver) probe() {
	t := d.t
	t.Helper()
	d.slot = -1
	sawHostBridge := false
	for slot := range 32 {
		id := d.cfgRead(slot, pcibus.RegVendorID, 4)
		if id == 0xFFFF_FFFF {
			continue
		}
		if d.cfgRead(slot, pcibus.RegClass+1, 2) == 0x0600 {
			sawHostBridge = true
		}
		if dev := id >> 16; id&0xFFFF == VendorID && dev >= 0x1000 && dev <= 0x107F {
			d.slot = slot
		}
	}
	if !sawHostBridge || d.slot < 0 {
		t.Fatalf("enumeration: host bridge %v, virtio device at %d", sawHostBridge, d.slot)
	}
	s := d.slot
	cmd := d.cfgRead(s, pcibus.RegCommand, 2)
	d.cfgWrite(s, pcibus.RegCommand, 2, cmd&^pcibus.CommandMemory)
	orig := d.cfgRead(s, pcibus.RegBAR0, 4)
	d.cfgWrite(s, pcibus.RegBAR0, 4, 0xFFFF_FFFF)
	mask := d.cfgRead(s, pcibus.RegBAR0, 4)
	d.cfgWrite(s, pcibus.RegBAR0, 4, orig)
	d.cfgWrite(s, pcibus.RegCommand, 2, cmd|pcibus.CommandMemory|pcibus.CommandBusMaster)
	if orig&1 != 0 || orig&6 != 0 {
		t.Fatalf("BAR 0 %#x is not a 32-bit memory BAR", orig)
	}
	d.barSize = uint64(^(mask &^ 0xF) + 1)
	d.bar = uint64(orig &^ 0xF)
	for bar := 1; bar < 6; bar++ {
		d.cfgWrite(s, pcibus.RegBAR0+4*bar, 4, 0xFFFF_FFFF)
		if v := d.cfgRead(s, pcibus.RegBAR0+4*bar, 4); v != 0 {
			t.Errorf("unused BAR %d sizes as %#x", bar, v)
		}
	}
	if d.cfgRead(s, pcibus.RegStatus, 2)&pcibus.StatusCapabilities == 0 {
		t.Fatal("no capability list")
	}
	found := map[int]bool{}
	for pos, n := int(d.cfgRead(s, pcibus.RegCapPointer, 1)), 0; pos != 0; pos, n = int(d.cfgRead(s, pos+1, 1)), n+1 {
		if n > 48 || pos < 0x40 || pos&3 != 0 {
			t.Fatalf("capability list broken at %#x", pos)
		}
		switch d.cfgRead(s, pos, 1) {
		case pcibus.CapMSIX:
			d.msixCap = pos
			ctrl := d.cfgRead(s, pos+2, 2)
			d.msixVectors = int(ctrl&0x7FF) + 1
			table, pba := d.cfgRead(s, pos+4, 4), d.cfgRead(s, pos+8, 4)
			if table&7 != 0 || pba&7 != 0 {
				t.Fatalf("MSI-X table in BAR %d, PBA in BAR %d: want 0", table&7, pba&7)
			}
			d.tableOff, d.pbaOff = uint64(table&^7), uint64(pba&^7)
		case pcibus.CapVendor:
			typ := int(d.cfgRead(s, pos+3, 1))
			bar := d.cfgRead(s, pos+4, 1)
			off := uint64(d.cfgRead(s, pos+8, 4))
			length := uint64(d.cfgRead(s, pos+12, 4))
			capLen := d.cfgRead(s, pos+2, 1)
			if bar != 0 || found[typ] {
				t.Fatalf("virtio capability type %d: bar %d, duplicate %v", typ, bar, found[typ])
			}
			found[typ] = true
			// vp_modern_map_capability: minimum length, alignment, inside the BAR.
			minLen, align := linuxCapLimits[typ][0], linuxCapLimits[typ][1]
			if length < minLen || off%align != 0 || off+length > d.barSize || capLen < 16 {
				t.Fatalf("virtio capability type %d: offset %#x length %#x cap_len %d in a %#x BAR", typ, off, length, capLen, d.barSize)
			}
			switch typ {
			case capCommon:
				d.common = off
			case capISR:
				d.isr = off
			case capDevice:
				d.device = off
			case capNotify:
				d.notify, d.notifyLen = off, uint32(length)
				d.notifyMult = d.cfgRead(s, pos+16, 4)
				if capLen < 20 {
					t.Fatalf("notify capability length %d", capLen)
				}
			}
		}
	}
	for _, typ := range []int{capCommon, capISR, capNotify, capDevice} {
		if !found[typ] {
			t.Fatalf("virtio capability type %d missing", typ)
		}
	}
	if d.msixCap == 0 {
		t.Fatal("no MSI-X capability")
	}
}

// enableMSIX follows msix_capability_init and then request_irq for each
// vector: enable with all masked, program entries, unmask the function,
// unmask each entry.
func (d *driver) enableMSIX(n int) {
	d.t.Helper()
	ctrl := d.cfgRead(d.slot, d.msixCap+2, 2)
	d.cfgWrite(d.slot, d.msixCap+2, 2, ctrl|pcibus.MSIXEnable|pcibus.MSIXFunctionMask)
	for v := range n {
		d.programEntry(v, msiAddr(v), msiData(v))
	}
	d.cfgWrite(d.slot, d.msixCap+2, 2, ctrl|pcibus.MSIXEnable)
	for v := range n {
		d.write(d.entry(v)+12, 4, 0)
	}
}

func msiAddr(v int) uint64 { return 0xFEE0_0000 | uint64(v)<<12 }
func msiData(v int) uint32 { return 0x4020 + uint32(v) }

// programEntry writes an entry the way __pci_write_msi_msg does: masked
// around the write if it was unmasked.
func (d *driver) programEntry(v int, addr uint64, data uint32) {
	ctrl := d.read(d.entry(v)+12, 4)
	if ctrl&1 == 0 {
		d.write(d.entry(v)+12, 4, ctrl|1)
	}
	d.write(d.entry(v), 4, addr&0xFFFF_FFFF)
	d.write(d.entry(v)+4, 4, addr>>32)
	d.write(d.entry(v)+8, 4, uint64(data))
	if ctrl&1 == 0 {
		d.write(d.entry(v)+12, 4, ctrl)
	}
}

// linuxCapLimits are vp_modern_probe's minimum length and alignment per
// capability type.
var linuxCapLimits = map[int][2]uint64{capCommon: {0x38, 4}, capISR: {1, 1}, capNotify: {2, 2}, capDevice: {0, 4}}

type ringAddrs struct{ desc, driver, device uint64 }

// initDevice runs virtio_dev_probe + vp_modern_find_vqs with per-queue
// vectors: vector 0 for configuration, vector q+1 for queue q.
func (d *driver) initDevice(accept uint64, sizes []uint16, rings []ringAddrs) {
	t := d.t
	t.Helper()
	d.setStatus(0)
	if s := d.status(); s != 0 {
		t.Fatalf("status %#x after reset", s)
	}
	d.setStatus(1)
	d.setStatus(1 | 2)
	d.wc(regDeviceFeatureSelect, 4, 0)
	offered := d.rc(regDeviceFeature, 4)
	d.wc(regDeviceFeatureSelect, 4, 1)
	offered |= d.rc(regDeviceFeature, 4) << 32
	if accept&^offered != 0 {
		t.Fatalf("test wants to accept %#x, device offers %#x", accept, offered)
	}
	d.wc(regDriverFeatureSelect, 4, 0)
	d.wc(regDriverFeature, 4, accept&0xFFFF_FFFF)
	d.wc(regDriverFeatureSelect, 4, 1)
	d.wc(regDriverFeature, 4, accept>>32)
	d.setStatus(1 | 2 | 8)
	if d.status()&8 == 0 {
		t.Fatal("device refused FEATURES_OK")
	}
	d.wc(regConfigMSIXVector, 2, 0)
	if v := d.rc(regConfigMSIXVector, 2); v != 0 {
		t.Fatalf("config vector reads %#x", v)
	}
	nq := int(d.rc(regNumQueues, 2))
	if nq < len(sizes) {
		t.Fatalf("device has %d queues, test wants %d", nq, len(sizes))
	}
	for q, size := range sizes {
		d.wc(regQueueSelect, 2, uint64(q))
		if max := d.rc(regQueueSize, 2); max == 0 || d.rc(regQueueEnable, 2) != 0 {
			t.Fatalf("queue %d: size %d enabled %d before setup", q, max, d.rc(regQueueEnable, 2))
		}
		d.wc(regQueueSize, 2, uint64(size))
		r := rings[q]
		for i, a := range []uint64{r.desc, r.driver, r.device} {
			d.wc(regQueueDesc+uint64(8*i), 4, a&0xFFFF_FFFF)
			d.wc(regQueueDesc+uint64(8*i)+4, 4, a>>32)
		}
		if off := d.rc(regQueueNotifyOff, 2); off*uint64(d.notifyMult)+2 > uint64(d.notifyLen) {
			t.Fatalf("queue %d notify offset %d outside the notify area", q, off)
		}
		d.wc(regQueueMSIXVector, 2, uint64(q+1))
		if v := d.rc(regQueueMSIXVector, 2); v != uint64(q+1) {
			t.Fatalf("queue %d vector reads %#x", q, v)
		}
	}
	for q := range sizes {
		d.wc(regQueueSelect, 2, uint64(q))
		d.wc(regQueueEnable, 2, 1)
	}
	d.setStatus(1 | 2 | 8 | 4)
}
