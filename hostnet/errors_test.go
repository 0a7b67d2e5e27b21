package hostnet

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/google/nftables"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// hostOnly is a fresh "host" namespace with a Host and a config whose
// state goes to a temporary directory.
func hostOnly(t *testing.T) (*Host, *netlink.Handle, Config) {
	requireRoot(t)
	ns, nl := newNS(t)
	h, err := OpenHostAt(ns)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	cfg := DefaultConfig()
	cfg.StateDir = t.TempDir()
	return h, nl, cfg
}

// expectRefused runs setup, wants an error matching target, and checks
// that the namespace is exactly as before and no state file is left.
func expectRefused(t *testing.T, h *Host, cfg Config, target error) {
	t.Helper()
	before := snapshot(t, h)
	_, err := h.Setup(cfg)
	if !errors.Is(err, target) {
		t.Fatalf("setup: got %v, want %v", err, target)
	}
	t.Logf("refused: %v", err)
	if after := snapshot(t, h); after != before {
		t.Errorf("refused setup changed the host:\nbefore:\n%s\nafter:\n%s", before, after)
	}
	if _, err := os.Stat(StatePath(&cfg)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("state file left behind: %v", err)
	}
}

func addLink(t *testing.T, nl *netlink.Handle, name string) netlink.Link {
	t.Helper()
	la := netlink.NewLinkAttrs()
	la.Name = name
	// A veth pair (the dummy module may be missing): name and name+"p".
	d := &netlink.Veth{LinkAttrs: la, PeerName: name + "p"}
	if err := nl.LinkAdd(d); err != nil {
		t.Fatal(err)
	}
	return d
}

func TestSetupRefusesBridgeNameOfAnotherKind(t *testing.T) {
	h, nl, cfg := hostOnly(t)
	addLink(t, nl, cfg.Bridge)
	expectRefused(t, h, cfg, ErrConflict)
}

func TestSetupRefusesTapNameOfAnotherKind(t *testing.T) {
	h, nl, cfg := hostOnly(t)
	addLink(t, nl, cfg.Tap)
	expectRefused(t, h, cfg, ErrConflict)
}

func TestSetupRefusesBridgeWithAnotherAddress(t *testing.T) {
	h, nl, cfg := hostOnly(t)
	la := netlink.NewLinkAttrs()
	la.Name = cfg.Bridge
	if err := nl.LinkAdd(&netlink.Bridge{LinkAttrs: la}); err != nil {
		t.Fatal(err)
	}
	mustAddr(t, nl, cfg.Bridge, "10.99.0.1/24")
	expectRefused(t, h, cfg, ErrConflict)
}

func TestSetupRefusesSubnetRoutedElsewhere(t *testing.T) {
	h, nl, cfg := hostOnly(t)
	addLink(t, nl, "lan0")
	mustAddr(t, nl, "lan0", "10.177.0.5/16")
	expectRefused(t, h, cfg, ErrConflict)
}

func TestSetupRollsBackOnLateFailure(t *testing.T) {
	h, _, cfg := hostOnly(t)
	boom := errors.New("injected failure")
	h.failpoint = func(step string) error {
		if step == "nftables" {
			return boom
		}
		return nil
	}
	expectRefused(t, h, cfg, boom)
}

func TestSetupRefusesInvalidConfig(t *testing.T) {
	h, _, cfg := hostOnly(t)
	cfg.VM = cfg.Gateway
	expectRefused(t, h, cfg, ErrInvalidConfig)
}

