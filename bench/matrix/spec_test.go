package matrix

import (
	"reflect"
	"strings"
	"testing"
)

func TestParseSpec(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Spec
	}{
		{"vhost=on|off", Spec{{"vhost", []string{"on", "off"}}}},
		{" vhost=on|off   queues=1|4 ", Spec{{"vhost", []string{"on", "off"}}, {"queues", []string{"1", "4"}}}},
		{"vhost=on;queues=1|2;", Spec{{"vhost", []string{"on"}}, {"queues", []string{"1", "2"}}}},
		{"offload=none|csum,tso4,tso6\tevent-idx=off", Spec{{"offload", []string{"none", "csum,tso4,tso6"}}, {"event-idx", []string{"off"}}}},
		{"append=hls.bitrate=1|hls.bitrate=2", Spec{{"append", []string{"hls.bitrate=1", "hls.bitrate=2"}}}},
		{"busy-poll=-1|50", Spec{{"busy-poll", []string{"-1", "50"}}}},
	} {
		got, err := ParseSpec(tc.in)
		if err != nil || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("ParseSpec(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
	}
	// 64 rows is the limit, 65 too many.
	if _, err := ParseSpec("a=1|2 b=1|2 c=1|2 d=1|2 e=1|2 f=1|2"); err != nil {
		t.Errorf("64 rows: %v", err)
	}
}

func TestParseSpecRejects(t *testing.T) {
	for in, want := range map[string]string{
		"":                    "empty",
		" ; ;":                "empty",
		"vhost":               `"vhost": want NAME=V1|V2`,
		"vhost=on|off queues": `"queues": want NAME=V1|V2`,
		"=on|off":             `knob "": want the name`,
		"--vhost=on|off":      "without dashes: vhost",
		"Vhost=on":            `knob "Vhost"`,
		"vh_ost=on":           `knob "vh_ost"`,
		"-x=1":                "without dashes: x",
		"vhost=":              "knob vhost: empty value",
		"vhost=on||off":       "knob vhost: empty value",
		"vhost=on|":           "knob vhost: empty value",
		"vhost=|on":           "knob vhost: empty value",
		"vhost=on|off|on":     `knob vhost: value "on" given twice`,
		"vhost=on vhost=off":  "knob vhost given twice",
		"a=1|2 b=1|2 c=1|2 d=1|2 e=1|2 f=1|2 g=1": "", // 64 rows: accepted (checked below)
		"a=1|2 b=1|2 c=1|2 d=1|2 e=1|2 f=1|2|3":   "more than 64 combinations",
		"a=1|2|3|4|5|6|7|8|9 b=1|2|3|4|5|6|7|8":   "more than 64 combinations",
	} {
		_, err := ParseSpec(in)
		switch {
		case want == "" && err != nil:
			t.Errorf("ParseSpec(%q): %v", in, err)
		case want != "" && (err == nil || !strings.Contains(err.Error(), want)):
			t.Errorf("ParseSpec(%q) error %v, want one containing %q", in, err, want)
		}
	}
}

func TestRowsProductOrder(t *testing.T) {
	spec, err := ParseSpec("vhost=on|off queues=1|2|4 offload=none|csum,tso4")
	if err != nil {
		t.Fatal(err)
	}
	rows := spec.Rows()
	var labels []string
	for i, r := range rows {
		if r.Index != i+1 {
			t.Errorf("row %d has index %d", i, r.Index)
		}
		labels = append(labels, r.Label())
	}
	want := []string{
		"vhost=on queues=1 offload=none", "vhost=on queues=1 offload=csum,tso4",
		"vhost=on queues=2 offload=none", "vhost=on queues=2 offload=csum,tso4",
		"vhost=on queues=4 offload=none", "vhost=on queues=4 offload=csum,tso4",
		"vhost=off queues=1 offload=none", "vhost=off queues=1 offload=csum,tso4",
		"vhost=off queues=2 offload=none", "vhost=off queues=2 offload=csum,tso4",
		"vhost=off queues=4 offload=none", "vhost=off queues=4 offload=csum,tso4",
	}
	if !reflect.DeepEqual(labels, want) {
		t.Errorf("rows:\n%s\nwant:\n%s", strings.Join(labels, "\n"), strings.Join(want, "\n"))
	}
	if got := rows[7].Args(); !reflect.DeepEqual(got, []string{"--vhost=off", "--queues=1", "--offload=csum,tso4"}) {
		t.Errorf("row 8 args %q", got)
	}
	if got := rows[7].Knobs(); !reflect.DeepEqual(got, map[string]string{"vhost": "off", "queues": "1", "offload": "csum,tso4"}) {
		t.Errorf("row 8 knobs %v", got)
	}
	if got := spec.Names(); !reflect.DeepEqual(got, []string{"vhost", "queues", "offload"}) {
		t.Errorf("names %q", got)
	}
	// Rows must not share their settings' backing arrays.
	rows[0].Settings[0].Value = "changed"
	if rows[1].Settings[0].Value != "on" || rows[2].Settings[0].Value != "on" {
		t.Error("rows share settings")
	}
	if rows := (Spec{}).Rows(); len(rows) != 0 {
		t.Errorf("empty spec has rows %v", rows)
	}
}
