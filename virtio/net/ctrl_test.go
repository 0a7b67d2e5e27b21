package net

import (
	"encoding/binary"
	"errors"
	"testing"

	"github.com/hlsvmm/hlsvmm/virtio/queue"
)

// macTables is MAC_TABLE_SET data with uc unicast and mc multicast entries.
func macTables(uc, mc uint32) []byte {
	b := binary.LittleEndian.AppendUint32(nil, uc)
	b = append(b, make([]byte, macLen*uc)...)
	b = binary.LittleEndian.AppendUint32(b, mc)
	return append(b, make([]byte, macLen*mc)...)
}

func cmd(class, command byte, data ...byte) []byte { return append([]byte{class, command}, data...) }

// activeRig is a 4-pair device activated with every queue and the given
// features, for calling the control handler directly.
func activeRig(t *testing.T, acked uint64) *mqRig {
	t.Helper()
	r := newMQRig(t, 4)
	if err := r.d.Activate(newMQGuest(t, acked, 256, allQueues...).a); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.d.Reset)
	return r
}

// answer runs one command through the handler with its readable bytes in
// one buffer and a one-byte ack, and returns the ack.
func answer(t *testing.T, d *Device, b []byte) byte {
	t.Helper()
	ack := []byte{0xee}
	c := &queue.Chain{Readable: [][]byte{b}, ReadLen: uint32(len(b)), Writable: [][]byte{ack}, WriteLen: 1}
	if len(b) == 0 {
		c.Readable = nil
	}
	n, _, err := d.handleCtrl(c, nil)
	if err != nil || n != 1 {
		t.Fatalf("command % x: handler returned %d, %v", b, n, err)
	}
	if ack[0] != ctrlAckOK && ack[0] != ctrlAckErr {
		t.Fatalf("command % x: ack %#x", b, ack[0])
	}
	return ack[0]
}

