package vmm

import (
	"errors"
	"fmt"
	"sort"

	"github.com/hlsvmm/hlsvmm/internal/uapi"
)

// GSI layout: 0-23 are the IOAPIC's pins (0-15 also the two 8259 PICs'),
// routed exactly as KVM routes them by default after KVM_CREATE_IRQCHIP;
// MSI routes get GSIs from FirstMSIGSI up.
const (
	FirstMSIGSI = uapi.KVM_IOAPIC_NUM_PINS
	// MaxGSI bounds the routing table (KVM_MAX_IRQ_ROUTES on x86 is 4096).
	MaxGSI = 4095
)

// ErrNoSuchRoute is wrapped when a GSI given to UpdateMSIRoute or
// RemoveRoute has no MSI route.
var ErrNoSuchRoute = errors.New("no such MSI route")

// ErrNoFreeGSI is wrapped when every MSI GSI is taken.
var ErrNoFreeGSI = errors.New("no free GSI for an MSI route")

type msiRoute struct {
	addr uint64
	data uint32
}

// routingTable is the whole GSI routing table KVM_SET_GSI_ROUTING replaces
// at once: the fixed irqchip routes plus the MSI routes devices added. It
// is plain data; VM serializes access and commits it.
type routingTable struct {
	msi map[uint32]msiRoute
}

func newRoutingTable() *routingTable { return &routingTable{msi: make(map[uint32]msiRoute)} }

// add allocates the lowest free GSI at or above FirstMSIGSI.
func (t *routingTable) add(addr uint64, data uint32) (uint32, error) {
	for gsi := uint32(FirstMSIGSI); gsi <= MaxGSI; gsi++ {
		if _, used := t.msi[gsi]; !used {
			t.msi[gsi] = msiRoute{addr, data}
			return gsi, nil
		}
	}
	return 0, ErrNoFreeGSI
}

// update changes an existing MSI route and returns the previous one.
func (t *routingTable) update(gsi uint32, addr uint64, data uint32) (msiRoute, error) {
	old, ok := t.msi[gsi]
	if !ok {
		return msiRoute{}, fmt.Errorf("%w: GSI %d", ErrNoSuchRoute, gsi)
	}
	t.msi[gsi] = msiRoute{addr, data}
	return old, nil
}

// remove deletes an MSI route and returns it.
func (t *routingTable) remove(gsi uint32) (msiRoute, error) {
	old, ok := t.msi[gsi]
	if !ok {
		return msiRoute{}, fmt.Errorf("%w: GSI %d", ErrNoSuchRoute, gsi)
	}
	delete(t.msi, gsi)
	return old, nil
}

// entries is the table in KVM's format: KVM's default irqchip routes (for
// GSI 0-15 one IOAPIC and one PIC entry each, for 16-23 the IOAPIC only)
// followed by the MSI routes in GSI order.
func (t *routingTable) entries() []uapi.KvmIrqRoutingEntry {
	out := make([]uapi.KvmIrqRoutingEntry, 0, 16*2+8+len(t.msi))
	irqchip := func(gsi, chip, pin uint32) {
		e := uapi.KvmIrqRoutingEntry{GSI: gsi, Type: uapi.KVM_IRQ_ROUTING_IRQCHIP}
		*e.Irqchip() = uapi.KvmIrqRoutingIrqchip{Irqchip: chip, Pin: pin}
		out = append(out, e)
	}
	for gsi := uint32(0); gsi < uapi.KVM_IOAPIC_NUM_PINS; gsi++ {
		irqchip(gsi, uapi.KVM_IRQCHIP_IOAPIC, gsi)
		if gsi < 8 {
			irqchip(gsi, uapi.KVM_IRQCHIP_PIC_MASTER, gsi)
		} else if gsi < 16 {
			irqchip(gsi, uapi.KVM_IRQCHIP_PIC_SLAVE, gsi-8)
		}
	}
	gsis := make([]uint32, 0, len(t.msi))
	for gsi := range t.msi {
		gsis = append(gsis, gsi)
	}
	sort.Slice(gsis, func(i, j int) bool { return gsis[i] < gsis[j] })
	for _, gsi := range gsis {
		r := t.msi[gsi]
		e := uapi.KvmIrqRoutingEntry{GSI: gsi, Type: uapi.KVM_IRQ_ROUTING_MSI}
		*e.Msi() = uapi.KvmIrqRoutingMsi{AddressLo: uint32(r.addr), AddressHi: uint32(r.addr >> 32), Data: r.data}
		out = append(out, e)
	}
	return out
}
