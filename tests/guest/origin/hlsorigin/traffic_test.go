package hlsorigin

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestBlobFillFormula(t *testing.T) {
	const n = 3*BlobBlockSize + 100
	whole := make([]byte, n)
	BlobFill(whole, 0)
	// The formula written out independently: block index big-endian, then xorshift64 states.
	x := uint64(0x9E3779B97F4A7C15)
	want := make([]byte, BlobBlockSize)
	for i := 0; i < BlobBlockSize; i += 8 {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		binary.LittleEndian.PutUint64(want[i:], x)
	}
	for k := range 3 {
		binary.BigEndian.PutUint64(want, uint64(k))
		if got := whole[k*BlobBlockSize : (k+1)*BlobBlockSize]; !bytes.Equal(got, want) {
			t.Fatalf("block %d differs from the formula (first bytes % x)", k, got[:16])
		}
	}
	// Any offset and length gives the same bytes as the contiguous fill.
	for _, tc := range []struct{ off, len int }{{0, 1}, {3, 10}, {7, 2}, {8, 5}, {BlobBlockSize - 3, 12}, {BlobBlockSize + 1, 2*BlobBlockSize + 50}, {n - 1, 1}} {
		p := make([]byte, tc.len)
		BlobFill(p, int64(tc.off))
		if !bytes.Equal(p, whole[tc.off:tc.off+tc.len]) {
			t.Errorf("BlobFill at %d, %d bytes differs from the contiguous blob", tc.off, tc.len)
		}
	}
	// A far block carries its index.
	p := make([]byte, 8)
	BlobFill(p, 65535*BlobBlockSize)
	if got := binary.BigEndian.Uint64(p); got != 65535 {
		t.Errorf("block 65535 starts with index %d", got)
	}
}

func TestParseTrafficBytes(t *testing.T) {
	for s, want := range map[string]int64{"0": 0, "1": 1, "268435456": 256 << 20, "4294967296": 4 << 30} {
		if got, err := ParseTrafficBytes(s); err != nil || got != want {
			t.Errorf("ParseTrafficBytes(%q) = %d, %v; want %d", s, got, err, want)
		}
	}
	for _, s := range []string{"", "-1", "4294967297", "1e6", "0x10", "12 ", "99999999999999999999"} {
		if n, err := ParseTrafficBytes(s); err == nil {
			t.Errorf("ParseTrafficBytes(%q) accepted as %d", s, n)
		}
	}
}

func newTrafficServer(t *testing.T) (*httptest.Server, *Metrics) {
	t.Helper()
	s, _ := newTestStream(t, 2e6)
	m := &Metrics{}
	srv := httptest.NewServer(NewOriginHandler(s, m))
	t.Cleanup(srv.Close)
	return srv, m
}

// getBlob fetches /blob?bytes=n and checks body, headers and trailer.
func getBlob(t *testing.T, base string, n int) error {
	resp, err := http.Get(fmt.Sprintf("%s/blob?bytes=%d", base, n))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != 200 || len(body) != n || resp.Header.Get("X-Blob-Bytes") != fmt.Sprint(n) {
		return fmt.Errorf("blob %d: status %d, %d bytes, X-Blob-Bytes %q", n, resp.StatusCode, len(body), resp.Header.Get("X-Blob-Bytes"))
	}
	want := make([]byte, n)
	BlobFill(want, 0)
	if !bytes.Equal(body, want) {
		return fmt.Errorf("blob %d: content is not the formula's", n)
	}
	sum := sha256.Sum256(body)
	if got := resp.Trailer.Get(BlobShaTrailer); got != hex.EncodeToString(sum[:]) {
		return fmt.Errorf("blob %d: trailer %s %q, body hashes to %x", n, BlobShaTrailer, got, sum)
	}
	return nil
}

