package vmm

import (
	"fmt"

	"github.com/hlsvmm/hlsvmm/virtio"
	virtiopci "github.com/hlsvmm/hlsvmm/virtio/pci"
)

// virtioFunction is a virtio device's transport and where it sits on bus 0.
type virtioFunction struct {
	t    *virtiopci.Transport
	slot int
}

// AddVirtio plugs dev into PCI bus 0 behind a virtio-pci (modern, MSI-X)
// transport and returns its device number (00:NN.0). The machine owns the
// transport and closes it before the VM; the device itself stays the
// caller's (close it after the machine). Call it before Run.
func (m *Machine) AddVirtio(dev virtio.Device) (slot int, err error) {
	t, err := virtiopci.New(dev, m.vm, m.guest.mem, &virtiopci.Options{Logger: m.log})
	if err != nil {
		return -1, fmt.Errorf("virtio-pci transport for device type %d: %w", dev.ID(), err)
	}
	slot, err = m.pci.Add(t)
	if err != nil {
		t.Close()
		return -1, fmt.Errorf("add virtio device type %d to PCI bus 0: %w", dev.ID(), err)
	}
	m.pciDev = append(m.pciDev, virtioFunction{t: t, slot: slot})
	m.log.Debug("virtio-pci device added", "type", dev.ID(), "slot", fmt.Sprintf("00:%02x.0", slot))
	return slot, nil
}

// VirtioDevice is one virtio-pci device's state, as VirtioState reports it.
type VirtioDevice struct {
	Slot string `json:"slot"` // 00:NN.0
	virtiopci.State
}

// VirtioState reports the state of every virtio device, in the order they
// were added: for finding out why a guest waits on one. Safe to call from
// any goroutine while the machine runs and after Close (the transports
// then report no queues, so no guest memory is read).
func (m *Machine) VirtioState() []VirtioDevice {
	out := make([]VirtioDevice, 0, len(m.pciDev))
	for _, f := range m.pciDev {
		out = append(out, VirtioDevice{Slot: fmt.Sprintf("00:%02x.0", f.slot), State: f.t.State()})
	}
	return out
}
