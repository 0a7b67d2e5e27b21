package hls

import (
	"errors"
	"net/url"
	"testing"
	"time"

	"github.com/hlsvmm/hlsvmm/tests/guest/origin/hlsorigin"
)

func TestParseOriginPlaylist(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	s, err := hlsorigin.NewStream(200*time.Millisecond, 10, 400_000, func() time.Time { return now })
	if err != nil {
		t.Fatal(err)
	}
	base, _ := url.Parse("http://127.0.0.1:1/live/stream.m3u8")
	pl, err := ParsePlaylist([]byte(s.Playlist(now.Add(time.Second))), base)
	if err != nil {
		t.Fatal(err)
	}
	if pl.MediaSequence != 5 || len(pl.Segments) != 10 || pl.Last() != 14 || pl.TargetDuration != time.Second || pl.Ended {
		t.Fatalf("playlist %+v", pl)
	}
	for i, seg := range pl.Segments {
		if seg.Seq != int64(5+i) || seg.Duration != 200*time.Millisecond {
			t.Errorf("segment %d: %+v", i, seg)
		}
	}
	if got := pl.Segments[0].URL.String(); got != "http://127.0.0.1:1/live/seg00005.ts" {
		t.Errorf("segment URL %s", got)
	}
}

func TestParsePlaylistRejects(t *testing.T) {
	for name, body := range map[string]string{
		"empty":             "",
		"not m3u":           "<html>",
		"master":            "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\nlow.m3u8\n",
		"no target":         "#EXTM3U\n#EXTINF:2,\na.ts\n",
		"uri without inf":   "#EXTM3U\n#EXT-X-TARGETDURATION:2\na.ts\n",
		"negative sequence": "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:-1\n",
		"zero extinf":       "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:0,\na.ts\n",
		"nan extinf":        "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:NaN,\na.ts\n",
		"not http":          "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:2,\nfile:///etc/passwd\n",
		"late sequence":     "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:2,\na.ts\n#EXT-X-MEDIA-SEQUENCE:4\n",
	} {
		base, _ := url.Parse("http://h/stream.m3u8")
		if pl, err := ParsePlaylist([]byte(body), base); !errors.Is(err, ErrPlaylist) {
			t.Errorf("%s: got %+v, %v; want ErrPlaylist", name, pl, err)
		}
	}
}

func FuzzParsePlaylist(f *testing.F) {
	f.Add([]byte("#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:3\n#EXTINF:2.000000,\nseg00003.ts\n"))
	f.Add([]byte("#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:2,\nhttp://x/a.ts\n#EXT-X-ENDLIST\n"))
	base, _ := url.Parse("http://127.0.0.1:17080/stream.m3u8")
	f.Fuzz(func(t *testing.T, body []byte) {
		pl, err := ParsePlaylist(body, base)
		if err != nil {
			if !errors.Is(err, ErrPlaylist) {
				t.Fatalf("error %v is not ErrPlaylist", err)
			}
			return
		}
		for i, s := range pl.Segments {
			if s.Seq != pl.MediaSequence+int64(i) || s.Duration <= 0 || s.Duration > maxSegmentDuration {
				t.Fatalf("segment %d: %+v", i, s)
			}
			if s.URL.Scheme != "http" && s.URL.Scheme != "https" {
				t.Fatalf("segment %d: scheme %q", i, s.URL.Scheme)
			}
		}
		if len(pl.Segments) > maxPlaylistSegments || pl.TargetDuration < 0 {
			t.Fatalf("playlist %+v", pl)
		}
	})
}
