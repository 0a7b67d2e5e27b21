package datapath

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"io"
	"sync/atomic"
)

// The blob formula of the test origin (tests/guest/origin/hlsorigin.BlobFill), written out here
// so the bench does not import the guest's code; tests check that both agree.
const blobBlockSize = 64 << 10

// blobPattern is the formula's 64 KiB block without its index: xorshift64 (13, 7, 17) from
// 0x9E3779B97F4A7C15, each state little-endian.
func blobPattern() []byte {
	b := make([]byte, blobBlockSize)
	x := uint64(0x9E3779B97F4A7C15)
	for i := 0; i < blobBlockSize; i += 8 {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		binary.LittleEndian.PutUint64(b[i:], x)
	}
	return b
}

// blob generates blob bytes at any offset from one pattern (immutable once made; share it).
type blob struct{ pattern []byte }

func newBlob() *blob { return &blob{pattern: blobPattern()} }

// Fill fills p with the blob bytes at offset off: block k is the pattern with its first 8
// bytes replaced by k big-endian.
func (b *blob) Fill(p []byte, off int64) {
	var idx [8]byte
	for len(p) > 0 {
		block, in := off/blobBlockSize, int(off%blobBlockSize)
		n := copy(p, b.pattern[in:])
		if in < 8 {
			binary.BigEndian.PutUint64(idx[:], uint64(block))
			copy(p, idx[in:])
		}
		p, off = p[n:], off+int64(n)
	}
}

// blobReader reads n blob bytes from offset 0, hashing them and counting them into moved.
type blobReader struct {
	b     *blob
	off   int64
	n     int64
	sum   hash.Hash
	moved *atomic.Int64
}

func newBlobReader(b *blob, n int64, moved *atomic.Int64) *blobReader {
	return &blobReader{b: b, n: n, sum: sha256.New(), moved: moved}
}

func (r *blobReader) Read(p []byte) (int, error) {
	if r.off >= r.n {
		return 0, io.EOF
	}
	p = p[:min(int64(len(p)), r.n-r.off)]
	r.b.Fill(p, r.off)
	r.sum.Write(p)
	r.off += int64(len(p))
	r.moved.Add(int64(len(p)))
	return len(p), nil
}

// blobChecker consumes bytes that should be the blob from offset 0: it compares them with the
// formula, hashes them and counts them into moved. Write fails at the first differing byte.
type blobChecker struct {
	b     *blob
	off   int64
	want  []byte
	sum   hash.Hash
	moved *atomic.Int64
}

func newBlobChecker(b *blob, moved *atomic.Int64) *blobChecker {
	return &blobChecker{b: b, want: make([]byte, blobBlockSize), sum: sha256.New(), moved: moved}
}

// errMismatch marks content that differs from the formula.
var errMismatch = errors.New("content differs from the blob formula")

func (c *blobChecker) Write(p []byte) (int, error) {
	done := 0
	for done < len(p) {
		chunk := p[done:min(len(p), done+blobBlockSize)]
		want := c.want[:len(chunk)]
		c.b.Fill(want, c.off)
		if !bytes.Equal(chunk, want) {
			i := 0
			for chunk[i] == want[i] {
				i++
			}
			return done + i, fmt.Errorf("%w at byte %d", errMismatch, c.off+int64(i))
		}
		c.sum.Write(chunk)
		c.off += int64(len(chunk))
		c.moved.Add(int64(len(chunk)))
		done += len(chunk)
	}
	return done, nil
}
