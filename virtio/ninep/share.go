package ninep

import (
	"fmt"
	"strings"
)

// MaxTagLen bounds the mount tag. The config space carries it without a
// terminator; 255 bytes is far beyond any tag in use ("ro-store").
const MaxTagLen = 255

// Share is one host directory exported to the guest under a mount tag.
type Share struct {
	Path     string // host directory
	Tag      string // mount tag the guest mounts (mount -t 9p TAG ...)
	ReadOnly bool
}

// String formats the share as ParseShareSpec reads it.
func (s Share) String() string {
	if s.ReadOnly {
		return s.Path + ":" + s.Tag + ",ro"
	}
	return s.Path + ":" + s.Tag
}

// ParseShareSpec parses the --share flag's value, PATH:TAG[,ro|,rw]. The
// tag follows the last colon, so PATH may contain colons; it may not
// contain commas.
func ParseShareSpec(spec string) (Share, error) {
	i := strings.LastIndexByte(spec, ':')
	if i < 0 {
		return Share{}, fmt.Errorf("share %q: want PATH:TAG[,ro]", spec)
	}
	s := Share{Path: spec[:i]}
	opts := strings.Split(spec[i+1:], ",")
	s.Tag = opts[0]
	if s.Path == "" {
		return Share{}, fmt.Errorf("share %q: empty path", spec)
	}
	if err := validTag(s.Tag); err != nil {
		return Share{}, fmt.Errorf("share %q: %w", spec, err)
	}
	for _, o := range opts[1:] {
		switch o {
		case "ro":
			s.ReadOnly = true
		case "rw":
			s.ReadOnly = false
		default:
			return Share{}, fmt.Errorf("share %q: unknown option %q (want ro or rw)", spec, o)
		}
	}
	return s, nil
}

func validTag(tag string) error {
	if tag == "" {
		return fmt.Errorf("empty mount tag")
	}
	if len(tag) > MaxTagLen {
		return fmt.Errorf("mount tag is %d bytes, at most %d", len(tag), MaxTagLen)
	}
	for _, c := range []byte(tag) {
		if c <= ' ' || c >= 0x7f || c == ',' || c == ':' {
			return fmt.Errorf("mount tag %q: only printable ASCII without spaces, commas or colons", tag)
		}
	}
	return nil
}
