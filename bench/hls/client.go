package hls

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"time"
)

// maxSegmentBytes bounds a segment body; a longer one is a mismatch.
const maxSegmentBytes = 256 << 20

// errNotFound marks a 404 response.
var errNotFound = errors.New("404 Not Found")

// outcome classifies one request.
type outcome int

const (
	outOK        outcome = iota
	outHTTP              // a status other than 200
	outTransport         // no response, or the body was cut off
	outTimeout           // the request took longer than the per-request timeout
	outMismatch          // 200 with a complete body whose content failed verification
	outAborted           // the run's hard stop or an interrupt ended it; not an error
)

// client is one simulated live player with its own HTTP connection.
type client struct {
	r       *Runner
	tr      *http.Transport
	hc      *http.Client
	buf     []byte
	timeout time.Duration

	segLat, plLat []time.Duration
	late, skipped int64
	gone          []int64 // segments answered 404 since the last playlist: skipped if the window left them

	status map[int]int64 // non-200 statuses
}

func newClient(r *Runner, timeout time.Duration) *client {
	dialer := &net.Dialer{Timeout: timeout, KeepAlive: 30 * time.Second}
	tr := &http.Transport{
		Proxy: nil, // straight to the origin, whatever the environment says
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			r.live.conns.Add(1)
			return dialer.DialContext(ctx, network, addr)
		},
		// One kept-alive connection per client, as a player has.
		MaxConnsPerHost:     1,
		MaxIdleConns:        1,
		MaxIdleConnsPerHost: 1,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true, // count the bytes the link carries
		ReadBufferSize:      64 << 10,
	}
	return &client{
		r: r, tr: tr, timeout: timeout, buf: make([]byte, 64<<10),
		hc:     &http.Client{Transport: tr, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }},
		status: map[int]int64{},
	}
}

// meter counts body bytes into the run's throughput buckets as they arrive.
type meter struct {
	r *Runner
	w io.Writer
}

func (m meter) Write(p []byte) (int, error) {
	m.r.addBytes(len(p))
	return m.w.Write(p)
}

// fetch GETs u and streams a 200 body into the writer sink makes from the response header.
// It returns the outcome, the body length, the latency from request start to the last byte,
// and for failures an error saying what happened.
func (c *client) fetch(hard context.Context, u *url.URL, sink func(http.Header) io.Writer, limit int64) (outcome, int64, time.Duration, error) {
	ctx, cancel := context.WithTimeout(hard, c.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return outTransport, 0, 0, err
	}
	start := time.Now()
	resp, err := c.hc.Do(req)
	if err != nil {
		return c.classify(ctx, hard, err), 0, 0, fmt.Errorf("GET %s: %w", u.Path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10)) // keep the connection if cheap
		c.status[resp.StatusCode]++
		err := fmt.Errorf("GET %s: %s", u.Path, resp.Status)
		if resp.StatusCode == http.StatusNotFound {
			err = fmt.Errorf("%w: GET %s", errNotFound, u.Path)
		}
		return outHTTP, 0, 0, err
	}
	n, err := io.CopyBuffer(meter{c.r, sink(resp.Header)}, io.LimitReader(resp.Body, limit+1), c.buf)
	lat := time.Since(start)
	if err != nil {
		return c.classify(ctx, hard, err), n, lat, fmt.Errorf("GET %s: body after %d bytes: %w", u.Path, n, err)
	}
	if n > limit {
		return outMismatch, n, lat, fmt.Errorf("GET %s: body over %d bytes", u.Path, limit)
	}
	return outOK, n, lat, nil
}

func (c *client) classify(ctx, hard context.Context, err error) outcome {
	switch {
	case hard.Err() != nil:
		return outAborted
	case errors.Is(ctx.Err(), context.DeadlineExceeded), errors.Is(err, context.DeadlineExceeded):
		return outTimeout
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return outTimeout
	}
	return outTransport
}

