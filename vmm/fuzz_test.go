package vmm

import (
	"encoding/binary"
	"testing"
	"unsafe"

	"github.com/hlsvmm/hlsvmm/internal/uapi"
	"github.com/hlsvmm/hlsvmm/vmm/bus"
)

// FuzzHandleExit feeds arbitrary kvm_run contents (exit reason, the exit
// union, the port-I/O data page) to the exit handler: it must never panic
// or touch memory outside the run area, whatever KVM (or a guest steering
// string I/O) put there.
func FuzzHandleExit(f *testing.F) {
	seed := func(reason uint32, union []byte) []byte {
		b := make([]byte, 4+len(union))
		binary.LittleEndian.PutUint32(b, reason)
		return append(b[:4], union...)
	}
	f.Add(seed(uapi.KVM_EXIT_IO, []byte{1, 1, 0xf8, 0x03, 5, 0, 0, 0, 0, 0x10, 0, 0, 0, 0, 0, 0}))
	f.Add(seed(uapi.KVM_EXIT_IO, []byte{0, 4, 0xfc, 0x0c, 0xff, 0xff, 0xff, 0xff, 0, 0x10, 0, 0, 0, 0, 0, 0}))
	f.Add(seed(uapi.KVM_EXIT_MMIO, []byte{0, 0, 0, 0xd0, 0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 4, 0, 0, 0, 1}))
	f.Add(seed(uapi.KVM_EXIT_MMIO, []byte{0, 0, 0, 0xd0, 0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 0xff, 0, 0, 0, 0}))
	f.Add(seed(uapi.KVM_EXIT_INTERNAL_ERROR, []byte{1, 0, 0, 0, 0xff, 0xff, 0, 0}))
	f.Add(seed(uapi.KVM_EXIT_SYSTEM_EVENT, []byte{2, 0, 0, 0}))
	f.Fuzz(func(t *testing.T, in []byte) {
		if len(in) < 4 {
			return
		}
		words := make([]uint64, 2*4096/8)
		m := unsafe.Slice((*byte)(unsafe.Pointer(&words[0])), 2*4096)
		c := &VCPU{id: 0, fd: -1, mapping: m, run: (*uapi.KvmRun)(unsafe.Pointer(&m[0]))}
		c.run.ExitReason = binary.LittleEndian.Uint32(in)
		n := copy(c.run.Exit[:], in[4:])
		copy(m[4096:], in[4+n:])
		var pio, mmio bus.Bus
		rec := &recorder{}
		pio.Register(0, 0x10000, rec)
		mmio.Register(0xd0000000, 0x1000, rec)
		s := c.handleExit(&pio, &mmio, quietLog())
		if s != nil && s.Kind == 0 {
			t.Fatalf("stop without a kind: %+v", s)
		}
	})
}
