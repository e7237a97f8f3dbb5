package inflate

import (
	"bytes"
	stdgzip "compress/gzip"
	"errors"
	"io"
	"testing"
	"testing/iotest"
)

// resumeSrc returns the compressed bytes a resume reader for b needs.
func resumeStart(b Boundary) int64 {
	if b.Bits != 0 {
		return b.In - 1
	}
	return b.In
}

// checkResume verifies, for the boundaries selected by keep, that resuming
// from the boundary reproduces the rest of the output, and that each span
// between consecutive kept resumable boundaries decodes to exactly its
// output range followed by io.ErrUnexpectedEOF.
func checkResume(t *testing.T, gz []byte, want []byte, keep func(i int) bool) (checked, withBits int) {
	t.Helper()
	got, bs, err := decodeAll(t, gz, keep)
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("decode: %v (got %d want %d bytes)", err, len(got), len(want))
	}
	var pts []bnd
	for i, b := range bs {
		if keep(i) && !b.Final {
			pts = append(pts, b)
		}
	}
	for k, p := range pts {
		start := resumeStart(p.Boundary)
		// Resume to the end.
		r, err := NewResumeReader(bytes.NewReader(gz[start:]), p.Bits, p.win)
		if err != nil {
			t.Fatal(err)
		}
		rest, err := io.ReadAll(r)
		if err != nil || !bytes.Equal(rest, want[p.Out:]) {
			t.Fatalf("resume from %+v: err %v, got %d bytes, want %d (equal prefix %v)", p.Boundary, err, len(rest), len(want)-int(p.Out),
				bytes.HasPrefix(want[p.Out:], rest))
		}
		checked++
		if p.Bits != 0 {
			withBits++
		}
		// Span to the next kept boundary (any kind, including final/header).
		var next *bnd
		for j := range bs {
			if bs[j].In*8-int64(bs[j].Bits) > p.In*8-int64(p.Bits) || (bs[j].Out > p.Out) {
				if keep(j) {
					next = &bs[j]
					break
				}
			}
		}
		if next == nil || next.In <= start {
			continue
		}
		r, _ = NewResumeReader(bytes.NewReader(gz[start:next.In]), p.Bits, p.win)
		span, err := io.ReadAll(r)
		if !bytes.Equal(span, want[p.Out:next.Out]) {
			t.Fatalf("span %d %+v -> %+v: got %d bytes, want %d", k, p.Boundary, next.Boundary, len(span), next.Out-p.Out)
		}
		if next.In == int64(len(gz)) {
			continue
		}
		if err != io.ErrUnexpectedEOF {
			t.Fatalf("span %+v -> %+v: err %v, want io.ErrUnexpectedEOF", p.Boundary, next.Boundary, err)
		}
	}
	return
}

func TestResumeAllBoundaries(t *testing.T) {
	n := 200 << 10
	if testing.Short() {
		n = 80 << 10
	}
	all := func(int) bool { return true }
	for _, in := range []testInput{
		{"short", textData(99, 20000)},
		{"text", textData(100, n)},
		{"mixed", mixedData(101, 3*n)},
		{"gosrc", goSources(t)[:n]},
	} {
		for _, c := range []struct {
			name string
			gz   []byte
		}{
			{"std1", gzStd(t, in.data, 1)},
			{"std6", gzStd(t, in.data, 6)},
			{"std9", gzStd(t, in.data, 9)},
			{"huff", gzStd(t, in.data, stdgzip.HuffmanOnly)},
			{"stored", gzStd(t, in.data, 0)},
			{"klaus1", gzKlaus(t, in.data, 1)},
			{"klaus9", gzKlaus(t, in.data, 9)},
			{"flush", gzFlushes(t, in.data, 6, 3000)},
		} {
			t.Run(in.name+"/"+c.name, func(t *testing.T) {
				checkResume(t, c.gz, in.data, all)
			})
		}
		small := in.data[:12000]
		t.Run(in.name+"/flush-small", func(t *testing.T) {
			checkResume(t, gzFlushes(t, small, 1, 97), small, all)
		})
	}
}

