package main

import (
	"errors"
	"fmt"
	"log/slog"

	"github.com/hlsvmm/hlsvmm/console"
	"github.com/hlsvmm/hlsvmm/metrics"
	"github.com/hlsvmm/hlsvmm/vmm"
	"github.com/urfave/cli/v2"
)

func metricsFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "metrics", Usage: "serve Prometheus metrics on HOST:PORT (e.g. 127.0.0.1:17190)"},
	}
}

// runMetrics is the exporter of one run: nil when --metrics is not given.
type runMetrics struct {
	reg *metrics.Registry
	srv *metrics.Server
}

// listenMetrics binds --metrics before the VM exists, so a taken port fails
// the run before anything boots.
func listenMetrics(addr string) (*runMetrics, error) {
	if addr == "" {
		return nil, nil
	}
	reg, err := metrics.NewRegistry()
	if err != nil {
		return nil, err
	}
	srv, err := metrics.Listen(addr, reg, &metrics.ServerOptions{Logger: slog.Default()})
	if err != nil {
		return nil, fmt.Errorf("--metrics %s: %w", addr, err)
	}
	slog.Info("metrics listening", "addr", srv.Addr().String())
	return &runMetrics{reg: reg, srv: srv}, nil
}

// register hands the exporter the machine's, console's, network device's
// and disks' counters, and the virtio devices' state for /debug/virtio.
func (r *runMetrics) register(m *vmm.Machine, con *console.Console, spec console.Spec, nd *netDevice, devs *guestDevices) error {
	if r == nil {
		return nil
	}
	r.srv.HandleDebug("virtio", func() any { return m.VirtioState() })
	errs := []error{r.reg.SetVCPUExits(m.VCPUExits)}
	if spec.Kind == console.KindTCP {
		errs = append(errs, r.reg.SetConsole(con.Stats))
	}
	if nd != nil {
		d := metrics.NetDevice{Name: "net0", Datapath: nd.datapath, Control: nd.dev.Metrics().ControlSnapshot}
		if nd.datapath == metrics.DatapathUserspace {
			d.Snapshot = nd.dev.Metrics().Snapshot
		}
		errs = append(errs, r.reg.AddNet(d), r.reg.AddNetTuning(d.Name, nd.tuning.Map()))
	}
	errs = append(errs, devs.addMetrics(r.reg))
	return errors.Join(errs...)
}

// Close stops serving. Safe on nil.
func (r *runMetrics) Close() error {
	if r == nil {
		return nil
	}
	return r.srv.Close()
}
