package net

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/hlsvmm/hlsvmm/virtio"
	"github.com/hlsvmm/hlsvmm/virtio/queue"
)

// The control queue (virtio 1.2 §5.1.6.5), served by hlsvmm whatever the
// datapath. Each chain is one command:
//
//	struct virtio_net_ctrl { u8 class; u8 command; u8 data[]; u8 ack; }
//
// class, command and data device-readable, ack the first device-writable
// byte. hlsvmm answers:
//
//   - VIRTIO_NET_CTRL_MQ / VQ_PAIRS_SET (le16 n, 1 to max_virtqueue_pairs,
//     every pair below n enabled by the driver; needs VIRTIO_NET_F_MQ):
//     attaches the TAP queues of pairs 0..n-1, detaches the others, OK.
//   - VIRTIO_NET_CTRL_RX / PROMISC, ALLMULTI (u8 0 or 1; needs
//     VIRTIO_NET_F_CTRL_RX): recorded, OK.
//   - VIRTIO_NET_CTRL_MAC / TABLE_SET (a unicast then a multicast table,
//     each le32 entries + 6 bytes per entry, nothing after; needs
//     VIRTIO_NET_F_CTRL_RX): entry counts recorded, OK.
//   - everything else — the RX commands of VIRTIO_NET_F_CTRL_RX_EXTRA,
//     MAC ADDR_SET (VIRTIO_NET_F_CTRL_MAC_ADDR), VLAN, ANNOUNCE, RSS, guest
//     offloads, unknown classes, wrong lengths or values, commands whose
//     feature was not negotiated: ERR.
//
// hlsvmm does not filter frames. The TAP hands the guest whatever the host
// sends to it (the bridge forwards by destination MAC and floods the rest),
// and with vhost-net frames never pass through hlsvmm at all. The RX-mode
// and filter commands are acknowledged so the driver's bookkeeping works
// (Linux sends them on every RX-mode change) and kept for inspection
// (Device.RXMode); the guest's own stack drops frames not meant for it.
//
// A chain without a device-writable byte cannot be answered: the device is
// marked as needing a reset.

// Control classes and commands (include/uapi/linux/virtio_net.h).
const (
	ctrlRX             = 0 // VIRTIO_NET_CTRL_RX
	ctrlRXPromisc      = 0 // VIRTIO_NET_CTRL_RX_PROMISC
	ctrlRXAllMulti     = 1 // VIRTIO_NET_CTRL_RX_ALLMULTI; 2-5 need CTRL_RX_EXTRA
	ctrlMAC            = 1 // VIRTIO_NET_CTRL_MAC
	ctrlMACTableSet    = 0 // VIRTIO_NET_CTRL_MAC_TABLE_SET
	ctrlMACAddrSet     = 1 // VIRTIO_NET_CTRL_MAC_ADDR_SET: needs CTRL_MAC_ADDR, not offered
	ctrlMQ             = 4 // VIRTIO_NET_CTRL_MQ
	ctrlMQVQPairsSet   = 0 // VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET
	ctrlAckOK          = 0 // VIRTIO_NET_OK
	ctrlAckErr         = 1 // VIRTIO_NET_ERR
	macLen             = 6
	ctrlQueueSize      = 64 // largest control queue offered (QEMU's too)
	maxCtrlCommandSize = 64 << 10
)

// Why a command is answered VIRTIO_NET_ERR, matched with errors.Is.
var (
	errCtrlUnsupported = errors.New("command not supported")
	errCtrlInvalid     = errors.New("invalid command")
	errCtrlApply       = errors.New("command failed")
)

// RXMode is the receive filtering the driver last asked for through the
// control queue. hlsvmm records it but does not filter (see above).
type RXMode struct {
	Promisc, AllMulti bool
	// Unicast and Multicast are the entry counts of the last MAC filter
	// tables (VIRTIO_NET_CTRL_MAC_TABLE_SET).
	Unicast, Multicast uint32
}

// ctrlCommand is one decoded, validated command.
type ctrlCommand struct {
	class, cmd         uint8
	on                 bool   // RX PROMISC, ALLMULTI
	pairs              uint16 // MQ VQ_PAIRS_SET
	unicast, multicast uint32 // MAC TABLE_SET entry counts
}

// ctrlClassOf is the counting class of a command class byte.
func ctrlClassOf(class uint8) CtrlClass {
	switch class {
	case ctrlRX:
		return CtrlClassRX
	case ctrlMAC:
		return CtrlClassMAC
	case ctrlMQ:
		return CtrlClassMQ
	}
	return CtrlClassOther
}