func TestResumeMultiMember(t *testing.T) {
	a := mixedData(110, 120000)
	b := textData(111, 90000)
	c := goSources(t)[:60000]
	gz := append(append(append(gzStd(t, a, 6), gzFlushes(t, b, 5, 4000)...), gzStd(t, nil, 6)...), gzKlaus(t, c, 3)...)
	want := append(append(bytes.Clone(a), b...), c...)
	checked, withBits := checkResume(t, gz, want, func(int) bool { return true })
	if checked < 10 || withBits < 5 {
		t.Fatalf("too few boundaries checked: %d (%d with bits)", checked, withBits)
	}
}

func TestResumeLarge(t *testing.T) {
	n := 4 << 20
	if testing.Short() {
		n = 1500 << 10
	}
	data := mixedData(120, n)
	gz := gzKlaus(t, data, 6)
	// Checkpoints roughly every 256 KiB of output, like zTOC spans.
	var last int64 = -1
	keepSet := map[int]bool{}
	_, bs, err := decodeAll(t, gz, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i, b := range bs {
		if !b.Final && (last < 0 || b.Out-last > 256<<10) {
			keepSet[i] = true
			last = b.Out
		}
	}
	keepSet[len(bs)-1] = true
	checked, _ := checkResume(t, gz, data, func(i int) bool { return keepSet[i] })
	if checked < 4 {
		t.Fatalf("only %d checkpoints", checked)
	}
}

func TestResumeReaderPromptness(t *testing.T) {
	data := mixedData(130, 300000)
	gz := gzStd(t, data, 6)
	_, bs, _ := decodeAll(t, gz, func(i int) bool { return true })
	p := bs[len(bs)/2]
	if p.Final || p.Header {
		t.Fatalf("bad pick %+v", p.Boundary)
	}
	r, _ := NewResumeReader(iotest.OneByteReader(bytes.NewReader(gz[resumeStart(p.Boundary):])), p.Bits, p.win)
	got, err := io.ReadAll(r)
	if err != nil || !bytes.Equal(got, data[p.Out:]) {
		t.Fatal("one-byte resume mismatch", err)
	}
	// Truncated anywhere: output is a prefix, then ErrUnexpectedEOF.
	src := gz[resumeStart(p.Boundary):]
	for _, cut := range []int{1, 2, 10, 1000, len(src) / 2, len(src) - 9} {
		r, _ := NewResumeReader(bytes.NewReader(src[:cut]), p.Bits, p.win)
		got, err := io.ReadAll(r)
		if err != io.ErrUnexpectedEOF || !bytes.HasPrefix(data[p.Out:], got) {
			t.Fatalf("cut %d: err %v prefix %v", cut, err, bytes.HasPrefix(data[p.Out:], got))
		}
	}
}

func TestResumeArgs(t *testing.T) {
	if _, err := NewResumeReader(bytes.NewReader(nil), 8, nil); err == nil {
		t.Fatal("bits 8 accepted")
	}
	r, err := NewResumeReader(bytes.NewReader(nil), 3, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadAll(r); err != io.ErrUnexpectedEOF {
		t.Fatal(err)
	}
	// Distances reaching beyond a short window are rejected.
	r, _ = NewResumeReader(bytes.NewReader(fixedBits([]sym{{lit: 257, dist: 4}})), 0, []byte("abcd"))
	if _, err := io.ReadAll(r); corruptOf(err) == nil || corruptOf(err).Msg != msgDistTooFar {
		t.Fatal(err)
	}
	r, _ = NewResumeReader(bytes.NewReader(fixedBits([]sym{{lit: 257, dist: 3}})), 0, []byte("abcd"))
	if got, err := io.ReadAll(r); !errors.Is(err, io.ErrUnexpectedEOF) || string(got) != "abc" {
		t.Fatalf("%q %v", got, err)
	}
}
