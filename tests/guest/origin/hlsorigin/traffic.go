package hlsorigin

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// Traffic endpoints for `hlsvmm bench datapath` (the guest has no iperf3):
//
//	GET /blob?bytes=N  N bytes of the blob formula (BlobFill), chunked, with the SHA-256 of the
//	                   body in the trailer X-Blob-Sha256 and N in the header X-Blob-Bytes
//	PUT|POST /sink     reads the body and answers {"bytes":N,"sha256":"..."}
//	GET /ping          "pong", for request/response latency
//	TCP echo (ServeEcho, port 17090 in the guest): every byte read is written back
const (
	// BlobBlockSize is the period of the blob formula.
	BlobBlockSize = 64 << 10
	// MaxTrafficBytes bounds a /blob response and a /sink body.
	MaxTrafficBytes = 4 << 30
	// BlobShaTrailer carries the SHA-256 of a /blob body, hex.
	BlobShaTrailer = "X-Blob-Sha256"
	// maxEchoConns bounds the TCP echo connections served at once.
	maxEchoConns = 64
	// echoIdle closes an echo connection that sent nothing for this long.
	echoIdle = 2 * time.Minute
)

// blobBase is the blob formula's 64 KiB block without its index: xorshift64 (13, 7, 17) from
// 0x9E3779B97F4A7C15, each state little-endian, the first state at offset 0.
var blobBase = sync.OnceValue(func() *[BlobBlockSize]byte {
	var b [BlobBlockSize]byte
	x := uint64(0x9E3779B97F4A7C15)
	for i := 0; i < BlobBlockSize; i += 8 {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		binary.LittleEndian.PutUint64(b[i:], x)
	}
	return &b
})

// BlobFill fills p with the blob bytes starting at offset off. The blob is a sequence of 64 KiB
// blocks: block k is the xorshift64 block (see blobBase) whose first 8 bytes are replaced by
// k big-endian, so a block out of order or repeated shows in the content.
func BlobFill(p []byte, off int64) {
	base := blobBase()
	var idx [8]byte
	for len(p) > 0 {
		block, in := off/BlobBlockSize, int(off%BlobBlockSize)
		n := copy(p, base[in:])
		if in < 8 {
			binary.BigEndian.PutUint64(idx[:], uint64(block))
			copy(p, idx[in:])
		}
		p, off = p[n:], off+int64(n)
	}
}

// ParseTrafficBytes parses a byte count for /blob: a decimal 0..MaxTrafficBytes.
func ParseTrafficBytes(s string) (int64, error) {
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 || n > MaxTrafficBytes {
		return 0, fmt.Errorf("bytes %q: want a decimal 0..%d", s, int64(MaxTrafficBytes))
	}
	return n, nil
}

// serveBlob streams the blob of ?bytes=N with its SHA-256 as a trailer.
func serveBlob(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		w.Header().Set("Allow", "GET")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	n, err := ParseTrafficBytes(r.URL.Query().Get("bytes"))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "application/octet-stream")
	h.Set("X-Blob-Bytes", strconv.FormatInt(n, 10))
	h.Set("Trailer", BlobShaTrailer)
	w.WriteHeader(http.StatusOK)
	buf := make([]byte, BlobBlockSize)
	sum := sha256.New()
	for off := int64(0); off < n; {
		chunk := buf[:min(int64(len(buf)), n-off)]
		BlobFill(chunk, off)
		sum.Write(chunk)
		if _, err := w.Write(chunk); err != nil {
			return // the client went away; nothing to tell it
		}
		off += int64(len(chunk))
	}
	h.Set(BlobShaTrailer, hex.EncodeToString(sum.Sum(nil)))
}

// serveSink consumes the request body (at most MaxTrafficBytes) and reports its size and SHA-256.
func serveSink(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPut && r.Method != http.MethodPost {
		w.Header().Set("Allow", "PUT, POST")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	if r.ContentLength > MaxTrafficBytes {
		http.Error(w, fmt.Sprintf("body of %d bytes: at most %d", r.ContentLength, int64(MaxTrafficBytes)), http.StatusRequestEntityTooLarge)
		return
	}
	sum := sha256.New()
	n, err := io.Copy(sum, http.MaxBytesReader(w, r.Body, MaxTrafficBytes))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			http.Error(w, fmt.Sprintf("body over %d bytes", int64(MaxTrafficBytes)), http.StatusRequestEntityTooLarge)
			return
		}
		http.Error(w, fmt.Sprintf("read the body after %d bytes: %v", n, err), http.StatusBadRequest)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	fmt.Fprintf(w, "{\"bytes\":%d,\"sha256\":%q}\n", n, hex.EncodeToString(sum.Sum(nil)))
}

// servePing answers "pong".
func servePing(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	w.Header().Set("Content-Type", "text/plain")
	w.Header().Set("Content-Length", "4")
	io.WriteString(w, "pong")
}

// ServeEcho accepts TCP connections on ln and writes every byte read back, at most 64
// connections at once (more wait in the listen queue), each closed after 2 minutes idle.
// It returns when ln fails (is closed); connections in progress are closed then too.
func ServeEcho(ln net.Listener) error {
	sem := make(chan struct{}, maxEchoConns)
	var mu sync.Mutex
	conns := map[net.Conn]struct{}{}
	defer func() {
		mu.Lock()
		for c := range conns {
			c.Close()
		}
		mu.Unlock()
	}()
	for {
		sem <- struct{}{}
		c, err := ln.Accept()
		if err != nil {
			<-sem
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return fmt.Errorf("accept echo connection: %w", err)
		}
		mu.Lock()
		conns[c] = struct{}{}
		mu.Unlock()
		go func() {
			defer func() { <-sem }()
			echo(c)
			mu.Lock()
			delete(conns, c)
			mu.Unlock()
			c.Close()
		}()
	}
}

// echo copies c to itself until EOF, an error or echoIdle without input.
func echo(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetNoDelay(true)
	}
	buf := make([]byte, 32<<10)
	for {
		c.SetReadDeadline(time.Now().Add(echoIdle))
		n, err := c.Read(buf)
		if n > 0 {
			if _, werr := c.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}