// parseCtrl decodes the device-readable part of a command (class, command,
// data) against the negotiated features and the device's pair count. An
// error means the answer is VIRTIO_NET_ERR.
func parseCtrl(b []byte, acked uint64, maxPairs int) (ctrlCommand, error) {
	if len(b) < 2 {
		return ctrlCommand{}, fmt.Errorf("%w: %d bytes, no class and command", errCtrlInvalid, len(b))
	}
	c := ctrlCommand{class: b[0], cmd: b[1]}
	data := b[2:]
	need := func(bit uint, name string) error {
		if !virtio.HasFeature(acked, bit) {
			return fmt.Errorf("%w: class %d command %d needs %s, not negotiated", errCtrlUnsupported, c.class, c.cmd, name)
		}
		return nil
	}
	switch {
	case c.class == ctrlRX && (c.cmd == ctrlRXPromisc || c.cmd == ctrlRXAllMulti):
		if err := need(FeatureCtrlRX, "VIRTIO_NET_F_CTRL_RX"); err != nil {
			return c, err
		}
		if len(data) != 1 || data[0] > 1 {
			return c, fmt.Errorf("%w: RX command %d: data % x, want one byte 0 or 1", errCtrlInvalid, c.cmd, data)
		}
		c.on = data[0] == 1
	case c.class == ctrlMAC && c.cmd == ctrlMACTableSet:
		if err := need(FeatureCtrlRX, "VIRTIO_NET_F_CTRL_RX"); err != nil {
			return c, err
		}
		var err error
		if c.unicast, c.multicast, err = parseMACTables(data); err != nil {
			return c, err
		}
	case c.class == ctrlMQ && c.cmd == ctrlMQVQPairsSet:
		if err := need(FeatureMQ, "VIRTIO_NET_F_MQ"); err != nil {
			return c, err
		}
		if len(data) != 2 {
			return c, fmt.Errorf("%w: VQ_PAIRS_SET with %d bytes of data, want 2", errCtrlInvalid, len(data))
		}
		c.pairs = binary.LittleEndian.Uint16(data)
		if c.pairs < 1 || int(c.pairs) > maxPairs {
			return c, fmt.Errorf("%w: VQ_PAIRS_SET %d, want 1 to %d", errCtrlInvalid, c.pairs, maxPairs)
		}
	default:
		return c, fmt.Errorf("%w: class %d command %d", errCtrlUnsupported, c.class, c.cmd)
	}
	return c, nil
}

// parseMACTables checks the data of MAC_TABLE_SET — two struct
// virtio_net_ctrl_mac { le32 entries; u8 macs[entries][6]; }, unicast then
// multicast, filling the data exactly — and returns the entry counts.
func parseMACTables(data []byte) (unicast, multicast uint32, err error) {
	var n [2]uint32
	for i, name := range []string{"unicast", "multicast"} {
		if len(data) < 4 {
			return 0, 0, fmt.Errorf("%w: MAC_TABLE_SET: %s table header cut short (%d bytes)", errCtrlInvalid, name, len(data))
		}
		n[i] = binary.LittleEndian.Uint32(data)
		data = data[4:]
		size := uint64(n[i]) * macLen
		if size > uint64(len(data)) {
			return 0, 0, fmt.Errorf("%w: MAC_TABLE_SET: %s table of %d entries, only %d bytes left", errCtrlInvalid, name, n[i], len(data))
		}
		data = data[size:]
	}
	if len(data) != 0 {
		return 0, 0, fmt.Errorf("%w: MAC_TABLE_SET: %d bytes after the tables", errCtrlInvalid, len(data))
	}
	return n[0], n[1], nil
}

// serveCtrl starts the worker answering the control queue qc.
func (d *Device) serveCtrl(a virtio.Activation, qc virtio.QueueConfig) error {
	q, err := queue.New(a.Memory, qc, a.Features)
	if err != nil {
		return fmt.Errorf("set up control queue %d: %w", qc.Index, err)
	}
	w := &queue.Workers{Name: "virtio-net control queue", Log: d.log, Broken: func(i uint16, err error) {
		d.metrics.MalformedChains.Add(1)
		err = fmt.Errorf("virtio-net control queue %d: %w", i, err)
		d.log.Warn("device needs reset", "err", err)
		if a.Broken != nil {
			a.Broken(err)
		}
	}}
	var buf []byte // the command's readable bytes, reused
	w.Serve(q, qc, queue.Counters{}, func(c *queue.Chain) (written uint32, err error) {
		written, buf, err = d.handleCtrl(c, buf)
		return written, err
	})
	d.ctrl = w
	return nil
}

