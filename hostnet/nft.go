package hostnet

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
	"golang.org/x/sys/unix"
)

// Chain priorities, numeric on purpose: older nft (1.0.6) refuses the name
// "dstnat" for an output hook, and numbers read the same everywhere.
const (
	prioRaw     = -300 // before conntrack: addresses as on the wire
	prioDstNAT  = -100
	prioFilter1 = -1 // just before filter tables at 0
	prioSrcNAT  = 100
)

var loopbackNet = netip.MustParsePrefix("127.0.0.0/8")

// chainSpec is a base chain as we want it.
type chainSpec struct {
	name     string
	typ      nftables.ChainType
	hook     nftables.ChainHook
	priority nftables.ChainPriority
	rules    []ruleSpec
}

// ruleSpec is one rule: its expressions and a comment (shown by nft list).
type ruleSpec struct {
	comment string
	exprs   []expr.Any
}

// tableSpec is one of our tables, family ip.
type tableSpec struct {
	name   string
	chains []chainSpec
}

// buildRuleset is the whole of what hlsvmm puts in nftables for cfg: the
// tables hls_nat and hls_filter, as REFERENCE.md's measured facts require.
func buildRuleset(cfg *Config) []tableSpec {
	br := cfg.Bridge
	var pre, out []ruleSpec
	for _, f := range cfg.Forwards {
		// Only connections to one of the host's own addresses: without
		// `fib daddr type local` the VM's own connections to some remote
		// host's port would be hijacked back to the VM.
		pre = append(pre, ruleSpec{
			comment: fmt.Sprintf("hlsvmm: host:%d -> %v:%d", f.HostPort, cfg.VM, f.GuestPort),
			exprs:   concat(fibDaddrLocal(), tcpDport(f.HostPort), dnat(cfg.VM, f.GuestPort)),
		})
		// Locally generated connections to 127.0.0.1 do not pass
		// prerouting; they need route_localnet on the bridge and the
		// 127.0.0.0/8 masquerade below to leave through hlsbr0.
		out = append(out, ruleSpec{
			comment: fmt.Sprintf("hlsvmm: 127.0.0.1:%d -> %v:%d", f.HostPort, cfg.VM, f.GuestPort),
			exprs: concat(ipDaddr(netip.PrefixFrom(netip.AddrFrom4([4]byte{127, 0, 0, 1}), 32)),
				tcpDport(f.HostPort), dnat(cfg.VM, f.GuestPort)),
		})
	}
	nat := tableSpec{name: NATTable, chains: []chainSpec{
		{name: "postrouting", typ: nftables.ChainTypeNAT, hook: unix.NF_INET_POST_ROUTING, priority: prioSrcNAT, rules: []ruleSpec{
			{comment: "hlsvmm: VM subnet to the outside", exprs: concat(ipSaddr(cfg.Subnet), ifname(expr.MetaKeyOIFNAME, expr.CmpOpNeq, br), masq())},
			{comment: "hlsvmm: 127.0.0.1 forwards, the VM sees the gateway", exprs: concat(ipSaddr(loopbackNet), ifname(expr.MetaKeyOIFNAME, expr.CmpOpEq, br), masq())},
		}},
		{name: "prerouting", typ: nftables.ChainTypeNAT, hook: unix.NF_INET_PRE_ROUTING, priority: prioDstNAT, rules: pre},
		{name: "output", typ: nftables.ChainTypeNAT, hook: unix.NF_INET_LOCAL_OUT, priority: prioDstNAT, rules: out},
	}}
	filter := tableSpec{name: FilterTable, chains: []chainSpec{
		{name: "forward", typ: nftables.ChainTypeFilter, hook: unix.NF_INET_FORWARD, priority: prioFilter1, rules: []ruleSpec{
			{comment: "hlsvmm: from the VM", exprs: concat(ifname(expr.MetaKeyIIFNAME, expr.CmpOpEq, br), verdict(expr.VerdictAccept))},
			{comment: "hlsvmm: replies to the VM", exprs: concat(ifname(expr.MetaKeyOIFNAME, expr.CmpOpEq, br), ctState(expr.CtStateBitESTABLISHED|expr.CtStateBitRELATED), verdict(expr.VerdictAccept))},
			{comment: "hlsvmm: new connections to the VM subnet", exprs: concat(ifname(expr.MetaKeyOIFNAME, expr.CmpOpEq, br), ipDaddr(cfg.Subnet), ctState(expr.CtStateBitNEW), verdict(expr.VerdictAccept))},
		}},
		// route_localnet=1 on the bridge makes 127.0.0.0/8 routable there,
		// which weakens martian filtering (moby #41872, k8s #90259). Drop
		// such packets arriving on anything but lo. The hook is prerouting
		// at raw priority, before conntrack and NAT: the addresses are the
		// ones on the wire (replies to our masqueraded 127.0.0.1 forwards
		// still carry the gateway address here), and nothing else can
		// accept or route them first; a forward or input hook would come
		// after the routing decision that route_localnet changed.
		{name: "prerouting", typ: nftables.ChainTypeFilter, hook: unix.NF_INET_PRE_ROUTING, priority: prioRaw, rules: []ruleSpec{
			{comment: "hlsvmm: no 127.0.0.0/8 source off lo", exprs: concat(ifname(expr.MetaKeyIIFNAME, expr.CmpOpNeq, "lo"), ipSaddr(loopbackNet), verdict(expr.VerdictDrop))},
			{comment: "hlsvmm: no 127.0.0.0/8 destination off lo", exprs: concat(ifname(expr.MetaKeyIIFNAME, expr.CmpOpNeq, "lo"), ipDaddr(loopbackNet), verdict(expr.VerdictDrop))},
		}},
	}}
	return []tableSpec{nat, filter}
}

