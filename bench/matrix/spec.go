package matrix

import (
	"fmt"
	"regexp"
	"strings"
	"unicode"
)

// MaxRows bounds the number of combinations one matrix may have: each row boots a VM.
const MaxRows = 64

// Knob is one `hlsvmm run` flag and the values the matrix gives it.
type Knob struct {
	Name   string   // the flag without dashes, e.g. "vhost"
	Values []string // in the order given, distinct, none empty
}

// Spec is a parsed --matrix: its knobs in the order given.
type Spec []Knob

// Setting is one knob's value in a row.
type Setting struct {
	Name  string
	Value string
}

// Row is one combination of knob values.
type Row struct {
	Index    int       // 1-based position in the matrix
	Settings []Setting // one per knob, in the spec's order
}

// knobName is a flag name as urfave/cli spells them: lower case, digits, inner dashes.
var knobName = regexp.MustCompile(`^[a-z0-9][a-z0-9-]*$`)

// ParseSpec parses "NAME=V1|V2 NAME=V1|V2..." (knobs separated by spaces or ';').
func ParseSpec(s string) (Spec, error) {
	fields := strings.FieldsFunc(s, func(r rune) bool { return unicode.IsSpace(r) || r == ';' })
	if len(fields) == 0 {
		return nil, fmt.Errorf("empty: want NAME=V1|V2 ..., e.g. \"vhost=on|off queues=1|2\"")
	}
	var spec Spec
	seen := map[string]bool{}
	rows := 1
	for _, f := range fields {
		name, vals, ok := strings.Cut(f, "=")
		if !ok {
			return nil, fmt.Errorf("%q: want NAME=V1|V2 (values separated by '|')", f)
		}
		if !knobName.MatchString(name) {
			hint := ""
			if strings.HasPrefix(name, "-") {
				hint = fmt.Sprintf(" (without dashes: %s)", strings.TrimLeft(name, "-"))
			}
			return nil, fmt.Errorf("knob %q: want the name of an `hlsvmm run` flag: lower-case letters, digits and dashes%s", name, hint)
		}
		if seen[name] {
			return nil, fmt.Errorf("knob %s given twice: list all its values in one, %s=A|B", name, name)
		}
		seen[name] = true
		k := Knob{Name: name}
		have := map[string]bool{}
		for _, v := range strings.Split(vals, "|") {
			switch {
			case v == "":
				return nil, fmt.Errorf("knob %s: empty value in %q (values are separated by '|')", name, vals)
			case have[v]:
				return nil, fmt.Errorf("knob %s: value %q given twice", name, v)
			}
			have[v] = true
			k.Values = append(k.Values, v)
		}
		rows *= len(k.Values)
		if rows > MaxRows {
			return nil, fmt.Errorf("more than %d combinations (each boots a VM): fewer knobs or values", MaxRows)
		}
		spec = append(spec, k)
	}
	return spec, nil
}

// Names are the knobs' names in order: the table's first columns.
func (s Spec) Names() []string {
	out := make([]string, len(s))
	for i, k := range s {
		out[i] = k.Name
	}
	return out
}

// Rows is the cartesian product of the knobs' values: the first knob varies slowest.
func (s Spec) Rows() []Row {
	rows := []Row{{}}
	for _, k := range s {
		next := make([]Row, 0, len(rows)*len(k.Values))
		for _, r := range rows {
			for _, v := range k.Values {
				settings := append(append([]Setting(nil), r.Settings...), Setting{k.Name, v})
				next = append(next, Row{Settings: settings})
			}
		}
		rows = next
	}
	if len(s) == 0 {
		return nil
	}
	for i := range rows {
		rows[i].Index = i + 1
	}
	return rows
}

// Args are the row's flags for `hlsvmm run`: --NAME=VALUE each, so that a value starting with
// '-' is not taken for a flag and a boolean flag takes its value.
func (r Row) Args() []string {
	out := make([]string, len(r.Settings))
	for i, s := range r.Settings {
		out[i] = "--" + s.Name + "=" + s.Value
	}
	return out
}

// Label names the row in logs and as the datapath result's label, e.g. "vhost=on queues=4".
func (r Row) Label() string {
	parts := make([]string, len(r.Settings))
	for i, s := range r.Settings {
		parts[i] = s.Name + "=" + s.Value
	}
	return strings.Join(parts, " ")
}

// Knobs is the row as a map, for JSON.
func (r Row) Knobs() map[string]string {
	m := make(map[string]string, len(r.Settings))
	for _, s := range r.Settings {
		m[s.Name] = s.Value
	}
	return m
}
