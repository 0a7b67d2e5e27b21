package report

import "fmt"

// Limit is one CI gate: the run fails if Got exceeds Max. A negative Max disables the gate.
type Limit struct {
	Name string // what is counted, as in "timeouts"
	Flag string // the flag that sets Max, named in the failure message
	Got  int64
	Max  int64
}

// Failures returns one message per exceeded limit, in order, e.g.
// "timeouts: 3 > 0 (--max-timeouts)"; empty when all pass.
func Failures(limits []Limit) []string {
	out := []string{}
	for _, l := range limits {
		if l.Max >= 0 && l.Got > l.Max {
			msg := fmt.Sprintf("%s: %d > %d", l.Name, l.Got, l.Max)
			if l.Flag != "" {
				msg += " (" + l.Flag + ")"
			}
			out = append(out, msg)
		}
	}
	return out
}
