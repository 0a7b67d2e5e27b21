package hostnet

import (
	"bytes"
	"encoding/binary"
	"reflect"
	"testing"

	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

func findChain(t *testing.T, ts []tableSpec, table, chain string) chainSpec {
	t.Helper()
	for _, tb := range ts {
		for _, c := range tb.chains {
			if tb.name == table && c.name == chain {
				return c
			}
		}
	}
	t.Fatalf("no chain %s %s", table, chain)
	return chainSpec{}
}

func TestRulesetForward(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Forwards = []Forward{{17122, 22}}
	rs := buildRuleset(&cfg)
	pre := findChain(t, rs, NATTable, "prerouting")
	if pre.hook != unix.NF_INET_PRE_ROUTING || pre.priority != -100 || len(pre.rules) != 1 {
		t.Fatalf("prerouting: %+v", pre)
	}
	want := []expr.Any{
		&expr.Fib{Register: 1, FlagDADDR: true, ResultADDRTYPE: true},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binary.NativeEndian.AppendUint32(nil, unix.RTN_LOCAL)},
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.IPPROTO_TCP}},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{0x42, 0xe2}}, // 17122
		&expr.Immediate{Register: 1, Data: []byte{10, 177, 0, 10}},
		&expr.Immediate{Register: 2, Data: []byte{0, 22}},
		&expr.NAT{Type: expr.NATTypeDestNAT, Family: unix.NFPROTO_IPV4, RegAddrMin: 1, RegAddrMax: 1, RegProtoMin: 2, RegProtoMax: 2, Specified: true},
	}
	if !reflect.DeepEqual(pre.rules[0].exprs, want) {
		t.Errorf("prerouting rule:\n got %#v\nwant %#v", pre.rules[0].exprs, want)
	}
	out := findChain(t, rs, NATTable, "output")
	if out.hook != unix.NF_INET_LOCAL_OUT || out.priority != -100 {
		t.Errorf("output chain: %+v", out)
	}
	// ip daddr 127.0.0.1 (exact, no bitwise) before the port match.
	o := out.rules[0].exprs
	if p, ok := o[0].(*expr.Payload); !ok || p.Offset != 16 || p.Len != 4 {
		t.Errorf("output rule starts with %#v", o[0])
	}
	if c, ok := o[1].(*expr.Cmp); !ok || !bytes.Equal(c.Data, []byte{127, 0, 0, 1}) {
		t.Errorf("output rule daddr: %#v", o[1])
	}
}

func TestRulesetInterfaceNamesPadded(t *testing.T) {
	cfg := DefaultConfig()
	for _, tb := range buildRuleset(&cfg) {
		for _, c := range tb.chains {
			for _, r := range c.rules {
				for i, e := range r.exprs {
					m, ok := e.(*expr.Meta)
					if !ok || (m.Key != expr.MetaKeyIIFNAME && m.Key != expr.MetaKeyOIFNAME) {
						continue
					}
					if cmp := r.exprs[i+1].(*expr.Cmp); len(cmp.Data) != unix.IFNAMSIZ {
						t.Errorf("%s %s %q: name compared on %d bytes", tb.name, c.name, r.comment, len(cmp.Data))
					}
				}
			}
		}
	}
}

func TestRulesetMasqueradeAndMartians(t *testing.T) {
	cfg := DefaultConfig()
	rs := buildRuleset(&cfg)
	post := findChain(t, rs, NATTable, "postrouting")
	if len(post.rules) != 2 || post.priority != 100 {
		t.Fatalf("postrouting: %+v", post)
	}
	// 127.0.0.0/8 leaving hlsbr0 is masqueraded.
	lo := post.rules[1].exprs
	if b, ok := lo[1].(*expr.Bitwise); !ok || !bytes.Equal(b.Mask, []byte{255, 0, 0, 0}) {
		t.Errorf("loopback masquerade mask: %#v", lo[1])
	}
	if c := lo[2].(*expr.Cmp); !bytes.Equal(c.Data, []byte{127, 0, 0, 0}) {
		t.Errorf("loopback masquerade net: %#v", c)
	}
	if c := lo[4].(*expr.Cmp); c.Op != expr.CmpOpEq || !bytes.Equal(c.Data, ifnameBytes("hlsbr0")) {
		t.Errorf("loopback masquerade oifname: %#v", c)
	}
	if _, ok := lo[len(lo)-1].(*expr.Masq); !ok {
		t.Error("no masquerade")
	}
	mart := findChain(t, rs, FilterTable, "prerouting")
	if mart.hook != unix.NF_INET_PRE_ROUTING || mart.priority != -300 || len(mart.rules) != 2 {
		t.Fatalf("martian chain: %+v", mart)
	}
	for _, r := range mart.rules {
		if v := r.exprs[len(r.exprs)-1].(*expr.Verdict); v.Kind != expr.VerdictDrop {
			t.Errorf("martian rule verdict %v", v.Kind)
		}
		if c := r.exprs[1].(*expr.Cmp); c.Op != expr.CmpOpNeq || !bytes.Equal(c.Data, ifnameBytes("lo")) {
			t.Errorf("martian rule iifname: %#v", c)
		}
	}
}