func TestControlCommands(t *testing.T) {
	r := activeRig(t, ackedMQ)
	d := r.d
	for _, tc := range []struct {
		name  string
		cmd   []byte
		ack   byte
		class CtrlClass
		want  RXMode // after the command
	}{
		{"promisc on", cmd(ctrlRX, ctrlRXPromisc, 1), ctrlAckOK, CtrlClassRX, RXMode{Promisc: true}},
		{"allmulti on", cmd(ctrlRX, ctrlRXAllMulti, 1), ctrlAckOK, CtrlClassRX, RXMode{Promisc: true, AllMulti: true}},
		{"promisc off", cmd(ctrlRX, ctrlRXPromisc, 0), ctrlAckOK, CtrlClassRX, RXMode{AllMulti: true}},
		{"promisc 2", cmd(ctrlRX, ctrlRXPromisc, 2), ctrlAckErr, CtrlClassRX, RXMode{AllMulti: true}},
		{"promisc no data", cmd(ctrlRX, ctrlRXPromisc), ctrlAckErr, CtrlClassRX, RXMode{AllMulti: true}},
		{"allmulti two bytes", cmd(ctrlRX, ctrlRXAllMulti, 0, 0), ctrlAckErr, CtrlClassRX, RXMode{AllMulti: true}},
		{"alluni (CTRL_RX_EXTRA)", cmd(ctrlRX, 2, 1), ctrlAckErr, CtrlClassRX, RXMode{AllMulti: true}},
		{"nomulti", cmd(ctrlRX, 3, 1), ctrlAckErr, CtrlClassRX, RXMode{AllMulti: true}},
		{"nouni", cmd(ctrlRX, 4, 1), ctrlAckErr, CtrlClassRX, RXMode{AllMulti: true}},
		{"nobcast", cmd(ctrlRX, 5, 1), ctrlAckErr, CtrlClassRX, RXMode{AllMulti: true}},
		{"mac tables 2+3", cmd(ctrlMAC, ctrlMACTableSet, macTables(2, 3)...), ctrlAckOK, CtrlClassMAC, RXMode{AllMulti: true, Unicast: 2, Multicast: 3}},
		{"mac tables empty", cmd(ctrlMAC, ctrlMACTableSet, macTables(0, 0)...), ctrlAckOK, CtrlClassMAC, RXMode{AllMulti: true}},
		{"mac tables 0+1", cmd(ctrlMAC, ctrlMACTableSet, macTables(0, 1)...), ctrlAckOK, CtrlClassMAC, RXMode{AllMulti: true, Multicast: 1}},
		{"mac tables cut short", cmd(ctrlMAC, ctrlMACTableSet, macTables(2, 3)[:30]...), ctrlAckErr, CtrlClassMAC, RXMode{AllMulti: true, Multicast: 1}},
		{"mac tables one missing", cmd(ctrlMAC, ctrlMACTableSet, macTables(2, 0)[:16]...), ctrlAckErr, CtrlClassMAC, RXMode{AllMulti: true, Multicast: 1}},
		{"mac tables trailing byte", cmd(ctrlMAC, ctrlMACTableSet, append(macTables(1, 1), 0)...), ctrlAckErr, CtrlClassMAC, RXMode{AllMulti: true, Multicast: 1}},
		{"mac tables huge count", cmd(ctrlMAC, ctrlMACTableSet, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0), ctrlAckErr, CtrlClassMAC, RXMode{AllMulti: true, Multicast: 1}},
		{"mac tables no data", cmd(ctrlMAC, ctrlMACTableSet), ctrlAckErr, CtrlClassMAC, RXMode{AllMulti: true, Multicast: 1}},
		{"mac addr set (CTRL_MAC_ADDR)", cmd(ctrlMAC, ctrlMACAddrSet, 2, 0, 0, 0, 0, 1), ctrlAckErr, CtrlClassMAC, RXMode{AllMulti: true, Multicast: 1}},
		{"mac unknown", cmd(ctrlMAC, 7, macTables(0, 0)...), ctrlAckErr, CtrlClassMAC, RXMode{AllMulti: true, Multicast: 1}},
		{"pairs 4", pairsSet(4), ctrlAckOK, CtrlClassMQ, RXMode{AllMulti: true, Multicast: 1}},
		{"pairs 5", pairsSet(5), ctrlAckErr, CtrlClassMQ, RXMode{AllMulti: true, Multicast: 1}},
		{"pairs 0", pairsSet(0), ctrlAckErr, CtrlClassMQ, RXMode{AllMulti: true, Multicast: 1}},
		{"pairs 0xffff", pairsSet(0xffff), ctrlAckErr, CtrlClassMQ, RXMode{AllMulti: true, Multicast: 1}},
		{"pairs 1 byte", cmd(ctrlMQ, ctrlMQVQPairsSet, 1), ctrlAckErr, CtrlClassMQ, RXMode{AllMulti: true, Multicast: 1}},
		{"pairs 3 bytes", cmd(ctrlMQ, ctrlMQVQPairsSet, 1, 0, 0), ctrlAckErr, CtrlClassMQ, RXMode{AllMulti: true, Multicast: 1}},
		{"rss config", cmd(ctrlMQ, 1, make([]byte, 20)...), ctrlAckErr, CtrlClassMQ, RXMode{AllMulti: true, Multicast: 1}},
		{"hash config", cmd(ctrlMQ, 2, make([]byte, 20)...), ctrlAckErr, CtrlClassMQ, RXMode{AllMulti: true, Multicast: 1}},
		{"vlan add", cmd(2, 0, 1, 0), ctrlAckErr, CtrlClassOther, RXMode{AllMulti: true, Multicast: 1}},
		{"announce ack", cmd(3, 0), ctrlAckErr, CtrlClassOther, RXMode{AllMulti: true, Multicast: 1}},
		{"guest offloads", cmd(5, 0, 0, 0, 0, 0, 0, 0, 0, 0), ctrlAckErr, CtrlClassOther, RXMode{AllMulti: true, Multicast: 1}},
		{"class 255", cmd(255, 255), ctrlAckErr, CtrlClassOther, RXMode{AllMulti: true, Multicast: 1}},
		{"class only", []byte{ctrlMQ}, ctrlAckErr, CtrlClassMQ, RXMode{AllMulti: true, Multicast: 1}},
		{"nothing readable", nil, ctrlAckErr, CtrlClassOther, RXMode{AllMulti: true, Multicast: 1}},
		{"pairs 2", pairsSet(2), ctrlAckOK, CtrlClassMQ, RXMode{AllMulti: true, Multicast: 1}},
	} {
		before := d.Metrics().ControlSnapshot()
		if ack := answer(t, d, tc.cmd); ack != tc.ack {
			t.Errorf("%s: ack %d, want %d", tc.name, ack, tc.ack)
		}
		if got := d.RXMode(); got != tc.want {
			t.Errorf("%s: RX mode %+v, want %+v", tc.name, got, tc.want)
		}
		after := d.Metrics().ControlSnapshot()
		counted := &after.CtrlOK
		if tc.ack == ctrlAckErr {
			counted = &after.CtrlErr
		}
		counted[tc.class]--
		if after.CtrlOK != before.CtrlOK || after.CtrlErr != before.CtrlErr {
			t.Errorf("%s: counters went from %+v to %+v (one more in class %s expected)", tc.name, before, d.Metrics().ControlSnapshot(), tc.class)
		}
	}
	if d.ActivePairs() != 2 {
		t.Errorf("ActivePairs %d, want 2", d.ActivePairs())
	}
	r.wantAttached(2)
}

// TestControlNeedsFeatures: commands whose feature was not negotiated are
// refused.
func TestControlNeedsFeatures(t *testing.T) {
	d := activeRig(t, v1|1<<FeatureCtrlVQ|1<<FeatureMQ).d // no CTRL_RX
	for _, c := range [][]byte{cmd(ctrlRX, ctrlRXPromisc, 1), cmd(ctrlMAC, ctrlMACTableSet, macTables(0, 0)...)} {
		if ack := answer(t, d, c); ack != ctrlAckErr {
			t.Errorf("% x without CTRL_RX: ack %d", c, ack)
		}
	}
	if ack := answer(t, d, pairsSet(3)); ack != ctrlAckOK {
		t.Errorf("VQ_PAIRS_SET 3 with MQ: ack %d", ack)
	}
	_, err := parseCtrl(pairsSet(1), v1|1<<FeatureCtrlVQ|1<<FeatureCtrlRX, 4)
	if !errors.Is(err, errCtrlUnsupported) {
		t.Errorf("VQ_PAIRS_SET without MQ: %v", err)
	}
}

