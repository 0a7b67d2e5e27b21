package report

import (
	"fmt"
	"io"
	"strings"
	"sync"
	"time"
)

// Status is what a progress display shows: how far the run is (0..1) and a short status text.
type Status struct {
	Fraction float64
	Text     string
}

// Progress shows a run's progress on w (stderr): a bar redrawn in place every Every when TTY is
// set, otherwise one line every Every. Start it with Start; Stop ends it.
type Progress struct {
	W     io.Writer
	TTY   bool
	Every time.Duration // 0: 200ms for a terminal, 5s for lines

	once sync.Once
	stop chan struct{}
	done chan struct{}
}

// barWidth is the number of cells of the terminal bar.
const barWidth = 30

// Start polls status every p.Every and draws it until Stop.
func (p *Progress) Start(status func() Status) {
	every := p.Every
	if every <= 0 {
		every = 5 * time.Second
		if p.TTY {
			every = 200 * time.Millisecond
		}
	}
	p.stop, p.done = make(chan struct{}), make(chan struct{})
	go func() {
		defer close(p.done)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-p.stop:
				if p.TTY {
					p.draw(status())
					fmt.Fprint(p.W, "\n")
				}
				return
			case <-t.C:
				p.draw(status())
			}
		}
	}()
}

// Stop ends the display (a terminal bar gets its final state and a newline). Idempotent;
// a no-op if Start was not called.
func (p *Progress) Stop() {
	p.once.Do(func() {
		if p.stop == nil {
			return
		}
		close(p.stop)
		<-p.done
	})
}

func (p *Progress) draw(s Status) {
	f := min(max(s.Fraction, 0), 1)
	if !p.TTY {
		fmt.Fprintf(p.W, "progress %3.0f%% %s\n", f*100, s.Text)
		return
	}
	n := int(f * barWidth)
	// \r and clear-to-end-of-line redraw the bar in place.
	fmt.Fprintf(p.W, "\r[%s%s] %3.0f%% %s\x1b[K", strings.Repeat("#", n), strings.Repeat(".", barWidth-n), f*100, s.Text)
}