func TestBlobHTTP(t *testing.T) {
	srv, m := newTrafficServer(t)
	for _, n := range []int{0, 1, BlobBlockSize - 1, BlobBlockSize, 3*BlobBlockSize + 17} {
		if err := getBlob(t, srv.URL, n); err != nil {
			t.Error(err)
		}
	}
	for _, q := range []string{"", "?bytes=", "?bytes=-1", "?bytes=4294967297", "?bytes=ten"} {
		resp, err := http.Get(srv.URL + "/blob" + q)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 400 {
			t.Errorf("/blob%s: %d, want 400", q, resp.StatusCode)
		}
	}
	resp, err := http.Post(srv.URL+"/blob?bytes=1", "text/plain", strings.NewReader("x"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 405 {
		t.Errorf("POST /blob: %d, want 405", resp.StatusCode)
	}
	if got := m.requests[kindBlob][2].Load(); got != 5 {
		t.Errorf("blob 2xx count %d, want 5", got)
	}
}

type sinkReply struct {
	Bytes  int64  `json:"bytes"`
	SHA256 string `json:"sha256"`
}

func putSink(base, method string, body io.Reader) (sinkReply, int, error) {
	req, err := http.NewRequest(method, base+"/sink", body)
	if err != nil {
		return sinkReply{}, 0, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return sinkReply{}, 0, err
	}
	defer resp.Body.Close()
	var r sinkReply
	if resp.StatusCode == 200 {
		if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
			return r, resp.StatusCode, fmt.Errorf("sink reply: %w", err)
		}
	}
	return r, resp.StatusCode, nil
}

func TestSinkHTTP(t *testing.T) {
	srv, _ := newTrafficServer(t)
	data := make([]byte, 200_003)
	BlobFill(data, 0)
	sum := sha256.Sum256(data)
	for _, method := range []string{"PUT", "POST"} {
		// a reader without a known length: sent chunked
		r, code, err := putSink(srv.URL, method, io.MultiReader(bytes.NewReader(data)))
		if err != nil || code != 200 || r.Bytes != int64(len(data)) || r.SHA256 != hex.EncodeToString(sum[:]) {
			t.Errorf("%s /sink: %+v %d %v, want %d bytes %x", method, r, code, err, len(data), sum)
		}
	}
	empty := sha256.Sum256(nil)
	if r, code, err := putSink(srv.URL, "PUT", nil); err != nil || code != 200 || r.Bytes != 0 || r.SHA256 != hex.EncodeToString(empty[:]) {
		t.Errorf("empty PUT /sink: %+v %d %v", r, code, err)
	}
	if _, code, err := putSink(srv.URL, "GET", nil); err != nil || code != 405 {
		t.Errorf("GET /sink: %d %v, want 405", code, err)
	}
	// A declared length over the bound is refused before any byte is read.
	req := httptest.NewRequest("PUT", "/sink", strings.NewReader(""))
	req.ContentLength = MaxTrafficBytes + 1
	rec := httptest.NewRecorder()
	srv.Config.Handler.ServeHTTP(rec, req)
	if rec.Code != 413 {
		t.Errorf("PUT /sink with Content-Length %d: %d, want 413", req.ContentLength, rec.Code)
	}
}

func TestPingHTTP(t *testing.T) {
	srv, m := newTrafficServer(t)
	for range 3 {
		resp, err := http.Get(srv.URL + "/ping")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || string(body) != "pong" {
			t.Errorf("/ping: %d %q", resp.StatusCode, body)
		}
	}
	if rec := get(t, srv.Config.Handler, "DELETE", "/ping"); rec.Code != 405 {
		t.Errorf("DELETE /ping: %d, want 405", rec.Code)
	}
	if got := m.requests[kindPing][2].Load(); got != 3 {
		t.Errorf("ping 2xx count %d, want 3", got)
	}
}

// TestTrafficConcurrent runs blobs, sinks and pings at once (meaningful under -race).
func TestTrafficConcurrent(t *testing.T) {
	srv, m := newTrafficServer(t)
	var wg sync.WaitGroup
	errs := make(chan error, 24)
	for i := range 8 {
		n := 100_000 + i*7919
		wg.Add(3)
		go func() { defer wg.Done(); errs <- getBlob(t, srv.URL, n) }()
		go func() {
			defer wg.Done()
			data := make([]byte, n)
			BlobFill(data, int64(i))
			sum := sha256.Sum256(data)
			r, code, err := putSink(srv.URL, "PUT", bytes.NewReader(data))
			if err == nil && (code != 200 || r.Bytes != int64(n) || r.SHA256 != hex.EncodeToString(sum[:])) {
				err = fmt.Errorf("sink %d: %+v %d", n, r, code)
			}
			errs <- err
		}()
		go func() {
			defer wg.Done()
			resp, err := http.Get(srv.URL + "/ping")
			if err == nil {
				resp.Body.Close()
			}
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	if got := m.requests[kindSink][2].Load(); got != 8 {
		t.Errorf("sink 2xx count %d, want 8", got)
	}
}

func TestServeEcho(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- ServeEcho(ln) }()
	conns := make([]net.Conn, 3)
	for i := range conns {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		conns[i] = c
	}
	for round := range 5 {
		for i, c := range conns {
			msg := []byte(fmt.Sprintf("conn %d round %d %s", i, round, strings.Repeat("x", i*1000)))
			if _, err := c.Write(msg); err != nil {
				t.Fatal(err)
			}
			got := make([]byte, len(msg))
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			if _, err := io.ReadFull(c, got); err != nil || !bytes.Equal(got, msg) {
				t.Fatalf("echo on conn %d: %q, %v", i, got, err)
			}
		}
	}
	ln.Close()
	select {
	case err := <-done:
		if err == nil {
			t.Error("ServeEcho returned nil after its listener closed")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("ServeEcho did not return after its listener closed")
	}
	// Connections in progress were closed with it.
	conns[0].SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := conns[0].Read(make([]byte, 1)); err == nil {
		t.Errorf("echo connection still open after ServeEcho returned (read %d bytes)", n)
	}
}

func TestMetricsCountTraffic(t *testing.T) {
	s, _ := newTestStream(t, 2e6)
	m := &Metrics{}
	h := NewOriginHandler(s, m)
	get(t, h, "GET", "/blob?bytes=1000")
	get(t, h, "GET", "/ping")
	var b strings.Builder
	WriteMetrics(&b, m, s, s.Now())
	for _, want := range []string{
		`hls_origin_http_requests_total{handler="blob",code="2xx"} 1` + "\n",
		`hls_origin_http_response_bytes_total{handler="blob"} 1000` + "\n",
		`hls_origin_http_requests_total{handler="ping",code="2xx"} 1` + "\n",
		`hls_origin_http_requests_total{handler="sink",code="2xx"} 0` + "\n",
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("metrics lack %q", want)
		}
	}
}