func TestControlNoAckByte(t *testing.T) {
	d := activeRig(t, ackedMQ).d
	b := pairsSet(2)
	_, _, err := d.handleCtrl(&queue.Chain{Readable: [][]byte{b}, ReadLen: uint32(len(b))}, nil)
	if !errors.Is(err, queue.ErrMalformed) {
		t.Fatalf("command without an ack byte: %v, want ErrMalformed", err)
	}
	if d.ActivePairs() != 1 {
		t.Fatalf("the unanswerable command was carried out: %d pairs", d.ActivePairs())
	}
}

// FuzzCtrl feeds arbitrary commands to the control queue's handler, split
// into readable buffers at arbitrary points, and to the parser with
// arbitrary features: neither may panic, and every answer must be what the
// command's bytes call for.
func FuzzCtrl(f *testing.F) {
	f.Add(pairsSet(3), uint8(7), uint8(1), uint8(1))
	f.Add(cmd(ctrlRX, ctrlRXPromisc, 1), uint8(7), uint8(0), uint8(1))
	f.Add(cmd(ctrlMAC, ctrlMACTableSet, macTables(1, 2)...), uint8(3), uint8(9), uint8(2))
	f.Add([]byte{ctrlMQ}, uint8(7), uint8(0), uint8(0))
	f.Fuzz(func(t *testing.T, b []byte, features, split, writeLen uint8) {
		// The parser, with any combination of CTRL_RX, MQ and CTRL_VQ.
		acked := v1
		for i, bit := range []uint{FeatureCtrlRX, FeatureMQ, FeatureCtrlVQ} {
			if features&(1<<i) != 0 {
				acked |= 1 << bit
			}
		}
		c, err := parseCtrl(b, acked, 4)
		if err == nil {
			checkParsed(t, b, c, acked)
		}

		// The handler of a device as activated with every feature and pair
		// (set directly: a real activation per input would be slow).
		r := newMQRig(t, 4)
		r.d.acked, r.d.enabled = ackedMQ, []bool{true, true, true, true}
		r.d.setInUseLocked(1)
		var segs [][]byte
		for rest := b; len(rest) > 0; {
			n := min(len(rest), int(split%8)+1)
			segs, rest = append(segs, rest[:n]), rest[n:]
		}
		ack := make([]byte, writeLen%3)
		ch := &queue.Chain{Readable: segs, ReadLen: uint32(len(b)), WriteLen: uint32(len(ack))}
		if len(ack) > 0 {
			ch.Writable = [][]byte{ack}
		}
		n, _, err := r.d.handleCtrl(ch, nil)
		if len(ack) == 0 {
			if err == nil || n != 0 {
				t.Fatalf("no ack byte: handler returned %d, %v", n, err)
			}
			return
		}
		if err != nil || n != 1 {
			t.Fatalf("handler returned %d, %v", n, err)
		}
		c, perr := parseCtrl(b, ackedMQ, 4)
		if want := byte(map[bool]byte{true: ctrlAckOK, false: ctrlAckErr}[perr == nil]); ack[0] != want {
			t.Fatalf("ack %d, want %d (parse: %v)", ack[0], want, perr)
		}
		wantPairs := 1
		if perr == nil && c.class == ctrlMQ {
			wantPairs = int(c.pairs)
		}
		if r.d.ActivePairs() != wantPairs {
			t.Fatalf("%d pairs in use, want %d", r.d.ActivePairs(), wantPairs)
		}
		r.wantAttached(wantPairs)
	})
}

// checkParsed checks an accepted command against its bytes.
func checkParsed(t *testing.T, b []byte, c ctrlCommand, acked uint64) {
	t.Helper()
	has := func(bit uint) bool { return acked&(1<<bit) != 0 }
	switch {
	case c.class == ctrlRX:
		if !has(FeatureCtrlRX) || len(b) != 3 || b[1] > ctrlRXAllMulti || b[2] > 1 || c.on != (b[2] == 1) {
			t.Fatalf("accepted RX command % x as %+v", b, c)
		}
	case c.class == ctrlMAC:
		if !has(FeatureCtrlRX) || b[1] != ctrlMACTableSet || len(b) != 2+8+macLen*int(c.unicast+c.multicast) {
			t.Fatalf("accepted MAC command % x as %+v", b, c)
		}
	case c.class == ctrlMQ:
		if !has(FeatureMQ) || len(b) != 4 || b[1] != ctrlMQVQPairsSet || c.pairs < 1 || c.pairs > 4 {
			t.Fatalf("accepted MQ command % x as %+v", b, c)
		}
	default:
		t.Fatalf("accepted command % x of class %d", b, c.class)
	}
}
