package metrics

import (
	"fmt"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/model"
)

// NetTuningInfo is the name of the family AddNetTuning exports.
const NetTuningInfo = "hlsvmm_net_tuning_info"

// AddNetTuning exports hlsvmm_net_tuning_info{device=DEVICE, KNOB=VALUE...}
// = 1: the datapath tuning a network device runs with, one label per knob.
// Knob names are `hlsvmm run` flag names ("queue-size"); their dashes
// become underscores in the label names. Every device must be given the
// same knobs, and a device only once.
func (r *Registry) AddNetTuning(device string, knobs map[string]string) error {
	if device == "" {
		return fmt.Errorf("%w: network tuning: device with no name", ErrSource)
	}
	labels := prometheus.Labels{"device": device}
	for k, v := range knobs {
		name := strings.ReplaceAll(k, "-", "_")
		if !model.LabelName(name).IsValid() || strings.HasPrefix(name, "__") || labels[name] != "" {
			return fmt.Errorf("%w: network tuning of %s: knob %q cannot be a label", ErrSource, device, k)
		}
		labels[name] = v
	}
	g := prometheus.NewGauge(prometheus.GaugeOpts{
		Name:        NetTuningInfo,
		Help:        "The datapath tuning of the network device, one label per `hlsvmm run` knob (value always 1).",
		ConstLabels: labels,
	})
	g.Set(1)
	if err := r.reg.Register(g); err != nil {
		return fmt.Errorf("%w: network tuning of %s: %w", ErrSource, device, err)
	}
	return nil
}
