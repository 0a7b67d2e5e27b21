package pci

import (
	"fmt"

	"github.com/hlsvmm/hlsvmm/virtio"
	"github.com/hlsvmm/hlsvmm/vmm/memory"
	"github.com/hlsvmm/hlsvmm/vmm/pcibus"
)

// The machine's wiring: one bus, one transport per virtio device. With KVM,
// vm is the *vmm.VM for both.
func ExampleNew() {
	vm := newFakeVM()
	mem, _ := memory.FromRegions(memory.Region{GuestPhys: 0, Host: make([]byte, 1<<20)})
	pciBus, err := pcibus.New(vm, nil) // ports 0xCF8-0xCFF, host bridge at 00:00.0
	if err != nil {
		panic(err)
	}
	var net virtio.Device = &fakeDevice{id: virtio.DeviceNet, features: 1 << virtio.FeatureVersion1, sizes: []uint16{256, 256}}
	t, err := New(net, vm, mem, nil)
	if err != nil {
		panic(err)
	}
	defer t.Close()
	slot, err := pciBus.Add(t) // BAR placed at 0xC0000000 and registered on vm.MMIO()
	if err != nil {
		panic(err)
	}
	fmt.Printf("virtio-net at 00:%02x.0\n", slot)
	// Output: virtio-net at 00:01.0
}
