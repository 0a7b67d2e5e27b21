package hls

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash"
	"strings"
)

// Verify says how segment content is checked.
type Verify string

const (
	// VerifyOrigin checks the test guest's origin contract (tests/guest/origin): the body is
	// 32-byte records fmt.Sprintf("seg=%010d rec=%010d..\n", SEQ, r), r = 0, 1, ..., cut to
	// the body's size, where SEQ is the segment's sequence number from the playlist, and the
	// X-Segment-Sha256 header is present and is the body's SHA-256.
	VerifyOrigin Verify = "origin"
	// VerifySHA256 checks only the X-Segment-Sha256 header, which must be present.
	VerifySHA256 Verify = "sha256"
	// VerifyNone checks nothing beyond HTTP framing (for origins without a content contract,
	// such as ffmpeg behind nginx).
	VerifyNone Verify = "none"
)

// ParseVerify checks a --verify value.
func ParseVerify(s string) (Verify, error) {
	switch v := Verify(s); v {
	case VerifyOrigin, VerifySHA256, VerifyNone:
		return v, nil
	}
	return "", fmt.Errorf("verify mode %q: want origin, sha256 or none", s)
}

// recordSize is the length of one record of the origin's segment content.
const recordSize = 32

// verifier checks one segment body as it streams through Write; Check gives the verdict.
type verifier struct {
	mode    Verify
	seq     int64
	want    string // X-Segment-Sha256
	sum     hash.Hash
	n       int64
	rec     [recordSize]byte
	recNo   int64 // which record rec holds; -1 none
	badAt   int64 // first offset that differs from the records; -1 none
	seqText [10]byte
}

func newVerifier(mode Verify, seq int64, header string) *verifier {
	v := &verifier{mode: mode, seq: seq, want: strings.ToLower(strings.TrimSpace(header)), recNo: -1, badAt: -1}
	if mode != VerifyNone {
		v.sum = sha256.New()
	}
	if mode == VerifyOrigin {
		copy(v.rec[:], "seg=0000000000 rec=0000000000..\n")
		putDigits(v.rec[4:14], seq)
	}
	return v
}

// putDigits writes n zero-padded into dst (the low len(dst) digits, as %0Nd for n < 10^N).
func putDigits(dst []byte, n int64) {
	for i := len(dst) - 1; i >= 0; i-- {
		dst[i] = byte('0' + n%10)
		n /= 10
	}
}

func (v *verifier) Write(p []byte) (int, error) {
	if v.sum != nil {
		v.sum.Write(p)
	}
	if v.mode == VerifyOrigin && v.badAt < 0 {
		off := v.n
		for q := p; len(q) > 0; {
			r, pos := off/recordSize, off%recordSize
			if r != v.recNo {
				putDigits(v.rec[19:29], r)
				v.recNo = r
			}
			k := min(int64(len(q)), recordSize-pos)
			if string(q[:k]) != string(v.rec[pos:pos+k]) {
				for i := range k {
					if q[i] != v.rec[pos+i] {
						v.badAt = off + i
						break
					}
				}
				break
			}
			q, off = q[k:], off+k
		}
	}
	v.n += int64(len(p))
	return len(p), nil
}

// Check returns nil if the body written so far is the segment the mode expects.
func (v *verifier) Check() error {
	if v.mode == VerifyNone {
		return nil
	}
	if v.want == "" {
		return fmt.Errorf("segment %d: no X-Segment-Sha256 header", v.seq)
	}
	if v.badAt >= 0 {
		return fmt.Errorf("segment %d: content differs from the origin's records at byte %d", v.seq, v.badAt)
	}
	if got := hex.EncodeToString(v.sum.Sum(nil)); got != v.want {
		return fmt.Errorf("segment %d: SHA-256 of %d bytes is %s, header says %s", v.seq, v.n, got, v.want)
	}
	if v.mode == VerifyOrigin && v.n == 0 {
		return fmt.Errorf("segment %d: empty", v.seq)
	}
	return nil
}
