package inflate

import (
	"bytes"
	stdgzip "compress/gzip"
	"errors"
	"fmt"
	"io"
	"testing"
	"testing/iotest"
)

type testInput struct {
	name string
	data []byte
}

func testInputs(t testing.TB) []testInput {
	n := 300 << 10
	if testing.Short() {
		n = 100 << 10
	}
	return []testInput{
		{"empty", nil},
		{"one", []byte{'x'}},
		{"random", randData(1, n)},
		{"text", textData(2, n)},
		{"zeros", make([]byte, n)},
		{"mixed", mixedData(3, n)},
		{"gosrc", goSources(t)[:min(len(goSources(t)), 2*n)]},
	}
}

func mustDecode(t *testing.T, gz, want []byte) {
	t.Helper()
	got, bs, err := decodeAll(t, gz, nil)
	if err != nil {
		t.Fatalf("decode error: %v", err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("output mismatch: got %d bytes, want %d", len(got), len(want))
	}
	checkBoundaryOrder(t, bs, int64(len(gz)), int64(len(want)))
}

func checkBoundaryOrder(t *testing.T, bs []bnd, inLen, outLen int64) {
	t.Helper()
	if len(bs) == 0 || !bs[0].Header || bs[0].In < 10 {
		t.Fatalf("first boundary %+v is not a header boundary", bs)
	}
	var prevBit, prevOut int64
	for i, b := range bs {
		bp := b.In*8 - int64(b.Bits)
		if b.Bits > 7 || bp < prevBit || b.Out < prevOut || b.In > inLen || b.Out > outLen {
			t.Fatalf("boundary %d %+v out of order (prev bit %d out %d)", i, b.Boundary, prevBit, prevOut)
		}
		if b.Header && b.Bits != 0 {
			t.Fatalf("header boundary with bits: %+v", b.Boundary)
		}
		prevBit, prevOut = bp, b.Out
	}
	if last := bs[len(bs)-1]; !last.Final || last.Out != outLen {
		t.Fatalf("last boundary %+v: want final at out %d", last.Boundary, outLen)
	}
}

func TestRoundTrip(t *testing.T) {
	for _, in := range testInputs(t) {
		for _, level := range []int{stdgzip.HuffmanOnly, 0, 1, 2, 5, 6, 9} {
			t.Run(fmt.Sprintf("%s/std%d", in.name, level), func(t *testing.T) {
				mustDecode(t, gzStd(t, in.data, level), in.data)
			})
			t.Run(fmt.Sprintf("%s/klaus%d", in.name, level), func(t *testing.T) {
				mustDecode(t, gzKlaus(t, in.data, level), in.data)
			})
		}
		t.Run(in.name+"/flushes", func(t *testing.T) {
			mustDecode(t, gzFlushes(t, in.data, 6, 7777), in.data)
		})
	}
}

func TestLarge(t *testing.T) {
	n := 6 << 20
	if testing.Short() {
		n = 2 << 20
	}
	data := mixedData(7, n)
	for _, level := range []int{0, 1, 6} {
		gz := gzKlaus(t, data, level)
		mustDecode(t, gz, data)
	}
}

func TestMultiMember(t *testing.T) {
	a := textData(10, 100000)
	b := mixedData(11, 150000)
	var gz []byte
	gz = append(gz, gzStd(t, a, 6)...)
	gz = append(gz, gzStd(t, nil, 6)...) // empty member
	gz = append(gz, gzKlaus(t, b, 1)...)
	gz = append(gz, gzFlushes(t, a[:5000], 9, 1000)...)
	want := append(append(bytes.Clone(a), b...), a[:5000]...)
	mustDecode(t, gz, want)

	// Stdlib agrees.
	zr, err := stdgzip.NewReader(bytes.NewReader(gz))
	if err != nil {
		t.Fatal(err)
	}
	std, err := io.ReadAll(zr)
	if err != nil || !bytes.Equal(std, want) {
		t.Fatal("stdlib disagrees", err)
	}

	_, bs, _ := decodeAll(t, gz, nil)
	headers := 0
	for _, b := range bs {
		if b.Header {
			headers++
		}
	}
	if headers != 4 {
		t.Fatalf("got %d header boundaries, want 4", headers)
	}
}

// TestSmallReads decodes with readers returning tiny chunks and errors.
func TestSmallReads(t *testing.T) {
	data := mixedData(20, 200000)
	gz := append(gzStd(t, data, 6), gzStd(t, data[:1000], 0)...)
	want := append(bytes.Clone(data), data[:1000]...)
	for name, r := range map[string]io.Reader{
		"onebyte": iotest.OneByteReader(bytes.NewReader(gz)),
		"half":    iotest.HalfReader(bytes.NewReader(gz)),
		"dataerr": iotest.DataErrReader(bytes.NewReader(gz)),
	} {
		t.Run(name, func(t *testing.T) {
			z := NewGzipReader(r)
			var out bytes.Buffer
			buf := make([]byte, 777)
			for {
				n, err := z.Read(buf)
				out.Write(buf[:n])
				if err == io.EOF {
					break
				}
				if err != nil {
					t.Fatal(err)
				}
			}
			if !bytes.Equal(out.Bytes(), want) {
				t.Fatal("mismatch")
			}
		})
	}
}

func TestReset(t *testing.T) {
	a, b := textData(30, 50000), mixedData(31, 80000)
	z := NewGzipReader(bytes.NewReader(gzStd(t, a, 6)))
	n := 0
	z.OnBoundary(func(Boundary) { n++ })
	got, err := io.ReadAll(z)
	if err != nil || !bytes.Equal(got, a) {
		t.Fatal(err)
	}
	n1 := n
	z.Reset(bytes.NewReader(gzStd(t, b, 6)))
	got, err = io.ReadAll(z)
	if err != nil || !bytes.Equal(got, b) {
		t.Fatal(err)
	}
	if n1 == 0 || n == n1 {
		t.Fatal("callback not kept across Reset")
	}
	var w [windowSize]byte
	z.Reset(bytes.NewReader(gzStd(t, []byte("hi"), 6)))
	z.OnBoundary(func(b Boundary) {
		if b.Final {
			z.Window(w[:])
		}
	})
	if got, err := io.ReadAll(z); err != nil || string(got) != "hi" {
		t.Fatal(err)
	}
	if !bytes.Equal(w[:windowSize-2], make([]byte, windowSize-2)) || string(w[windowSize-2:]) != "hi" {
		t.Fatal("window not zero padded after Reset")
	}
}

func TestWindowAcrossMembers(t *testing.T) {
	a := randData(40, 20000)
	b := randData(41, 5000)
	gz := append(gzStd(t, a, 6), gzStd(t, b, 6)...)
	z := NewGzipReader(bytes.NewReader(gz))
	var wins [][]byte
	z.OnBoundary(func(bd Boundary) {
		w := make([]byte, windowSize)
		z.Window(w)
		wins = append(wins, w)
	})
	if _, err := io.ReadAll(z); err != nil {
		t.Fatal(err)
	}
	all := append(bytes.Clone(a), b...)
	want := append(make([]byte, windowSize-len(all)), all...)
	if !bytes.Equal(wins[len(wins)-1], want) {
		t.Fatal("final window mismatch")
	}
}

func corruptOf(err error) *CorruptError {
	var ce *CorruptError
	if errors.As(err, &ce) {
		return ce
	}
	return nil
}

func TestCorrupt(t *testing.T) {
	data := textData(50, 100000)
	good := gzStd(t, data, 6)
	decode := func(gz []byte) error {
		_, err := io.ReadAll(NewGzipReader(bytes.NewReader(gz)))
		return err
	}
	mod := func(f func(b []byte) []byte) []byte { return f(bytes.Clone(good)) }

	cases := []struct {
		name string
		gz   []byte
		msg  string // "" for ErrUnexpectedEOF
		csum bool
	}{
		{"empty", nil, "", false},
		{"magic", mod(func(b []byte) []byte { b[0] = 0; return b }), msgBadMagic, false},
		{"method", mod(func(b []byte) []byte { b[2] = 7; return b }), msgBadMethod, false},
		{"flags", mod(func(b []byte) []byte { b[3] |= 0x80; return b }), msgReservedFlags, false},
		{"blocktype", mod(func(b []byte) []byte { b[10] |= 6; return b }), msgBadBlockType, false},
		{"crc", mod(func(b []byte) []byte { b[len(b)-5] ^= 1; return b }), msgTrailerCRC, true},
		{"size", mod(func(b []byte) []byte { b[len(b)-1] ^= 1; return b }), msgTrailerSize, true},
		{"truncated", good[:len(good)/2], "", false},
		{"truncated-trailer", good[:len(good)-3], "", false},
		{"header-only", good[:10], "", false},
		{"trailing-garbage", append(bytes.Clone(good), 0, 0, 0, 0, 0, 0, 0, 0, 0, 0), msgBadMagic, false},
		{"trailing-partial", append(bytes.Clone(good), 0x1f), "", false},
		// Hand-made deflate streams after a minimal gzip header.
		{"dist-too-far", gzRaw(fixedBits([]sym{{lit: 'a'}, {lit: 257, dist: 1}})), msgDistTooFar, false},
		{"bad-dist-code", gzRaw(fixedBits([]sym{{lit: 'a'}, {lit: 257, dist: 30}})), msgBadDistCode, false},
		{"bad-lit-code", gzRaw(fixedBits([]sym{{lit: 'a'}, {lit: 286}})), msgBadCode, false},
		{"stored-len", gzRaw([]byte{0x01, 0x05, 0x00, 0x00, 0x00}), msgStoredLen, false},
		{"oversubscribed", gzRaw(dynOversub()), msgBadCodeLens, false},
		{"hlit", gzRaw([]byte{0x05 | 0x1f<<3, 0xff, 0xff}), msgTooManyCodes, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := decode(c.gz)
			if c.msg == "" {
				if err != io.ErrUnexpectedEOF {
					t.Fatalf("got %v, want io.ErrUnexpectedEOF", err)
				}
				return
			}
			ce := corruptOf(err)
			if ce == nil || ce.Msg != c.msg {
				t.Fatalf("got %v, want CorruptError %q", err, c.msg)
			}
			if errors.Is(err, ErrChecksum) != c.csum {
				t.Fatalf("errors.Is(ErrChecksum) = %v", !c.csum)
			}
		})
	}

	// Header CRC.
	hdr := []byte{0x1f, 0x8b, 8, flagHdrCrc, 0, 0, 0, 0, 0, 0xff, 0, 0}
	if ce := corruptOf(decode(append(hdr, 3, 0))); ce == nil || ce.Msg != msgHeaderCRC || !errors.Is(ce, ErrChecksum) {
		t.Fatalf("bad header crc not detected: %v", ce)
	}
	// Long name.
	long := append([]byte{0x1f, 0x8b, 8, flagName, 0, 0, 0, 0, 0, 0xff}, bytes.Repeat([]byte{'a'}, 70000)...)
	if ce := corruptOf(decode(append(long, 0, 3, 0))); ce == nil || ce.Msg != msgNameTooLong {
		t.Fatalf("long name not detected: %v", ce)
	}
}

