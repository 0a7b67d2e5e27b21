package pci

import (
	"encoding/binary"
	"io"
	"log/slog"
	"math/bits"
	"testing"

	"github.com/hlsvmm/hlsvmm/virtio"
	"github.com/hlsvmm/hlsvmm/vmm/memory"
	"github.com/hlsvmm/hlsvmm/vmm/pcibus"
)

// Fuzz input: a sequence of 11-byte guest accesses.
//
//	byte 0: bits 0-1 kind (0 BAR write, 1 BAR read, 2 config write, 3 config read),
//	        bits 2-3 width (1, 2, 4, 8 bytes; config accesses cap at 4)
//	bytes 1-2: offset (little endian; BAR offsets wrap at the BAR size,
//	           configuration offsets at 256)
//	bytes 3-10: value (little endian)
const (
	opBARWrite = iota
	opBARRead
	opConfigWrite
	opConfigRead
	opSize = 11
)

type ops []byte

func (o ops) add(kind, width int, off uint16, v uint64) ops {
	w := map[int]byte{1: 0, 2: 1, 4: 2, 8: 3}[width]
	o = append(o, byte(kind)|w<<2)
	o = binary.LittleEndian.AppendUint16(o, off)
	return binary.LittleEndian.AppendUint64(o, v)
}

func (o ops) common(width int, reg uint16, v uint64) ops { return o.add(opBARWrite, width, reg, v) }

// linuxOps is the driver sequence for the fuzz device (queues of 8 and 16,
// BAR 0x8000 bytes: table at 0x4000, PBA at 0x5000; MSI-X capability at 0x40),
// with rings at low addresses of the fuzz RAM.
func linuxOps() ops {
	var o ops
	o = o.add(opConfigWrite, 2, 0x42, pcibus.MSIXEnable|pcibus.MSIXFunctionMask)
	for v := range 3 {
		o = o.add(opBARWrite, 4, uint16(0x4000+16*v), 0xFEE0_0000)
		o = o.add(opBARWrite, 4, uint16(0x4000+16*v+8), uint64(0x4020+v))
		o = o.add(opBARWrite, 4, uint16(0x4000+16*v+12), 0)
	}
	o = o.add(opConfigWrite, 2, 0x42, pcibus.MSIXEnable)
	o = o.common(1, regDeviceStatus, 0).common(1, regDeviceStatus, 1).common(1, regDeviceStatus, 3)
	o = o.common(4, regDriverFeatureSelect, 1).common(4, regDriverFeature, 1)
	o = o.common(1, regDeviceStatus, 11).common(2, regConfigMSIXVector, 0)
	for q := range 2 {
		base := uint64(0x1000 * (1 + 3*q))
		o = o.common(2, regQueueSelect, uint64(q)).common(2, regQueueSize, 8)
		o = o.common(4, regQueueDesc, base).common(4, regQueueDesc+4, 0)
		o = o.common(4, regQueueDriver, base+0x1000).common(8, regQueueDevice, base+0x2000)
		o = o.common(2, regQueueMSIXVector, uint64(q+1)).common(2, regQueueEnable, 1)
	}
	o = o.common(1, regDeviceStatus, 15)
	o = o.add(opBARWrite, 2, 0x3004, 1)            // notify queue 1 from userspace
	o = o.add(opBARWrite, 4, 0x4000+16+12, 1)      // mask vector 1
	o = o.add(opBARRead, 8, 0x5000, 0)             // read the PBA
	o = o.add(opConfigWrite, 4, 0x10, 0xC010_0000) // move the BAR
	o = o.add(opBARWrite, 4, 0x4000+16+12, 0)      // unmask vector 1
	o = o.add(opConfigWrite, 2, 0x04, 0)           // memory decoding off
	o = o.add(opBARRead, 1, 0x1000, 0)             // ISR
	o = o.common(1, regDeviceStatus, 0)
	return o
}

func FuzzCommonConfig(f *testing.F) {
	f.Add([]byte(linuxOps()))
	f.Add([]byte(ops(nil).common(1, regDeviceStatus, 15).common(2, regQueueEnable, 1)))
	f.Fuzz(func(t *testing.T, in []byte) {
		vm := newFakeVM()
		mem, err := memory.FromRegions(memory.Region{GuestPhys: 0, Host: make([]byte, 0x1_0000)})
		if err != nil {
			t.Fatal(err)
		}
		dev := &fakeDevice{id: virtio.DeviceNet, sizes: []uint16{8, 16},
			features: 1<<virtio.FeatureVersion1 | 1<<virtio.FeatureEventIdx | 1<<virtio.FeatureRingPacked | 1}
		tr, err := New(dev, vm, mem, &Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
		if err != nil {
			t.Fatal(err)
		}
		b, err := pcibus.New(vm, nil)
		if err != nil {
			t.Fatal(err)
		}
		slot, err := b.Add(tr)
		if err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 8)
		for ; len(in) >= opSize; in = in[opSize:] {
			kind, width := int(in[0]&3), 1<<(in[0]>>2&3)
			off := uint64(binary.LittleEndian.Uint16(in[1:]))
			binary.LittleEndian.PutUint64(buf, binary.LittleEndian.Uint64(in[3:]))
			switch kind {
			case opBARWrite:
				tr.WriteBAR(0, off%tr.barSize, buf[:width])
			case opBARRead:
				tr.ReadBAR(0, off%tr.barSize, buf[:width])
			case opConfigWrite, opConfigRead:
				var a [4]byte
				reg := off & 0xFF
				binary.LittleEndian.PutUint32(a[:], 1<<31|uint32(slot)<<11|uint32(reg&0xFC))
				vm.pio.Write(pcibus.ConfigAddressPort, a[:])
				port := pcibus.ConfigDataPort + reg&3
				if kind == opConfigWrite {
					vm.pio.Write(port, buf[:min(width, 4)])
				} else {
					vm.pio.Read(port, buf[:min(width, 4)])
				}
			}
			checkInvariants(t, tr)
		}
		for i, a := range dev.activations {
			checkActivation(t, i, a, tr)
		}
		if err := tr.Close(); err != nil {
			t.Fatalf("close: %v", err)
		}
		if left := vm.leftovers(); left != "" {
			t.Fatalf("after Close: %s", left)
		}
	})
}