func concat(parts ...[]expr.Any) []expr.Any {
	var out []expr.Any
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

// ifnameBytes is an interface name as nftables compares it: 16 bytes,
// NUL-padded (an unpadded name would be a prefix match).
func ifnameBytes(name string) []byte {
	b := make([]byte, unix.IFNAMSIZ)
	copy(b, name)
	return b
}

func ifname(key expr.MetaKey, op expr.CmpOp, name string) []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: key, Register: 1},
		&expr.Cmp{Op: op, Register: 1, Data: ifnameBytes(name)},
	}
}

// ipAddr matches the IPv4 source (offset 12) or destination (16) against p.
func ipAddr(offset uint32, p netip.Prefix) []expr.Any {
	a := p.Masked().Addr().As4()
	load := &expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: offset, Len: 4}
	if p.Bits() == 32 {
		return []expr.Any{load, &expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: a[:]}}
	}
	mask := binary.BigEndian.AppendUint32(nil, ^uint32(0)<<(32-p.Bits()))
	return []expr.Any{
		load,
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: mask, Xor: make([]byte, 4)},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: a[:]},
	}
}

func ipSaddr(p netip.Prefix) []expr.Any { return ipAddr(12, p) }
func ipDaddr(p netip.Prefix) []expr.Any { return ipAddr(16, p) }

// tcpDport: meta l4proto tcp, tcp dport port (big-endian).
func tcpDport(port uint16) []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.IPPROTO_TCP}},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binary.BigEndian.AppendUint16(nil, port)},
	}
}

// fibDaddrLocal: fib daddr type local (the result is host-endian).
func fibDaddrLocal() []expr.Any {
	return []expr.Any{
		&expr.Fib{Register: 1, FlagDADDR: true, ResultADDRTYPE: true},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binary.NativeEndian.AppendUint32(nil, unix.RTN_LOCAL)},
	}
}

// ctState: ct state & bits != 0 (the state is host-endian).
func ctState(bits uint32) []expr.Any {
	return []expr.Any{
		&expr.Ct{Register: 1, Key: expr.CtKeySTATE},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4,
			Mask: binary.NativeEndian.AppendUint32(nil, bits), Xor: make([]byte, 4)},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: make([]byte, 4)},
	}
}

// dnat to addr:port. The max registers equal the min ones, as the kernel
// stores them (so a listed rule compares equal to a built one).
func dnat(addr netip.Addr, port uint16) []expr.Any {
	a := addr.As4()
	return []expr.Any{
		&expr.Immediate{Register: 1, Data: a[:]},
		&expr.Immediate{Register: 2, Data: binary.BigEndian.AppendUint16(nil, port)},
		&expr.NAT{Type: expr.NATTypeDestNAT, Family: unix.NFPROTO_IPV4, RegAddrMin: 1, RegAddrMax: 1, RegProtoMin: 2, RegProtoMax: 2, Specified: true},
	}
}

func masq() []expr.Any { return []expr.Any{&expr.Masq{}} }

func verdict(k expr.VerdictKind) []expr.Any { return []expr.Any{&expr.Verdict{Kind: k}} }

// marshalExprs is the wire form of a rule's expressions, used to compare
// what the kernel holds with what we want.
func marshalExprs(exprs []expr.Any) ([]byte, error) {
	var out []byte
	for _, e := range exprs {
		b, err := expr.Marshal(byte(nftables.TableFamilyIPv4), e)
		if err != nil {
			return nil, fmt.Errorf("marshal %T: %w", e, err)
		}
		out = append(out, b...)
	}
	return out, nil
}