func TestHeaderFields(t *testing.T) {
	data := textData(60, 5000)
	var buf bytes.Buffer
	w := stdgzip.NewWriter(&buf)
	w.Name = "name"
	w.Comment = "comment"
	w.Extra = bytes.Repeat([]byte{1, 2, 3}, 1000)
	w.Write(data)
	w.Close()
	gz := buf.Bytes()
	mustDecode(t, gz, data)
	// Add a correct FHCRC.
	hl := 10 + 2 + len(w.Extra) + 5 + 8
	hdr := bytes.Clone(gz[:hl])
	hdr[3] |= flagHdrCrc
	crc := crc32IEEE(hdr)
	withCRC := append(append(hdr, byte(crc), byte(crc>>8)), gz[hl:]...)
	mustDecode(t, withCRC, data)
	// Name of exactly 64 KiB including NUL is accepted.
	name := append([]byte{0x1f, 0x8b, 8, flagName, 0, 0, 0, 0, 0, 0xff}, bytes.Repeat([]byte{'a'}, maxHeaderString-1)...)
	name = append(name, 0)
	mustDecode(t, append(name, gzStd(t, data, 6)[10:]...), data)
}

func TestWriteTo(t *testing.T) {
	data := mixedData(70, 1<<20)
	gz := append(gzStd(t, data, 6), gzStd(t, data[:100], 1)...)
	var buf bytes.Buffer
	n, err := NewGzipReader(bytes.NewReader(gz)).WriteTo(&buf)
	want := append(bytes.Clone(data), data[:100]...)
	if err != nil || n != int64(len(want)) || !bytes.Equal(buf.Bytes(), want) {
		t.Fatal(err, n)
	}
	buf.Reset()
	if _, err := NewGzipReader(bytes.NewReader(gz[:len(gz)/2])).WriteTo(&buf); err != io.ErrUnexpectedEOF || !bytes.HasPrefix(want, buf.Bytes()) || buf.Len() == 0 {
		t.Fatal(err)
	}
	if _, err := io.ReadAll(NewGzipReader(nil)); err == nil {
		t.Fatal("nil reader accepted")
	}
}