// A setup killed half-way (state says bridge created, nothing else) is
// completed by the next setup, and teardown still removes the bridge.
func TestSetupReconcilesAfterCrash(t *testing.T) {
	h, _, cfg := hostOnly(t)
	before := snapshot(t, h)
	if _, err := h.Setup(cfg); err != nil {
		t.Fatal(err)
	}
	// Remove the tables and the TAP behind setup's back, as if it had
	// died before creating them; the state still says it made them.
	if _, err := h.deleteTables(); err != nil {
		t.Fatal(err)
	}
	rep, err := h.Setup(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if !rep.Changed {
		t.Error("setup did not restore the missing tables")
	}
	st, err := loadState(StatePath(&cfg))
	if err != nil || st == nil || !st.CreatedBridge || !st.CreatedTap {
		t.Fatalf("state lost what the first setup created: %+v %v", st, err)
	}
	if _, err := h.Teardown(cfg); err != nil {
		t.Fatal(err)
	}
	if after := snapshot(t, h); after != before {
		t.Errorf("teardown after reconcile left changes:\n%s\nvs\n%s", before, after)
	}
}

func TestTeardownKeepsBridgeWithForeignPort(t *testing.T) {
	h, nl, cfg := hostOnly(t)
	if _, err := h.Setup(cfg); err != nil {
		t.Fatal(err)
	}
	port := addLink(t, nl, "other0")
	br, _ := nl.LinkByName(cfg.Bridge)
	if err := nl.LinkSetMaster(port, br); err != nil {
		t.Fatal(err)
	}
	rep, err := h.Teardown(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if l, _ := h.linkByName(cfg.Bridge); l == nil {
		t.Fatalf("bridge removed with a foreign port attached: %v", rep.Lines)
	}
	if l, _ := h.linkByName("other0"); l == nil || l.Attrs().MasterIndex != br.Attrs().Index {
		t.Fatal("foreign port touched")
	}
	// Detach it: the next teardown removes the bridge.
	if err := nl.LinkSetNoMaster(port); err != nil {
		t.Fatal(err)
	}
	if _, err := h.Teardown(cfg); err != nil {
		t.Fatal(err)
	}
	if l, _ := h.linkByName(cfg.Bridge); l != nil {
		t.Error("bridge left after its last foreign port went")
	}
}

func TestCheckReportsForeignDrop(t *testing.T) {
	h, _, cfg := hostOnly(t)
	if _, err := h.Setup(cfg); err != nil {
		t.Fatal(err)
	}
	addForeignTable(t, h, nftables.ChainPolicyDrop)
	rep, err := h.Check(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, l := range rep.Lines {
		if l.Name == "foreign-drop" && l.Status == StatusWarn {
			found = true
			t.Log(l)
		}
	}
	if !found {
		t.Errorf("no warning about table inet foreign's drop policy: %v", rep.Lines)
	}
}

func TestClassifyNFTablesMissing(t *testing.T) {
	for _, errno := range []error{unix.EAFNOSUPPORT, unix.EPROTONOSUPPORT} {
		err := classifyNFT("open nftables", errno)
		if !errors.Is(err, ErrNFTablesMissing) || !errors.Is(err, errno) {
			t.Errorf("%v: got %v", errno, err)
		}
	}
	if err := classify("x", unix.EPERM); !errors.Is(err, ErrPermission) || !errors.Is(err, unix.EPERM) {
		t.Errorf("EPERM: got %v", err)
	}
}

// TestSetupWithoutCapNetAdmin runs setup in a child process that is in a
// fresh namespace of its own but runs as nobody: the first change fails
// with EPERM and setup says CAP_NET_ADMIN is needed.
func TestSetupWithoutCapNetAdmin(t *testing.T) {
	if dir := os.Getenv("HOSTNET_NOCAP_STATE"); dir != "" {
		h, err := OpenHost()
		if err != nil {
			fmt.Println("RESULT", err)
			os.Exit(3)
		}
		cfg := DefaultConfig()
		cfg.StateDir = dir
		_, err = h.Setup(cfg)
		fmt.Println("RESULT", err)
		if errors.Is(err, ErrPermission) {
			os.Exit(0)
		}
		os.Exit(4)
	}
	requireRoot(t)
	dir := t.TempDir()
	for d := dir; d != "/" && d != "/tmp"; d = filepath.Dir(d) {
		os.Chmod(d, 0o777)
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "hostnet.test")
	b, err := os.ReadFile(exe)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, b, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-test.run=^TestSetupWithoutCapNetAdmin$")
	cmd.Env = append(os.Environ(), "HOSTNET_NOCAP_STATE="+dir)
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags: syscall.CLONE_NEWNET,
		Credential: &syscall.Credential{Uid: 65534, Gid: 65534},
	}
	out, err := cmd.CombinedOutput()
	t.Logf("child: %s", out)
	if err != nil {
		t.Fatalf("setup without CAP_NET_ADMIN did not fail with ErrPermission: %v", err)
	}
}