// rulesetMatches reports whether the kernel holds exactly want.
func rulesetMatches(c *nftables.Conn, want []tableSpec) (bool, error) {
	chains, err := c.ListChainsOfTableFamily(nftables.TableFamilyIPv4)
	if err != nil {
		return false, classifyNFT("list nftables chains", err)
	}
	for _, ts := range want {
		t, err := c.ListTableOfFamily(ts.name, nftables.TableFamilyIPv4)
		if errors.Is(err, unix.ENOENT) {
			return false, nil
		}
		if err != nil {
			return false, classifyNFT("list table ip "+ts.name, err)
		}
		var have []*nftables.Chain
		for _, ch := range chains {
			if ch.Table.Name == ts.name {
				have = append(have, ch)
			}
		}
		if len(have) != len(ts.chains) {
			return false, nil
		}
		for _, cs := range ts.chains {
			var ch *nftables.Chain
			for _, h := range have {
				if h.Name == cs.name {
					ch = h
				}
			}
			if ch == nil || ch.Type != cs.typ || ch.Hooknum == nil || *ch.Hooknum != cs.hook ||
				ch.Priority == nil || *ch.Priority != cs.priority ||
				(ch.Policy != nil && *ch.Policy != nftables.ChainPolicyAccept) {
				return false, nil
			}
			rules, err := c.GetRules(t, ch)
			if err != nil {
				return false, classifyNFT(fmt.Sprintf("list rules of ip %s %s", ts.name, cs.name), err)
			}
			if len(rules) != len(cs.rules) {
				return false, nil
			}
			for i, r := range rules {
				got, err := marshalExprs(r.Exprs)
				if err != nil {
					return false, nil // something we do not build
				}
				wantB, err := marshalExprs(cs.rules[i].exprs)
				if err != nil {
					return false, err
				}
				if !bytes.Equal(got, wantB) {
					return false, nil
				}
			}
		}
	}
	return true, nil
}

// applyRuleset replaces our tables by want in one atomic batch unless the
// kernel already holds exactly that. It reports whether anything changed.
func (h *Host) applyRuleset(want []tableSpec) (changed bool, err error) {
	c, err := h.nft()
	if err != nil {
		return false, err
	}
	defer c.CloseLasting()
	same, err := rulesetMatches(c, want)
	if err != nil {
		return false, err
	}
	if same {
		return false, nil
	}
	accept := nftables.ChainPolicyAccept
	for _, ts := range want {
		// add + delete + add: replaces the table whether or not it existed,
		// in the same transaction (DestroyTable is not in nftables v0.3.0).
		t := &nftables.Table{Name: ts.name, Family: nftables.TableFamilyIPv4}
		c.AddTable(t)
		c.DelTable(t)
		c.AddTable(t)
		for _, cs := range ts.chains {
			hook, prio := cs.hook, cs.priority
			ch := c.AddChain(&nftables.Chain{Name: cs.name, Table: t, Type: cs.typ,
				Hooknum: &hook, Priority: &prio, Policy: &accept})
			for _, r := range cs.rules {
				c.AddRule(&nftables.Rule{Table: t, Chain: ch, Exprs: r.exprs,
					UserData: userdata.AppendString(nil, userdata.TypeComment, r.comment)})
			}
		}
	}
	if err := c.Flush(); err != nil {
		if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.EOPNOTSUPP) {
			// An expression's module (nft_fib, nft_nat, nft_masq...) is missing.
			return false, fmt.Errorf("replace tables %s and %s: %w (%w)", NATTable, FilterTable, ErrNFTablesMissing, err)
		}
		return false, classifyNFT(fmt.Sprintf("replace tables %s and %s", NATTable, FilterTable), err)
	}
	return true, nil
}

// deleteTables removes our tables (those that exist) in one batch. It
// reports which were there.
func (h *Host) deleteTables() ([]string, error) {
	c, err := h.nft()
	if err != nil {
		return nil, err
	}
	defer c.CloseLasting()
	var deleted []string
	for _, name := range []string{NATTable, FilterTable} {
		_, err := c.ListTableOfFamily(name, nftables.TableFamilyIPv4)
		if errors.Is(err, unix.ENOENT) {
			continue
		}
		if err != nil {
			return nil, classifyNFT("list table ip "+name, err)
		}
		c.DelTable(&nftables.Table{Name: name, Family: nftables.TableFamilyIPv4})
		deleted = append(deleted, name)
	}
	if len(deleted) == 0 {
		return nil, nil
	}
	if err := c.Flush(); err != nil {
		return nil, classifyNFT("delete tables", err)
	}
	return deleted, nil
}
