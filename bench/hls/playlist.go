package hls

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"math"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Limits on what a playlist may contain; the origin runs in a guest and is not trusted.
const (
	maxPlaylistBytes    = 1 << 20
	maxPlaylistSegments = 10000
	maxSegmentDuration  = time.Hour
)

// ErrPlaylist marks a playlist that is not a usable HLS media playlist.
var ErrPlaylist = errors.New("bad media playlist")

// Playlist is the part of an HLS media playlist (RFC 8216) a live player needs.
type Playlist struct {
	TargetDuration time.Duration // #EXT-X-TARGETDURATION
	MediaSequence  int64         // #EXT-X-MEDIA-SEQUENCE: the sequence number of Segments[0]
	Segments       []Segment
	Ended          bool // #EXT-X-ENDLIST: no more segments will be added
}

// Segment is one media segment of a playlist.
type Segment struct {
	Seq      int64         // MediaSequence + its index
	Duration time.Duration // #EXTINF
	URL      *url.URL      // resolved against the playlist's URL
}

// Last is the sequence number of the newest segment; MediaSequence-1 for an empty playlist.
func (p *Playlist) Last() int64 { return p.MediaSequence + int64(len(p.Segments)) - 1 }

// ParsePlaylist parses a media playlist fetched from base. It rejects master playlists, missing
// or malformed required tags, and anything over its size limits.
func ParsePlaylist(body []byte, base *url.URL) (*Playlist, error) {
	if len(body) > maxPlaylistBytes {
		return nil, fmt.Errorf("%w: %d bytes, over %d", ErrPlaylist, len(body), maxPlaylistBytes)
	}
	sc := bufio.NewScanner(bytes.NewReader(body))
	sc.Buffer(make([]byte, 0, 4096), maxPlaylistBytes)
	p := &Playlist{}
	var (
		first     = true
		haveTD    bool
		extinf    time.Duration
		haveInf   bool
		lineNo    int
		seenMedia bool
	)
	for sc.Scan() {
		lineNo++
		line := strings.TrimSpace(sc.Text())
		if first {
			if strings.TrimPrefix(line, "\ufeff") != "#EXTM3U" {
				return nil, fmt.Errorf("%w: first line is not #EXTM3U", ErrPlaylist)
			}
			first = false
			continue
		}
		switch {
		case line == "":
		case strings.HasPrefix(line, "#EXT-X-TARGETDURATION:"):
			v, err := strconv.ParseInt(strings.TrimPrefix(line, "#EXT-X-TARGETDURATION:"), 10, 64)
			if err != nil || v < 0 || v > int64(maxSegmentDuration/time.Second) {
				return nil, fmt.Errorf("%w: line %d: bad #EXT-X-TARGETDURATION", ErrPlaylist, lineNo)
			}
			p.TargetDuration, haveTD = time.Duration(v)*time.Second, true
		case strings.HasPrefix(line, "#EXT-X-MEDIA-SEQUENCE:"):
			if seenMedia {
				return nil, fmt.Errorf("%w: line %d: #EXT-X-MEDIA-SEQUENCE after the first segment", ErrPlaylist, lineNo)
			}
			v, err := strconv.ParseInt(strings.TrimPrefix(line, "#EXT-X-MEDIA-SEQUENCE:"), 10, 64)
			if err != nil || v < 0 || v > math.MaxInt64/2 {
				return nil, fmt.Errorf("%w: line %d: bad #EXT-X-MEDIA-SEQUENCE", ErrPlaylist, lineNo)
			}
			p.MediaSequence = v
		case strings.HasPrefix(line, "#EXTINF:"):
			v, _, _ := strings.Cut(strings.TrimPrefix(line, "#EXTINF:"), ",")
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err != nil || !(f > 0) || f > maxSegmentDuration.Seconds() {
				return nil, fmt.Errorf("%w: line %d: bad #EXTINF duration", ErrPlaylist, lineNo)
			}
			extinf, haveInf = time.Duration(f*float64(time.Second)), true
		case line == "#EXT-X-ENDLIST":
			p.Ended = true
		case strings.HasPrefix(line, "#EXT-X-STREAM-INF"):
			return nil, fmt.Errorf("%w: a master playlist; give the URL of a media playlist", ErrPlaylist)
		case strings.HasPrefix(line, "#"):
			// other tags and comments do not matter to the load
		default:
			if !haveInf {
				return nil, fmt.Errorf("%w: line %d: segment URI without #EXTINF", ErrPlaylist, lineNo)
			}
			if len(p.Segments) == maxPlaylistSegments {
				return nil, fmt.Errorf("%w: over %d segments", ErrPlaylist, maxPlaylistSegments)
			}
			ref, err := url.Parse(line)
			if err != nil {
				return nil, fmt.Errorf("%w: line %d: segment URI: %v", ErrPlaylist, lineNo, err)
			}
			u := ref
			if base != nil {
				u = base.ResolveReference(ref)
			}
			if u.Scheme != "http" && u.Scheme != "https" {
				return nil, fmt.Errorf("%w: line %d: segment URI %q is not http(s)", ErrPlaylist, lineNo, u.Redacted())
			}
			p.Segments = append(p.Segments, Segment{Seq: p.MediaSequence + int64(len(p.Segments)), Duration: extinf, URL: u})
			haveInf, seenMedia = false, true
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrPlaylist, err)
	}
	if first {
		return nil, fmt.Errorf("%w: empty", ErrPlaylist)
	}
	if !haveTD {
		return nil, fmt.Errorf("%w: no #EXT-X-TARGETDURATION", ErrPlaylist)
	}
	return p, nil
}
