package inflate

import "hash/crc32"

func crc32IEEE(b []byte) uint32 { return crc32.ChecksumIEEE(b) }

// bitWriter writes an LSB-first deflate bit stream.
type bitWriter struct {
	out  []byte
	acc  uint64
	nacc uint
}

func (w *bitWriter) bits(v uint64, n uint) {
	w.acc |= v << w.nacc
	w.nacc += n
	for w.nacc >= 8 {
		w.out = append(w.out, byte(w.acc))
		w.acc >>= 8
		w.nacc -= 8
	}
}

// code writes a Huffman code (MSB first).
func (w *bitWriter) code(c uint64, n uint) {
	var r uint64
	for i := uint(0); i < n; i++ {
		r = r<<1 | (c>>i)&1
	}
	w.bits(r, n)
}

func (w *bitWriter) bytes() []byte {
	if w.nacc > 0 {
		return append(w.out, byte(w.acc))
	}
	return w.out
}

type sym struct {
	lit  int // literal/length symbol (0..287)
	dist int // distance code for length symbols
}

func (w *bitWriter) fixedSym(s int) {
	switch {
	case s < 144:
		w.code(uint64(0x30+s), 8)
	case s < 256:
		w.code(uint64(0x190+s-144), 9)
	case s < 280:
		w.code(uint64(s-256), 7)
	default:
		w.code(uint64(0xc0+s-280), 8)
	}
}

// fixedBits encodes a final fixed-Huffman block with the given symbols
// (extra bits zero) followed by an end of block.
func fixedBits(syms []sym) []byte {
	var w bitWriter
	w.bits(1, 1)
	w.bits(1, 2)
	for _, s := range syms {
		w.fixedSym(s.lit)
		if s.lit > 256 && s.lit < 286 {
			w.bits(0, uint(lenExtra[s.lit-257]))
			w.code(uint64(s.dist), 5)
			if s.dist < 30 {
				w.bits(0, uint(distExtra[s.dist]))
			}
		}
	}
	w.fixedSym(256)
	return w.bytes()
}

// dynOversub is a dynamic block header whose code length code is
// over-subscribed.
func dynOversub() []byte {
	var w bitWriter
	w.bits(1, 1)
	w.bits(2, 2)
	w.bits(0, 5)  // HLIT
	w.bits(0, 5)  // HDIST
	w.bits(15, 4) // HCLEN = 19
	for i := 0; i < 19; i++ {
		w.bits(1, 3) // 19 codes of length 1
	}
	w.bits(0, 16)
	return w.bytes()
}

// gzRaw wraps raw deflate data in a minimal gzip header (no trailer).
func gzRaw(deflate []byte) []byte {
	return append([]byte{0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff}, deflate...)
}
