package pci

import (
	"fmt"
)

// msixListener receives MSI-X changes from the pcibus.MSIX; its methods
// run with t.mu held.
type msixListener Transport

func (l *msixListener) MSIXEnabled(on bool) {
	(*Transport)(l).log.Debug("MSI-X", "enabled", on)
}

// MSIXMasked detaches the irqfds of the queues on a masked vector, so
// their interrupts wait in the Call eventfds, and reattaches them on
// unmask after moving what waited into the PBA (which the MSIX then
// delivers).
func (l *msixListener) MSIXMasked(v int, masked bool) {
	t := (*Transport)(l)
	if !t.active {
		return
	}
	for i := range t.queues {
		q := &t.queues[i]
		if q.call == nil || int(q.vector) != v {
			continue
		}
		if masked {
			if err := t.unbindIRQ(i); err != nil {
				t.log.Warn("mask queue interrupt", "err", err)
			}
			continue
		}
		t.pollCall(i)
		if err := t.bindIRQ(i); err != nil {
			t.log.Warn("unmask queue interrupt", "err", err)
		}
	}
}

// MSIXUpdated follows a message rewritten while unmasked into the route.
func (l *msixListener) MSIXUpdated(v int) {
	t := (*Transport)(l)
	r, ok := t.routes[v]
	if !ok {
		return
	}
	if err := t.updateRoute(v, r); err != nil {
		t.log.Warn("update MSI-X route", "err", err)
	}
}

// bindIRQ attaches queue i's Call eventfd as an irqfd on the GSI routed to
// its vector, if it has one and the vector is unmasked.
func (t *Transport) bindIRQ(i int) error {
	q := &t.queues[i]
	if q.call == nil || q.irqfd || q.vector == NoVector || t.msix.Masked(int(q.vector)) {
		return nil
	}
	v := int(q.vector)
	r, ok := t.routes[v]
	if ok {
		if err := t.updateRoute(v, r); err != nil {
			return err
		}
	} else {
		msg := t.msix.Message(v)
		gsi, err := t.vm.AddMSIRoute(msg.Addr, msg.Data)
		if err != nil {
			return fmt.Errorf("route MSI-X vector %d of queue %d: %w", v, i, err)
		}
		r = &route{gsi: gsi, msg: msg}
		t.routes[v] = r
	}
	if err := t.vm.AttachIRQFD(q.call, r.gsi); err != nil {
		return fmt.Errorf("attach irqfd of queue %d to GSI %d: %w", i, r.gsi, err)
	}
	q.irqGSI, q.irqfd = r.gsi, true
	return nil
}

func (t *Transport) updateRoute(v int, r *route) error {
	msg := t.msix.Message(v)
	if msg == r.msg {
		return nil
	}
	if err := t.vm.UpdateMSIRoute(r.gsi, msg.Addr, msg.Data); err != nil {
		return fmt.Errorf("update route of MSI-X vector %d (GSI %d): %w", v, r.gsi, err)
	}
	r.msg = msg
	return nil
}

func (t *Transport) unbindIRQ(i int) error {
	q := &t.queues[i]
	if !q.irqfd {
		return nil
	}
	q.irqfd = false
	if err := t.vm.DetachIRQFD(q.call, q.irqGSI); err != nil {
		return fmt.Errorf("detach irqfd of queue %d from GSI %d: %w", i, q.irqGSI, err)
	}
	return nil
}

// pollCall moves an interrupt waiting in queue i's Call eventfd (signalled
// while its irqfd was detached) into the PBA.
func (t *Transport) pollCall(i int) {
	q := &t.queues[i]
	if q.call == nil || q.irqfd || q.vector == NoVector {
		return
	}
	set, err := q.call.Clear()
	if err != nil {
		t.log.Warn("poll queue interrupt", "queue", i, "err", err)
		return
	}
	if set {
		t.msix.SetPending(int(q.vector))
	}
}

// pollMasked runs before the driver reads the PBA, so it shows the
// interrupts of masked vectors.
func (t *Transport) pollMasked() {
	if !t.active {
		return
	}
	for i := range t.queues {
		if q := &t.queues[i]; q.vector != NoVector && t.msix.Masked(int(q.vector)) {
			t.pollCall(i)
		}
	}
}
