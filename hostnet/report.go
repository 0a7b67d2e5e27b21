package hostnet

import "fmt"

// Status is the outcome of one step or check.
type Status string

const (
	StatusOK   Status = "ok"   // ✓
	StatusFail Status = "fail" // ✗
	StatusWarn Status = "warn" // ⚠
	StatusInfo Status = "info" // •
)

// Symbol is the mark the seed's scripts print for s.
func (s Status) Symbol() string {
	switch s {
	case StatusOK:
		return "✓"
	case StatusFail:
		return "✗"
	case StatusWarn:
		return "⚠"
	}
	return "•"
}

// Line is one reported step or check.
type Line struct {
	Name     string `json:"name"`
	Status   Status `json:"status"`
	Text     string `json:"text"`
	Fix      string `json:"fix,omitempty"`
	Required bool   `json:"required"`
}

func (l Line) String() string {
	s := l.Status.Symbol() + " " + l.Text
	if l.Fix != "" {
		s += "\n    fix: " + l.Fix
	}
	return s
}

// Report collects lines, in order.
type Report struct {
	Lines []Line `json:"lines"`
}

func (r *Report) add(st Status, name, format string, args ...any) {
	r.Lines = append(r.Lines, Line{Name: name, Status: st, Text: fmt.Sprintf(format, args...)})
}
