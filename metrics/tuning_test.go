package metrics

import (
	"errors"
	"testing"
)

func TestNetTuningInfo(t *testing.T) {
	r, err := NewRegistry()
	if err != nil {
		t.Fatal(err)
	}
	knobs := map[string]string{"queue-size": "256", "offload": "csum,tso4", "busy-poll": "0"}
	if err := r.AddNetTuning("net0", knobs); err != nil {
		t.Fatal(err)
	}
	knobs["offload"] = "none"
	if err := r.AddNetTuning("net1", knobs); err != nil {
		t.Fatal(err)
	}
	families, err := r.Gatherer().Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]map[string]string{}
	for _, f := range families {
		if f.GetName() != NetTuningInfo {
			continue
		}
		for _, m := range f.GetMetric() {
			if m.GetGauge().GetValue() != 1 {
				t.Errorf("value %v, want 1", m.GetGauge().GetValue())
			}
			l := map[string]string{}
			for _, p := range m.GetLabel() {
				l[p.GetName()] = p.GetValue()
			}
			got[l["device"]] = l
		}
	}
	want := map[string]map[string]string{
		"net0": {"device": "net0", "queue_size": "256", "offload": "csum,tso4", "busy_poll": "0"},
		"net1": {"device": "net1", "queue_size": "256", "offload": "none", "busy_poll": "0"},
	}
	if len(got) != 2 {
		t.Fatalf("series %v, want %v", got, want)
	}
	for d, l := range want {
		for k, v := range l {
			if got[d][k] != v || len(got[d]) != len(l) {
				t.Errorf("%s labels %v, want %v", d, got[d], l)
				break
			}
		}
	}
}

func TestNetTuningInfoRefuses(t *testing.T) {
	r, err := NewRegistry()
	if err != nil {
		t.Fatal(err)
	}
	if err := r.AddNetTuning("net0", map[string]string{"offload": "none"}); err != nil {
		t.Fatal(err)
	}
	for name, tc := range map[string]struct {
		device string
		knobs  map[string]string
	}{
		"same device twice": {"net0", map[string]string{"offload": "none"}},
		"other knobs":       {"net1", map[string]string{"offload": "none", "queue-size": "256"}},
		"no device":         {"", map[string]string{"offload": "none"}},
		"label device":      {"net2", map[string]string{"device": "x"}},
		"bad label":         {"net2", map[string]string{"a b": "x"}},
		"reserved label":    {"net2", map[string]string{"__name": "x"}},
	} {
		if err := r.AddNetTuning(tc.device, tc.knobs); !errors.Is(err, ErrSource) {
			t.Errorf("%s: %v, want ErrSource", name, err)
		}
	}
}
