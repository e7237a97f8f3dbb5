package inflate

import "math/bits"

// Decoding table entries are uint32 values:
//
//	bits  0-4   number of bits of the code (the full code length, also for
//	            entries found in a sub-table); 0 for invalid entries
//	bit   5     literal: the byte is in bits 16-23
//	bit   6     end of block
//	bit   7     invalid code
//	bits  8-11  extra bits to read after the code (length/distance), or the
//	            number of index bits of the sub-table (sub-table pointers)
//	bit   12    sub-table pointer: bits 16-31 are the sub-table offset
//	bits 16-31  value: literal byte, length base, distance base, symbol
//	            (code length code) or sub-table offset
const (
	eLenMask   = 0x1f
	eLiteral   = 1 << 5
	eEOB       = 1 << 6
	eInvalid   = 1 << 7
	eSpecial   = eEOB | eInvalid
	eSub       = 1 << 12
	eExtraShft = 8
	eValShift  = 16
)

const (
	litPBits      = 11 // primary literal/length table index bits
	litPMask      = 1<<litPBits - 1
	litTableSize  = 4096 // primary + sub-tables (at most 2048+922 entries are needed for complete codes)
	distPBits     = 8
	distPMask     = 1<<distPBits - 1
	distTableSize = 1024 // at most 256+480 entries are needed for complete codes
	clPBits       = 7
	clTableSize   = 1 << clPBits

	maxCodeLen = 15
	numLitSyms = 288
	maxNumLit  = 286
	maxNumDist = 30
)

var (
	// litSymEntry and distSymEntry give the table entry (without code
	// length) of each literal/length and distance symbol.
	litSymEntry  [numLitSyms]uint32
	distSymEntry [32]uint32
	clSymEntry   [19]uint32

	fixedLit  [litTableSize]uint32
	fixedDist [distTableSize]uint32
)

var lenBase = [29]uint32{3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31,
	35, 43, 51, 59, 67, 83, 99, 115, 131, 163, 195, 227, 258}
var lenExtra = [29]uint32{0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2,
	3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0}
var distBase = [30]uint32{1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193,
	257, 385, 513, 769, 1025, 1537, 2049, 3073, 4097, 6145, 8193, 12289, 16385, 24577}
var distExtra = [30]uint32{0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6,
	7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13}

// codeOrder is the order of the code length code lengths in a dynamic block header.
var codeOrder = [19]uint8{16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15}

func init() {
	for s := 0; s < 256; s++ {
		litSymEntry[s] = uint32(s)<<eValShift | eLiteral
	}
	litSymEntry[256] = eEOB
	for s := 257; s < 286; s++ {
		litSymEntry[s] = lenBase[s-257]<<eValShift | lenExtra[s-257]<<eExtraShft
	}
	litSymEntry[286] = eInvalid
	litSymEntry[287] = eInvalid
	for s := 0; s < 30; s++ {
		distSymEntry[s] = distBase[s]<<eValShift | distExtra[s]<<eExtraShft
	}
	distSymEntry[30] = eInvalid
	distSymEntry[31] = eInvalid
	for s := range clSymEntry {
		clSymEntry[s] = uint32(s) << eValShift
	}

	var lens [numLitSyms]uint8
	for i := range lens {
		switch {
		case i < 144:
			lens[i] = 8
		case i < 256:
			lens[i] = 9
		case i < 280:
			lens[i] = 7
		default:
			lens[i] = 8
		}
	}
	if !buildTable(fixedLit[:], litPBits, lens[:], litSymEntry[:]) {
		panic("inflate: cannot build fixed literal table")
	}
	var dl [32]uint8
	for i := range dl {
		dl[i] = 5
	}
	if !buildTable(fixedDist[:], distPBits, dl[:], distSymEntry[:]) {
		panic("inflate: cannot build fixed distance table")
	}
}

// buildTable builds the decoding table t (a primary table of 1<<pbits
// entries followed by sub-tables) for the canonical Huffman code described
// by the code lengths lens; sym[i] is the entry payload of symbol i.
//
// Like Go's compress/flate (and compatible with zlib for the literal/length
// and distance codes), a code must be complete, except that an empty code and
// a code with a single symbol of length 1 are accepted. Unused table slots of
// incomplete codes decode as invalid. It reports false for an invalid code.
func buildTable(t []uint32, pbits uint, lens []uint8, sym []uint32) bool {
	var count [maxCodeLen + 1]int
	maxLen := 0
	for _, l := range lens {
		if l > maxCodeLen {
			return false
		}
		count[l]++
		if int(l) > maxLen {
			maxLen = int(l)
		}
	}
	count[0] = 0
	psize := 1 << pbits
	if len(t) < psize {
		return false
	}
	if maxLen == 0 {
		for i := 0; i < psize; i++ {
			t[i] = eInvalid
		}
		return true
	}
	// Kraft check.
	left := 1
	for l := 1; l <= maxCodeLen; l++ {
		left <<= 1
		left -= count[l]
		if left < 0 {
			return false // over-subscribed
		}
	}
	if left > 0 {
		// Incomplete: accept only a single code of length 1.
		if !(maxLen == 1 && count[1] == 1) {
			return false
		}
		for i := 0; i < psize; i++ {
			t[i] = eInvalid
		}
	}

	// First canonical code of each length.
	var next [maxCodeLen + 2]int
	code := 0
	for l := 1; l <= maxCodeLen; l++ {
		code = (code + count[l-1]) << 1
		next[l] = code
	}
	next[0] = 0

	// Symbols sorted by (length, symbol) so that codes increase.
	var offs [maxCodeLen + 2]int
	for l := 1; l <= maxCodeLen; l++ {
		offs[l+1] = offs[l] + count[l]
	}
	var sorted [numLitSyms]uint16
	n := 0
	for s, l := range lens {
		if l != 0 {
			sorted[offs[l]] = uint16(s)
			offs[l]++
			n++
		}
	}
	var codes [numLitSyms]uint16
	for i := 0; i < n; i++ {
		s := sorted[i]
		l := lens[s]
		codes[i] = uint16(next[l])
		next[l]++
	}

	nextSub := psize
	curPrefix := -1
	subBase, subBits := 0, uint(0)
	for i := 0; i < n; i++ {
		s := sorted[i]
		l := uint(lens[s])
		c := uint(codes[i])
		e := sym[s] | uint32(l)
		if l <= pbits {
			r := int(bits.Reverse16(uint16(c)) >> (16 - l))
			for j := r; j < psize; j += 1 << l {
				t[j] = e
			}
			continue
		}
		prefix := int(c >> (l - pbits))
		if prefix != curPrefix {
			// New sub-table: its size is given by the longest code with
			// this prefix (the last one, codes being sorted by length).
			maxL := l
			for j := i + 1; j < n; j++ {
				lj := uint(lens[sorted[j]])
				if int(uint(codes[j])>>(lj-pbits)) != prefix {
					break
				}
				maxL = lj
			}
			curPrefix = prefix
			subBits = maxL - pbits
			subBase = nextSub
			nextSub += 1 << subBits
			if nextSub > len(t) || subBase >= 1<<16 {
				return false
			}
			pr := int(bits.Reverse16(uint16(prefix)) >> (16 - pbits))
			t[pr] = uint32(subBase)<<eValShift | uint32(subBits)<<eExtraShft | eSub
		}
		sl := l - pbits
		r := int(bits.Reverse16(uint16(c&(1<<sl-1))) >> (16 - sl))
		for j := r; j < 1<<subBits; j += 1 << sl {
			t[subBase+j] = e
		}
	}
	return true
}
