package vmm

import (
	"errors"
	"testing"

	"github.com/hlsvmm/hlsvmm/internal/uapi"
)

func TestRoutingDefaultTable(t *testing.T) {
	e := newRoutingTable().entries()
	// KVM's default: GSI 0-15 on the IOAPIC and a PIC, 16-23 on the IOAPIC only.
	if len(e) != 16*2+8 {
		t.Fatalf("%d default routes, want 40", len(e))
	}
	type route struct{ gsi, chip, pin uint32 }
	got := map[route]bool{}
	for _, r := range e {
		if r.Type != uapi.KVM_IRQ_ROUTING_IRQCHIP {
			t.Fatalf("GSI %d: type %d", r.GSI, r.Type)
		}
		got[route{r.GSI, r.Irqchip().Irqchip, r.Irqchip().Pin}] = true
	}
	for gsi := uint32(0); gsi < 24; gsi++ {
		if !got[route{gsi, uapi.KVM_IRQCHIP_IOAPIC, gsi}] {
			t.Errorf("GSI %d: no IOAPIC pin %d route", gsi, gsi)
		}
	}
	for gsi := uint32(0); gsi < 8; gsi++ {
		if !got[route{gsi, uapi.KVM_IRQCHIP_PIC_MASTER, gsi}] || !got[route{gsi + 8, uapi.KVM_IRQCHIP_PIC_SLAVE, gsi}] {
			t.Errorf("GSI %d/%d: PIC routes missing", gsi, gsi+8)
		}
	}
}

func TestRoutingMSI(t *testing.T) {
	rt := newRoutingTable()
	var gsis []uint32
	for i := range 3 {
		gsi, err := rt.add(0xfee00000+uint64(i)<<12, 0x4020+uint32(i))
		if err != nil {
			t.Fatal(err)
		}
		gsis = append(gsis, gsi)
	}
	if gsis[0] != FirstMSIGSI || gsis[1] != FirstMSIGSI+1 || gsis[2] != FirstMSIGSI+2 {
		t.Fatalf("GSIs %v, want from %d up", gsis, FirstMSIGSI)
	}
	if _, err := rt.remove(gsis[1]); err != nil {
		t.Fatal(err)
	}
	// The freed GSI is reused first.
	if gsi, _ := rt.add(0x1_fee00000, 7); gsi != gsis[1] {
		t.Fatalf("reused GSI %d, want %d", gsi, gsis[1])
	}
	if _, err := rt.update(gsis[2], 0xfee01000, 0x99); err != nil {
		t.Fatal(err)
	}
	e := rt.entries()
	if len(e) != 40+3 {
		t.Fatalf("%d entries", len(e))
	}
	msi := e[40:]
	for i, r := range msi {
		if r.Type != uapi.KVM_IRQ_ROUTING_MSI || r.GSI != gsis[i] {
			t.Fatalf("entry %d: %+v", i, r)
		}
	}
	if m := msi[1].Msi(); m.AddressLo != 0xfee00000 || m.AddressHi != 1 || m.Data != 7 {
		t.Errorf("64-bit address split wrong: %+v", *m)
	}
	if m := msi[2].Msi(); m.AddressLo != 0xfee01000 || m.Data != 0x99 {
		t.Errorf("update lost: %+v", *m)
	}
	for _, gsi := range []uint32{0, 23, 100} {
		if _, err := rt.update(gsi, 0, 0); !errors.Is(err, ErrNoSuchRoute) {
			t.Errorf("update GSI %d: %v", gsi, err)
		}
		if _, err := rt.remove(gsi); !errors.Is(err, ErrNoSuchRoute) {
			t.Errorf("remove GSI %d: %v", gsi, err)
		}
	}
}

func TestRoutingExhaustion(t *testing.T) {
	rt := newRoutingTable()
	for range MaxGSI - FirstMSIGSI + 1 {
		if _, err := rt.add(0xfee00000, 0); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := rt.add(0xfee00000, 0); !errors.Is(err, ErrNoFreeGSI) {
		t.Fatalf("full table: %v", err)
	}
}