// handleCtrl answers one command chain: it writes the ack byte and returns
// how many bytes it wrote (1). An error (no writable byte) means the chain
// cannot be answered: the worker ends and the device needs a reset.
func (d *Device) handleCtrl(c *queue.Chain, buf []byte) (uint32, []byte, error) {
	if c.WriteLen == 0 {
		return 0, buf, fmt.Errorf("%w: control command at head %d has no device-writable ack byte", queue.ErrMalformed, c.Head)
	}
	class := CtrlClassOther
	if len(c.Readable) > 0 { // segments are never empty
		class = ctrlClassOf(c.Readable[0][0])
	}
	var err error
	buf = buf[:0]
	if c.ReadLen > maxCtrlCommandSize {
		err = fmt.Errorf("%w: %d bytes, more than %d", errCtrlInvalid, c.ReadLen, maxCtrlCommandSize)
	} else {
		for _, seg := range c.Readable {
			buf = append(buf, seg...)
		}
		d.smu.Lock()
		var cmd ctrlCommand
		if cmd, err = parseCtrl(buf, d.acked, len(d.pairs)); err == nil {
			err = d.applyCtrlLocked(cmd)
		}
		d.smu.Unlock()
	}
	ack := byte(ctrlAckOK)
	if err != nil {
		ack = ctrlAckErr
		d.metrics.CtrlErr[class].Add(1)
		d.log.Debug("virtio-net control command refused", "err", err)
	} else {
		d.metrics.CtrlOK[class].Add(1)
	}
	// WriteLen > 0 means a non-empty writable segment: zero-length
	// descriptors yield none.
	c.Writable[0][0] = ack
	clear(buf) // the copy of guest data is not kept past the command
	return 1, buf, nil
}

// applyCtrlLocked carries out a valid command. d.smu is held.
func (d *Device) applyCtrlLocked(c ctrlCommand) error {
	switch c.class {
	case ctrlRX:
		if c.cmd == ctrlRXPromisc {
			d.rxMode.Promisc = c.on
		} else {
			d.rxMode.AllMulti = c.on
		}
	case ctrlMAC:
		d.rxMode.Unicast, d.rxMode.Multicast = c.unicast, c.multicast
	case ctrlMQ:
		n := int(c.pairs)
		for i := range n {
			if !d.enabled[i] {
				return fmt.Errorf("%w: VQ_PAIRS_SET %d: the driver did not enable queue pair %d", errCtrlInvalid, n, i)
			}
		}
		if err := d.attachPairsLocked(n); err != nil {
			d.log.Error("virtio-net: switch queue pairs", "from", d.inUse, "to", n, "err", err)
			if rerr := d.attachPairsLocked(d.inUse); rerr != nil {
				d.log.Error("virtio-net: restore queue pairs", "pairs", d.inUse, "err", rerr)
			}
			return fmt.Errorf("%w: VQ_PAIRS_SET %d: %w", errCtrlApply, n, err)
		}
		if n != d.inUse {
			d.log.Info("virtio-net queue pairs in use", "pairs", n, "max", len(d.pairs))
		}
		d.setInUseLocked(n)
	}
	return nil
}

// attachPairsLocked attaches the TAP queues of pairs 0..n-1 and detaches
// the others, attaching first. Pair 0's queue is never detached (the
// driver always uses it), so a one-pair device never calls
// SetQueueEnabled. d.smu is held (or the device is not shared yet).
func (d *Device) attachPairsLocked(n int) error {
	var errs []error
	for _, on := range []bool{true, false} {
		for i := 1; i < len(d.pairs); i++ {
			if (i < n) != on {
				continue
			}
			if err := d.pairs[i].Tap.SetQueueEnabled(on); err != nil {
				what := "attach"
				if !on {
					what = "detach"
				}
				errs = append(errs, fmt.Errorf("%s TAP queue of pair %d: %w", what, i, err))
			}
		}
	}
	return errors.Join(errs...)
}

// setInUseLocked records the number of pairs in use. d.smu is held.
func (d *Device) setInUseLocked(n int) {
	d.inUse = n
	d.metrics.ActivePairs.Store(uint64(n))
}

// ActivePairs is the number of queue pairs in use: 0 while the device is
// not active, 1 from activation until the driver sends VQ_PAIRS_SET.
func (d *Device) ActivePairs() int {
	d.smu.Lock()
	defer d.smu.Unlock()
	return d.inUse
}

// RXMode is the receive filtering the driver last asked for (zero after a
// reset).
func (d *Device) RXMode() RXMode {
	d.smu.Lock()
	defer d.smu.Unlock()
	return d.rxMode
}
