package inflate

import (
	"bytes"
	stdgzip "compress/gzip"
	"errors"
	"io"
	"testing"
)

const fuzzMaxOut = 8 << 20

func fuzzSeeds(f *testing.F) [][]byte {
	text := textData(200, 3000)
	seeds := [][]byte{
		gzStd(f, text, 6),
		gzStd(f, text, 0),
		gzStd(f, text, stdgzip.HuffmanOnly),
		gzStd(f, nil, 6),
		gzKlaus(f, mixedData(201, 5000), 1),
		gzFlushes(f, text[:500], 6, 100),
		append(gzStd(f, text[:100], 1), gzStd(f, text[100:300], 9)...),
		gzRaw(fixedBits([]sym{{lit: 'a'}, {lit: 260, dist: 0}})),
	}
	return seeds
}

func FuzzGzipReader(f *testing.F) {
	for _, s := range fuzzSeeds(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		z := NewGzipReader(bytes.NewReader(data))
		var prevBit, prevOut int64
		z.OnBoundary(func(b Boundary) {
			bp := b.In*8 - int64(b.Bits)
			if b.Bits > 7 || bp < prevBit || b.Out < prevOut || b.In > int64(len(data)) {
				t.Fatalf("bad boundary %+v", b)
			}
			prevBit, prevOut = bp, b.Out
		})
		ours, ourErr := io.ReadAll(io.LimitReader(z, fuzzMaxOut))
		limited := len(ours) == fuzzMaxOut
		var ce *CorruptError
		if ourErr != nil && ourErr != io.ErrUnexpectedEOF && !errors.As(ourErr, &ce) {
			t.Fatalf("untyped error %v", ourErr)
		}

		var std []byte
		zr, stdErr := stdgzip.NewReader(bytes.NewReader(data))
		if stdErr == nil {
			std, stdErr = io.ReadAll(io.LimitReader(zr, fuzzMaxOut))
		}
		if limited || len(std) == fuzzMaxOut {
			if !bytes.Equal(ours[:min(len(ours), len(std))], std[:min(len(ours), len(std))]) {
				t.Fatal("output prefix mismatch")
			}
			return
		}
		if stdErr == nil {
			if ourErr != nil {
				// compress/gzip ignores the reserved gzip flags; zlib (and we) reject them.
				if ce != nil && ce.Msg == msgReservedFlags {
					return
				}
				t.Fatalf("compress/gzip accepted, we failed: %v", ourErr)
			}
			if !bytes.Equal(ours, std) {
				t.Fatalf("output mismatch: %d vs %d bytes", len(ours), len(std))
			}
		} else if ourErr == nil {
			// compress/gzip limits FNAME/FCOMMENT to 511 bytes; we allow 64 KiB.
			if stdErr == stdgzip.ErrHeader && z.d.maxStrLen >= 512 {
				return
			}
			t.Fatalf("we accepted, compress/gzip failed: %v", stdErr)
		}
	})
}

func FuzzResume(f *testing.F) {
	for i, s := range fuzzSeeds(f) {
		f.Add(s[10:], uint8(i), uint16(i*1000))
	}
	f.Fuzz(func(t *testing.T, data []byte, bits uint8, winLen uint16) {
		win := make([]byte, int(winLen)%(windowSize+100))
		for i := range win {
			win[i] = byte(i * 7)
		}
		r, err := NewResumeReader(bytes.NewReader(data), bits%8, win)
		if err != nil {
			t.Fatal(err)
		}
		_, err = io.ReadAll(io.LimitReader(r, fuzzMaxOut))
		var ce *CorruptError
		if err != nil && err != io.ErrUnexpectedEOF && !errors.As(err, &ce) {
			t.Fatalf("untyped error %v", err)
		}
	})
}
