package report

import (
	"fmt"
	"io"
	"strings"
	"unicode/utf8"
)

// Table is a markdown table. Columns after the first are right-aligned (figures) unless Left.
type Table struct {
	Title  string // printed as a "### " heading when set
	Header []string
	Rows   [][]string
	Left   bool // all columns left-aligned, for name/value tables
}

// AddRow appends a row.
func (t *Table) AddRow(cells ...string) { t.Rows = append(t.Rows, cells) }

// WriteMarkdown renders t with padded columns, so it reads well in a terminal too.
func (t *Table) WriteMarkdown(w io.Writer) error {
	cols := len(t.Header)
	for _, r := range t.Rows {
		cols = max(cols, len(r))
	}
	if cols == 0 {
		return nil
	}
	cell := func(r []string, i int) string {
		if i >= len(r) {
			return ""
		}
		return strings.ReplaceAll(strings.ReplaceAll(r[i], "|", `\|`), "\n", " ")
	}
	width := make([]int, cols)
	for i := range width {
		width[i] = max(3, utf8.RuneCountInString(cell(t.Header, i)))
		for _, r := range t.Rows {
			width[i] = max(width[i], utf8.RuneCountInString(cell(r, i)))
		}
	}
	var b strings.Builder
	if t.Title != "" {
		fmt.Fprintf(&b, "### %s\n\n", t.Title)
	}
	line := func(r []string) {
		for i := range cols {
			c := cell(r, i)
			pad := strings.Repeat(" ", width[i]-utf8.RuneCountInString(c))
			if i == 0 || t.Left {
				fmt.Fprintf(&b, "| %s%s ", c, pad)
			} else {
				fmt.Fprintf(&b, "| %s%s ", pad, c)
			}
		}
		b.WriteString("|\n")
	}
	line(t.Header)
	for i := range cols {
		if i == 0 || t.Left {
			fmt.Fprintf(&b, "|%s", strings.Repeat("-", width[i]+2))
		} else {
			fmt.Fprintf(&b, "|%s:", strings.Repeat("-", width[i]+1))
		}
	}
	b.WriteString("|\n")
	for _, r := range t.Rows {
		line(r)
	}
	b.WriteString("\n")
	_, err := io.WriteString(w, b.String())
	return err
}
