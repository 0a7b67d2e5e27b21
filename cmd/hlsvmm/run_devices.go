package main

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/hlsvmm/hlsvmm/metrics"
	"github.com/hlsvmm/hlsvmm/virtio"
	"github.com/hlsvmm/hlsvmm/virtio/blk"
	"github.com/hlsvmm/hlsvmm/virtio/ninep"
	"github.com/hlsvmm/hlsvmm/virtio/rng"
	"github.com/hlsvmm/hlsvmm/vmm"
)

// deviceFlags are `hlsvmm run`'s storage and entropy devices, all
// virtio-pci: what a microvm.nix NixOS guest needs besides its network.
func deviceFlags() []cli.Flag {
	return []cli.Flag{
		&cli.GenericFlag{Name: "disk", Value: &specList{}, Usage: "virtio-blk disk PATH[,ro][,serial=ID] (repeatable; the first is /dev/vda)"},
		&cli.GenericFlag{Name: "share", Value: &specList{}, Usage: "virtio-9p share of a host directory PATH:TAG,ro (repeatable; mount -t 9p -o trans=virtio TAG)"},
		&cli.BoolFlag{Name: "rng", Value: true, Usage: "virtio-rng device fed from getrandom (--rng=false: none)"},
	}
}

// specList is a repeatable flag whose values are kept whole: urfave/cli's
// StringSliceFlag would split "PATH,ro" at the comma.
type specList []string

func (s *specList) Set(v string) error { *s = append(*s, v); return nil }
func (s *specList) String() string     { return strings.Join(*s, " ") }

// specs returns the values of the repeatable flag name.
func specs(c *cli.Context, name string) []string {
	if l, ok := c.Generic(name).(*specList); ok && l != nil {
		return *l
	}
	return nil
}

// guestDevices are the devices from deviceFlags, opened and checked before
// the VM exists so that a missing image or share fails without starting
// anything. It owns them: Close closes every one (after the machine).
type guestDevices struct {
	devs   []virtio.Device
	labels []string
	close  []func() error
	blocks []metrics.BlockDevice // the disks' counters for --metrics: blk0, blk1, ... in flag order
	shares []metrics.ShareDevice // the shares' counters for --metrics: 9p0, 9p1, ... in flag order
}

// openDevices parses and opens --disk, --share and --rng. On error it has
// closed whatever it opened and returns an exit error for runAction.
func openDevices(c *cli.Context, log *slog.Logger) (_ *guestDevices, err error) {
	g := &guestDevices{}
	defer func() {
		if err != nil {
			g.Close()
		}
	}()
	// Parse every flag before opening anything: syntax errors are status 2.
	var disks []blk.Spec
	for _, s := range specs(c, "disk") {
		sp, err := blk.ParseDiskSpec(s)
		if err != nil {
			return nil, exitWith(2, fmt.Errorf("--disk: %w", err))
		}
		disks = append(disks, sp)
	}
	var shares []ninep.Share
	tags := map[string]bool{}
	for _, s := range specs(c, "share") {
		sh, err := ninep.ParseShareSpec(s)
		if err != nil {
			return nil, exitWith(2, fmt.Errorf("--share: %w", err))
		}
		if tags[sh.Tag] {
			return nil, exitWith(2, fmt.Errorf("--share %s: mount tag %q given twice", s, sh.Tag))
		}
		tags[sh.Tag] = true
		shares = append(shares, sh)
	}

	for _, sp := range disks {
		if err := checkPath("--disk", sp.Path, false); err != nil {
			return nil, err
		}
		d, err := blk.Open(sp)
		if err != nil {
			return nil, exitWith(1, fmt.Errorf("--disk: %w", err))
		}
		dev, err := blk.New(d, &blk.Options{Logger: log}) // owns d, also on error
		if err != nil {
			return nil, exitWith(1, fmt.Errorf("--disk %s: %w", sp.Path, err))
		}
		mode := "rw"
		if sp.ReadOnly {
			mode = "ro"
		}
		g.add(dev, fmt.Sprintf("virtio-blk %s (%s, %d bytes)", sp.Path, mode, d.Size()), dev.Close)
		g.blocks = append(g.blocks, metrics.BlockDevice{Name: fmt.Sprintf("blk%d", len(g.blocks)), Snapshot: dev.Metrics().Snapshot})
	}
	for _, sh := range shares {
		if err := checkPath("--share", sh.Path, true); err != nil {
			return nil, err
		}
		dev, err := ninep.New(ninep.Config{Share: sh, Logger: log})
		if err != nil {
			return nil, exitWith(1, fmt.Errorf("--share: %w", err))
		}
		g.add(dev, "virtio-9p "+sh.String(), dev.Close)
		g.shares = append(g.shares, metrics.ShareDevice{Name: fmt.Sprintf("9p%d", len(g.shares)), Tag: sh.Tag, Snapshot: dev.Metrics().Snapshot})
	}
	if c.Bool("rng") {
		g.add(rng.New(), "virtio-rng", nil)
	}
	return g, nil
}

func (g *guestDevices) add(dev virtio.Device, label string, closeFn func() error) {
	g.devs = append(g.devs, dev)
	g.labels = append(g.labels, label)
	if closeFn != nil {
		g.close = append(g.close, closeFn)
	}
}

// checkPath gives a missing or wrong-typed path a clear one-line error
// before the device packages see it.
func checkPath(flag, path string, wantDir bool) error {
	st, err := os.Stat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return exitWith(1, fmt.Errorf("%s %s: no such file or directory", flag, path))
	case err != nil:
		return exitWith(1, fmt.Errorf("%s: %w", flag, err))
	case wantDir && !st.IsDir():
		return exitWith(1, fmt.Errorf("%s %s: not a directory", flag, path))
	case !wantDir && st.IsDir():
		return exitWith(1, fmt.Errorf("%s %s: is a directory", flag, path))
	}
	return nil
}

// attach plugs the devices into m's PCI bus in flag order (disks first, so
// the first --disk is the guest's first virtio-blk disk, /dev/vda).
func (g *guestDevices) attach(m *vmm.Machine, log *slog.Logger) error {
	for i, dev := range g.devs {
		slot, err := m.AddVirtio(dev)
		if err != nil {
			return fmt.Errorf("attach %s: %w", g.labels[i], err)
		}
		log.Info("device attached", "device", g.labels[i], "pci", fmt.Sprintf("00:%02x.0", slot))
	}
	return nil
}

// addMetrics hands reg the disks' counters (hlsvmm_block_*) and the
// shares' (hlsvmm_9p_*), and their queues' kicks and interrupts. Safe on
// nil.
func (g *guestDevices) addMetrics(reg *metrics.Registry) error {
	if g == nil {
		return nil
	}
	var errs []error
	for _, b := range g.blocks {
		if err := reg.AddBlock(b); err != nil {
			errs = append(errs, fmt.Errorf("metrics for %s: %w", b.Name, err))
		}
	}
	for _, sh := range g.shares {
		if err := reg.AddShare(sh); err != nil {
			errs = append(errs, fmt.Errorf("metrics for %s: %w", sh.Name, err))
		}
	}
	return errors.Join(errs...)
}

// Close closes every device that owns host resources. Call it after the
// machine is closed (its transports no longer use the devices). It is
// idempotent.
func (g *guestDevices) Close() error {
	if g == nil {
		return nil
	}
	var errs []error
	for _, fn := range g.close {
		errs = append(errs, fn())
	}
	g.close = nil
	return errors.Join(errs...)
}