// count adds one request's outcome to the run's counters.
func (c *client) count(out outcome, err error) {
	l := &c.r.live
	switch out {
	case outHTTP:
		l.httpErrors.Add(1)
	case outTransport:
		l.transportErrors.Add(1)
	case outTimeout:
		l.timeouts.Add(1)
	case outMismatch:
		l.mismatches.Add(1)
	case outAborted:
		l.aborted.Add(1)
		return
	default:
		return
	}
	c.r.example(err)
}

// playlist fetches and parses the live playlist; nil on any failure (counted).
func (c *client) playlist(hard context.Context) *Playlist {
	var body bytes.Buffer
	out, _, lat, err := c.fetch(hard, c.r.playlistURL, func(http.Header) io.Writer { return &body }, maxPlaylistBytes)
	if out == outOK {
		c.plLat = append(c.plLat, lat)
		c.r.live.playlists.Add(1)
		c.r.live.playlistBytes.Add(int64(body.Len()))
		pl, perr := ParsePlaylist(body.Bytes(), c.r.playlistURL)
		if perr == nil {
			return pl
		}
		out, err = outMismatch, perr
	}
	c.count(out, err)
	return nil
}

// segment fetches one segment and verifies it.
func (c *client) segment(hard context.Context, s Segment) {
	var v *verifier
	out, n, lat, err := c.fetch(hard, s.URL, func(h http.Header) io.Writer {
		v = newVerifier(c.r.cfg.Verify, s.Seq, h.Get("X-Segment-Sha256"))
		return v
	}, maxSegmentBytes)
	if out == outOK {
		if verr := v.Check(); verr != nil {
			out, err = outMismatch, verr
		}
	}
	switch out {
	case outOK, outMismatch:
		c.segLat = append(c.segLat, lat)
		if lat > s.Duration {
			c.late++
			c.r.live.late.Add(1)
		}
	case outTimeout:
		if c.timeout >= s.Duration {
			c.late++
			c.r.live.late.Add(1)
		}
	}
	if out == outHTTP && errors.Is(err, errNotFound) {
		c.gone = append(c.gone, s.Seq)
	}
	if out == outOK {
		c.r.live.segments.Add(1)
		c.r.live.segmentBytes.Add(n)
	}
	c.count(out, err)
}

// run plays the live stream until end, then returns; hard ends requests in flight.
//
// A player: fetch the playlist; on the first one start StartSegments from the live edge; fetch
// every segment newer than the last one fetched, in order, as soon as a playlist lists it; then
// reload the playlist one segment duration (the newest #EXTINF) after the previous reload began
// if it brought new segments, else after half of that (RFC 8216 section 6.3.4). A segment that
// had left the window by the time a playlist was read counts as skipped.
func (c *client) run(hard context.Context, end time.Time) {
	defer c.tr.CloseIdleConnections()
	next := int64(-1)
	for time.Now().Before(end) && hard.Err() == nil {
		reload := time.Now()
		interval := c.r.segDur / 2
		if pl := c.playlist(hard); pl != nil {
			first, last := pl.MediaSequence, pl.Last()
			if next < 0 {
				next = max(first, last-int64(c.r.cfg.StartSegments)+1)
			}
			if next < first {
				c.skipped += first - next
				c.r.live.skipped.Add(first - next)
				next = first
			}
			for _, seq := range c.gone {
				if seq < first { // it was listed, then left the window before it could be fetched
					c.skipped++
					c.r.live.skipped.Add(1)
				}
			}
			c.gone = c.gone[:0]
			changed := last >= next
			for _, s := range pl.Segments {
				if s.Seq < next {
					continue
				}
				if !time.Now().Before(end) || hard.Err() != nil {
					return
				}
				c.segment(hard, s)
				next = s.Seq + 1
			}
			if len(pl.Segments) > 0 {
				interval = pl.Segments[len(pl.Segments)-1].Duration
			}
			if !changed {
				interval /= 2
			}
		}
		wait := min(time.Until(reload.Add(interval)), time.Until(end))
		if wait > 0 {
			t := time.NewTimer(wait)
			select {
			case <-t.C:
			case <-hard.Done():
				t.Stop()
				return
			}
		}
	}
}
