// Package hlsorigin is the test guest's simulated live HLS origin (see the hls-origin command in
// the parent directory for the HTTP contract): a Stream whose window advances with the clock,
// deterministic segment content, and the HTTP and metrics handlers. It is a package so that
// tests elsewhere (bench/hls) can run the real origin in-process.
package hlsorigin

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"
)

// RecordSize is the length of one content record: segment bytes are records
// fmt.Sprintf(recordFormat, seq, r) for r = 0, 1, 2, ..., cut to the segment size.
const (
	RecordSize   = 32
	recordFormat = "seg=%010d rec=%010d..\n"
)

// Stream is a simulated live HLS stream: fixed-duration segments whose sequence numbers advance
// with the clock, a sliding window of the newest ones, and deterministic segment content.
//
// At start-up the window is already full (segments 0..Window-1), as if the encoder had been
// running for Window segment durations; every SegmentDuration the oldest segment leaves the
// window and the next one enters it, like ffmpeg -hls_list_size N -hls_flags
// delete_segments+omit_endlist. Segments outside the window do not exist.
type Stream struct {
	Start           time.Time
	SegmentDuration time.Duration
	Window          int
	BitsPerSecond   int64
	Now             func() time.Time

	mu    sync.Mutex
	cache map[int64]*Segment
}

// Segment is one generated segment and its SHA-256.
type Segment struct {
	Seq    int64
	Data   []byte
	SHA256 string
}

// NewStream checks the parameters and returns a stream starting now.
func NewStream(segDur time.Duration, window int, bitsPerSecond int64, now func() time.Time) (*Stream, error) {
	if segDur < time.Millisecond {
		return nil, fmt.Errorf("segment duration %v: want at least 1ms", segDur)
	}
	if window < 1 || window > 1000 {
		return nil, fmt.Errorf("window %d: want 1..1000 segments", window)
	}
	if bitsPerSecond < 8 || bitsPerSecond > 10_000_000_000 {
		return nil, fmt.Errorf("bitrate %d: want 8..10e9 bits/s", bitsPerSecond)
	}
	s := &Stream{SegmentDuration: segDur, Window: window, BitsPerSecond: bitsPerSecond, Now: now}
	if size := s.SegmentSize(); size > 256<<20 {
		return nil, fmt.Errorf("segment size %d bytes: bitrate x duration too large (max 256 MiB)", size)
	}
	s.Start = now()
	return s, nil
}

// SegmentSize is the byte size of every segment: bitrate x duration / 8.
func (s *Stream) SegmentSize() int64 {
	return s.BitsPerSecond * int64(s.SegmentDuration/time.Millisecond) / 8000
}

// WindowAt returns the sequence numbers of the oldest and newest segment in the window now.
func (s *Stream) WindowAt(t time.Time) (first, last int64) {
	elapsed := t.Sub(s.Start)
	if elapsed < 0 {
		elapsed = 0
	}
	first = int64(elapsed / s.SegmentDuration)
	return first, first + int64(s.Window) - 1
}

// Playlist renders the live media playlist for time t.
func (s *Stream) Playlist(t time.Time) string {
	first, last := s.WindowAt(t)
	var b strings.Builder
	target := int64((s.SegmentDuration + time.Second - 1) / time.Second)
	fmt.Fprintf(&b, "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:%d\n#EXT-X-MEDIA-SEQUENCE:%d\n", target, first)
	for seq := first; seq <= last; seq++ {
		fmt.Fprintf(&b, "#EXTINF:%.6f,\n%s\n", s.SegmentDuration.Seconds(), SegmentName(seq))
	}
	return b.String()
}

// SegmentName is the file name of segment seq: seg%05d.ts.
func SegmentName(seq int64) string { return fmt.Sprintf("seg%05d.ts", seq) }

// ParseSegmentName returns the sequence number in a canonical segment name (as made by
// SegmentName) and false for anything else.
func ParseSegmentName(name string) (int64, bool) {
	digits, ok := strings.CutPrefix(name, "seg")
	if !ok {
		return 0, false
	}
	digits, ok = strings.CutSuffix(digits, ".ts")
	if !ok || len(digits) < 5 || len(digits) > 18 {
		return 0, false
	}
	seq, err := strconv.ParseInt(digits, 10, 64)
	if err != nil || seq < 0 || SegmentName(seq) != name {
		return 0, false
	}
	return seq, true
}

// SegmentContent returns the deterministic content of segment seq, size bytes long.
func SegmentContent(seq, size int64) []byte {
	data := make([]byte, 0, size+RecordSize)
	for r := int64(0); int64(len(data)) < size; r++ {
		data = fmt.Appendf(data, recordFormat, seq, r)
	}
	return data[:size]
}

// Segment returns segment seq if it is in the window at time t, generating it once.
func (s *Stream) Segment(seq int64, t time.Time) (*Segment, bool) {
	first, last := s.WindowAt(t)
	if seq < first || seq > last {
		return nil, false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cache == nil {
		s.cache = make(map[int64]*Segment)
	}
	for k := range s.cache {
		if k < first || k > last {
			delete(s.cache, k)
		}
	}
	if seg, ok := s.cache[seq]; ok {
		return seg, true
	}
	data := SegmentContent(seq, s.SegmentSize())
	sum := sha256.Sum256(data)
	seg := &Segment{Seq: seq, Data: data, SHA256: hex.EncodeToString(sum[:])}
	s.cache[seq] = seg
	return seg, true
}
