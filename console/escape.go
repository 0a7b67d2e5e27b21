package console

// escapeChar is Ctrl-A, the prefix of console commands as in QEMU.
const escapeChar = 0x01

const escapeHelp = "\r\nhlsvmm console: C-a x  quit the VM\r\n" +
	"                C-a C-a  send C-a to the guest\r\n" +
	"                C-a h  this help\r\n"

// escaper filters terminal input for Ctrl-A commands. The escape state
// survives across reads, so a command split between reads still works.
type escaper struct {
	pending bool
}

// escapeResult is what one chunk of terminal input asked for.
type escapeResult struct {
	guest []byte // bytes for the guest
	quit  bool   // C-a x: input after it is discarded
	help  bool   // C-a h or C-a ?
}

func (e *escaper) filter(p []byte) escapeResult {
	var r escapeResult
	for _, b := range p {
		if !e.pending {
			if b == escapeChar {
				e.pending = true
			} else {
				r.guest = append(r.guest, b)
			}
			continue
		}
		e.pending = false
		switch b {
		case escapeChar:
			r.guest = append(r.guest, escapeChar)
		case 'x', 'X':
			r.quit = true
			return r
		case 'h', 'H', '?':
			r.help = true
		default:
			// Unknown command: swallowed, as QEMU does.
		}
	}
	return r
}
