package hls

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"testing"

	"github.com/hlsvmm/hlsvmm/tests/guest/origin/hlsorigin"
)

func sum(b []byte) string { s := sha256.Sum256(b); return hex.EncodeToString(s[:]) }

// write feeds data to v in pieces of the given size (exercising record boundaries).
func write(v *verifier, data []byte, piece int) {
	for len(data) > 0 {
		n := min(piece, len(data))
		v.Write(data[:n])
		data = data[n:]
	}
}

func TestVerifierAcceptsTheOriginsContent(t *testing.T) {
	for _, size := range []int64{1, 31, 32, 33, 10_000, 500_000} {
		data := hlsorigin.SegmentContent(1234, size)
		for _, piece := range []int{1, 7, 32, 4096, 1 << 20} {
			for _, mode := range []Verify{VerifyOrigin, VerifySHA256, VerifyNone} {
				v := newVerifier(mode, 1234, strings.ToUpper(sum(data)))
				write(v, data, piece)
				if err := v.Check(); err != nil {
					t.Errorf("size %d piece %d mode %s: %v", size, piece, mode, err)
				}
			}
		}
	}
}

func TestVerifierCatchesBadContent(t *testing.T) {
	good := hlsorigin.SegmentContent(77, 10_000)
	flipped := append([]byte(nil), good...)
	flipped[5000] ^= 1
	other := hlsorigin.SegmentContent(78, 10_000)
	for _, tc := range []struct {
		name   string
		mode   Verify
		body   []byte
		header string
		want   string
	}{
		{"flipped byte", VerifyOrigin, flipped, sum(flipped), "at byte 5000"},
		{"another segment", VerifyOrigin, other, sum(other), "at byte 13"},
		{"truncated", VerifyOrigin, good[:9000], sum(good), "SHA-256 of 9000 bytes"},
		{"truncated, sha256 only", VerifySHA256, good[:9000], sum(good), "SHA-256 of 9000 bytes"},
		{"no header", VerifyOrigin, good, "", "no X-Segment-Sha256"},
		{"no header, sha256 only", VerifySHA256, good, "", "no X-Segment-Sha256"},
		{"empty", VerifyOrigin, nil, sum(nil), "empty"},
	} {
		v := newVerifier(tc.mode, 77, tc.header)
		write(v, tc.body, 1000)
		if err := v.Check(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error containing %q", tc.name, err, tc.want)
		}
	}
	v := newVerifier(VerifyNone, 77, "")
	write(v, flipped, 1000)
	if err := v.Check(); err != nil {
		t.Errorf("verify none: %v", err)
	}
}

func TestParseVerify(t *testing.T) {
	for _, s := range []string{"origin", "sha256", "none"} {
		if v, err := ParseVerify(s); err != nil || string(v) != s {
			t.Errorf("ParseVerify(%q) = %q, %v", s, v, err)
		}
	}
	if _, err := ParseVerify("md5"); err == nil {
		t.Error("ParseVerify(md5) accepted")
	}
}