func checkInvariants(t *testing.T, tr *Transport) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	s := tr.status
	if s&virtio.StatusFeaturesOK != 0 && (tr.acked&^tr.offered != 0 || !virtio.HasFeature(tr.acked, virtio.FeatureVersion1)) {
		t.Fatalf("FEATURES_OK with accepted %#x of offered %#x", tr.acked, tr.offered)
	}
	if s&virtio.StatusDriverOK != 0 && s&virtio.StatusFeaturesOK == 0 {
		t.Fatalf("DRIVER_OK without FEATURES_OK: %#x", s)
	}
	if virtio.HasFeature(tr.offered, virtio.FeatureRingPacked) {
		t.Fatal("packed rings offered")
	}
	for i, q := range tr.queues {
		if q.vector != NoVector && int(q.vector) >= tr.msix.Vectors() {
			t.Fatalf("queue %d holds vector %d of %d", i, q.vector, tr.msix.Vectors())
		}
		if q.size == 0 || q.size&(q.size-1) != 0 || q.size > tr.maxSizes[i] {
			t.Fatalf("queue %d size %d", i, q.size)
		}
		if q.ioAttached && (!tr.barMapped || q.ioAddr != tr.notifyAddr(i)) {
			t.Fatalf("queue %d ioeventfd at %#x, BAR mapped %v at %#x", i, q.ioAddr, tr.barMapped, tr.barAddr)
		}
	}
}

func checkActivation(t *testing.T, n int, a virtio.Activation, tr *Transport) {
	if a.Features&^tr.offered != 0 {
		t.Fatalf("activation %d: features %#x not offered", n, a.Features)
	}
	for _, q := range a.Queues {
		if int(q.Index) >= len(tr.maxSizes) || bits.OnesCount16(q.Size) != 1 || q.Size > tr.maxSizes[q.Index] {
			t.Fatalf("activation %d: queue %+v", n, q)
		}
		if q.Desc%16 != 0 || q.Driver%2 != 0 || q.Device%4 != 0 {
			t.Fatalf("activation %d: misaligned queue %+v", n, q)
		}
		for _, r := range [][2]uint64{{q.Desc, 16 * uint64(q.Size)}, {q.Driver, 4 + 2*uint64(q.Size)}, {q.Device, 4 + 8*uint64(q.Size)}} {
			if _, err := a.Memory.Slice(r[0], r[1]); err != nil {
				t.Fatalf("activation %d: queue %d ring outside RAM: %v", n, q.Index, err)
			}
		}
		if q.Kick == nil || q.Call == nil {
			t.Fatalf("activation %d: queue %d without eventfds", n, q.Index)
		}
	}
}

// TestFuzzSeedActivates makes sure the seed reaches the interesting states.
func TestFuzzSeedActivates(t *testing.T) {
	vm := newFakeVM()
	mem, _ := memory.FromRegions(memory.Region{GuestPhys: 0, Host: make([]byte, 0x1_0000)})
	dev := &fakeDevice{id: virtio.DeviceNet, sizes: []uint16{8, 16}, features: 1 << virtio.FeatureVersion1}
	tr, err := New(dev, vm, mem, &Options{Logger: slog.New(slog.NewTextHandler(t.Output(), nil))})
	if err != nil {
		t.Fatal(err)
	}
	if tr.barSize != 0x8000 || tr.tableOff != 0x4000 || tr.pbaOff != 0x5000 {
		t.Fatalf("layout changed (BAR %#x, table %#x, PBA %#x): update linuxOps", tr.barSize, tr.tableOff, tr.pbaOff)
	}
	o := linuxOps()
	stop := len(o) - 8*opSize // up to DRIVER_OK
	buf := make([]byte, 8)
	for in := o[:stop]; len(in) >= opSize; in = in[opSize:] {
		if in[0]&3 != opBARWrite {
			continue // MSI-X enable: not needed for activation
		}
		binary.LittleEndian.PutUint64(buf, binary.LittleEndian.Uint64(in[3:]))
		tr.WriteBAR(0, uint64(binary.LittleEndian.Uint16(in[1:])), buf[:1<<(in[0]>>2&3)])
	}
	if _, n := dev.lastActivation(); n != 1 {
		t.Fatalf("seed does not activate the device (status %#x)", tr.status)
	}
	tr.Close()
}
