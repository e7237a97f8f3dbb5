package inflate

import (
	"encoding/binary"
	"errors"
	"hash/crc32"
	"io"
)

var errNilReader = errors.New("inflate: nil source reader")

const (
	windowSize = 1 << 15 // deflate history
	outChunk   = 1 << 18 // output produced between slides of the history buffer
	histLen    = windowSize + outChunk
	histSlack  = 64 // room for the fast loop's 8-byte over-copies past histLen
	maxMatch   = 258
	outLimit   = histLen - maxMatch // a symbol may be decoded while wp <= outLimit

	inBufSize = 1 << 16
	inLow     = 512 // read more input before a block header when fewer bytes are buffered
	fastIn    = 8   // the fast loop needs this many buffered input bytes
)

// Decoder states (between symbols / structures).
type state uint8

const (
	stHeader  state = iota // a gzip member header is next
	stPrime                // resume: the primed partial byte must be read
	stBlock                // a deflate block header is next
	stStored               // inside a stored block (storedRem bytes left)
	stHuff                 // inside a Huffman-coded block
	stTrailer              // a final block ended: gzip trailer next
	stNext                 // after a trailer: end of input or another member
	stDone
)

// Status of the Huffman decoding loops.
const (
	hsLimit = iota // stopped on input/output limits
	hsEOB
	hsBadCode
	hsBadDist
	hsDistFar
)

// decompressor is the shared engine of GzipReader and the resume reader.
type decompressor struct {
	src    io.Reader
	in     []byte // input buffer
	ip, ie int    // next unread byte, end of buffered input
	inBase int64  // stream offset of in[0]
	eof    bool   // src is exhausted (or failed, see srcErr)
	srcErr error  // non-EOF error from src

	b  uint64 // bit accumulator; bits above nb are zero outside the fast loop
	nb uint   // number of valid bits in b

	hist       []byte // history and output buffer, len histLen+histSlack
	wp, rp     int    // write and read positions in hist
	outBase    int64  // total output offset of hist[0]
	validStart int    // back-references may not reach before hist[validStart]

	st        state
	final     bool // the current block is the final one
	storedRem int  // bytes left in the current stored block
	primeBits uint8

	curLit  *[litTableSize]uint32
	curDist *[distTableSize]uint32
	dynLit  [litTableSize]uint32
	dynDist [distTableSize]uint32
	clTable [clTableSize]uint32
	lens    [maxNumLit + maxNumDist]uint8

	checkTrailer bool // verify the gzip trailer (GzipReader) or just skip it (resume)
	crc          uint32
	crcPos       int
	memberStart  int64 // total output at the start of the current member
	hdrBuf       []byte
	maxStrLen    int // longest FNAME/FCOMMENT seen (tests compare with compress/gzip's 512-byte limit)

	onBoundary func(Boundary)
	err        error
}

func (d *decompressor) init(src io.Reader) {
	if d.in == nil {
		d.in = make([]byte, inBufSize)
	}
	if d.hist == nil {
		d.hist = make([]byte, histLen+histSlack)
	} else {
		clear(d.hist[:windowSize])
	}
	d.src = src
	d.ip, d.ie = 0, 0
	d.inBase = 0
	d.eof = false
	d.srcErr = nil
	d.b, d.nb = 0, 0
	d.wp, d.rp = windowSize, windowSize
	d.outBase = -windowSize
	d.validStart = windowSize
	d.st = stHeader
	d.final = false
	d.storedRem = 0
	d.primeBits = 0
	d.curLit, d.curDist = nil, nil
	d.crc = 0
	d.crcPos = windowSize
	d.memberStart = 0
	d.hdrBuf = d.hdrBuf[:0]
	d.maxStrLen = 0
	d.err = nil
}

// total returns the number of bytes produced so far.
func (d *decompressor) total() int64 { return d.outBase + int64(d.wp) }

// bitPos returns the number of compressed bits consumed so far.
func (d *decompressor) bitPos() int64 { return (d.inBase+int64(d.ip))*8 - int64(d.nb) }

func (d *decompressor) corrupt(msg string) {
	d.err = &CorruptError{Offset: d.bitPos() / 8, Msg: msg}
}

// inputErr is the error for input that ended where more was required.
func (d *decompressor) inputErr() error {
	if d.srcErr != nil {
		return d.srcErr
	}
	return io.ErrUnexpectedEOF
}

// fill compacts the input buffer and reads once from src (retrying reads
// that return nothing). It sets eof/srcErr at the end of src.
func (d *decompressor) fill() {
	if d.eof {
		return
	}
	if d.ip > 0 {
		n := copy(d.in, d.in[d.ip:d.ie])
		d.inBase += int64(d.ip)
		d.ip, d.ie = 0, n
	}
	if d.ie == len(d.in) {
		return
	}
	if d.src == nil {
		d.eof = true
		d.srcErr = errNilReader
		return
	}
	for tries := 0; tries < 100; tries++ {
		n, err := d.src.Read(d.in[d.ie:])
		if n < 0 || n > len(d.in)-d.ie {
			n = 0
			if err == nil {
				err = io.ErrShortBuffer
			}
		}
		d.ie += n
		if err != nil {
			d.eof = true
			if err != io.EOF {
				d.srcErr = err
			}
			return
		}
		if n > 0 {
			return
		}
	}
	d.eof = true
	d.srcErr = io.ErrNoProgress
}

// ensure tries to have at least k bytes of input buffered. It returns true
// when the caller should first hand the pending output to the reader
// (reading src could block while decoded output is waiting).
func (d *decompressor) ensure(k int) bool {
	for d.ie-d.ip < k && !d.eof {
		if d.rp < d.wp {
			return true
		}
		d.fill()
	}
	return false
}

// pullByte moves one input byte into the bit accumulator.
func (d *decompressor) pullByte() bool {
	if d.ip >= d.ie {
		d.fill()
		if d.ip >= d.ie {
			d.err = d.inputErr()
			return false
		}
	}
	d.b |= uint64(d.in[d.ip]) << (d.nb & 63)
	d.ip++
	d.nb += 8
	return true
}

// needBits makes at least n (<= 56) bits available in the accumulator.
func (d *decompressor) needBits(n uint) bool {
	for d.nb < n {
		if !d.pullByte() {
			return false
		}
	}
	return true
}

// getBits returns the next n (<= 32) bits.
func (d *decompressor) getBits(n uint) (uint32, bool) {
	if !d.needBits(n) {
		return 0, false
	}
	v := uint32(d.b & (1<<n - 1))
	d.b >>= n
	d.nb -= n
	return v, true
}

// readByte reads one byte at a byte-aligned position (whole bytes in the
// accumulator first).
func (d *decompressor) readByte() (byte, bool) {
	if d.nb >= 8 {
		c := byte(d.b)
		d.b >>= 8
		d.nb -= 8
		return c, true
	}
	if d.ip >= d.ie {
		d.fill()
		if d.ip >= d.ie {
			d.err = d.inputErr()
			return 0, false
		}
	}
	c := d.in[d.ip]
	d.ip++
	return c, true
}

// slide moves the last windowSize bytes of output to the front of hist.
// It requires rp == wp.
func (d *decompressor) slide() {
	d.updateCRC()
	shift := d.wp - windowSize
	copy(d.hist[:windowSize], d.hist[shift:d.wp])
	d.wp, d.rp = windowSize, windowSize
	d.outBase += int64(shift)
	d.validStart -= shift
	if d.validStart < 0 {
		d.validStart = 0
	}
	d.crcPos = windowSize
}

func (d *decompressor) updateCRC() {
	if d.checkTrailer && d.crcPos < d.wp {
		d.crc = crc32.Update(d.crc, crc32.IEEETable, d.hist[d.crcPos:d.wp])
	}
	d.crcPos = d.wp
}

// step decodes until output is pending and more input must be read, the
// output buffer is full of unread output, or an error/the end is reached.
// On return, either d.rp < d.wp or d.err != nil.
func (d *decompressor) step() {
	for d.err == nil {
		if d.wp > outLimit {
			if d.rp < d.wp {
				return
			}
			d.slide()
		}
		var yield bool
		switch d.st {
		case stHeader:
			if d.rp < d.wp {
				return
			}
			d.readGzipHeader()
		case stPrime:
			if d.ip >= d.ie {
				d.fill()
			}
			if d.ip >= d.ie {
				d.err = d.inputErr()
				return
			}
			d.b = uint64(d.in[d.ip] >> (8 - d.primeBits))
			d.nb = uint(d.primeBits)
			d.ip++
			d.st = stBlock
		case stBlock:
			if d.ensure(inLow) {
				return
			}
			d.readBlockHeader()
		case stStored:
			yield = d.stored()
		case stHuff:
			yield = d.huffman()
		case stTrailer:
			if d.ensure(8) {
				return
			}
			d.readTrailer()
		case stNext:
			if d.rp < d.wp {
				return
			}
			if d.nb == 0 && d.ip >= d.ie {
				d.fill()
			}
			if d.nb == 0 && d.ip >= d.ie {
				d.st = stDone
				if d.srcErr != nil {
					d.err = d.srcErr
				} else {
					d.err = io.EOF
				}
				return
			}
			d.st = stHeader
		default:
			d.err = io.EOF
		}
		if yield {
			return
		}
	}
}

// blockEnd is called after the end of a block.
func (d *decompressor) blockEnd() {
	d.b &= 1<<(d.nb&63) - 1
	if d.onBoundary != nil {
		bp := d.bitPos()
		in := (bp + 7) >> 3
		d.onBoundary(Boundary{In: in, Bits: uint8(in*8 - bp), Out: d.total(), Final: d.final})
	}
	if d.final {
		d.st = stTrailer
	} else {
		d.st = stBlock
	}
}

func (d *decompressor) readBlockHeader() {
	v, ok := d.getBits(3)
	if !ok {
		return
	}
	d.final = v&1 != 0
	switch v >> 1 {
	case 0:
		d.b >>= d.nb & 7
		d.nb -= d.nb & 7
		v, ok := d.getBits(32)
		if !ok {
			return
		}
		if uint16(v) != ^uint16(v>>16) {
			d.corrupt(msgStoredLen)
			return
		}
		d.storedRem = int(uint16(v))
		d.st = stStored
	case 1:
		d.curLit, d.curDist = &fixedLit, &fixedDist
		d.st = stHuff
	case 2:
		if d.readDynamic() {
			d.curLit, d.curDist = &d.dynLit, &d.dynDist
			d.st = stHuff
		}
	default:
		d.corrupt(msgBadBlockType)
	}
}

// readSym decodes one symbol with table t without reading input beyond the
// code. It sets d.err on failure.
func (d *decompressor) readSym(t []uint32, pbits uint) (uint32, bool) {
	for {
		e := t[d.b&(1<<pbits-1)&uint64(len(t)-1)]
		if e&eSub != 0 {
			idx := int(e>>eValShift) + int(d.b>>pbits)&(1<<((e>>eExtraShft)&15)-1)
			if idx >= len(t) {
				d.corrupt(msgBadCode)
				return 0, false
			}
			e = t[idx]
		}
		n := uint(e & eLenMask)
		if n != 0 {
			// A complete code (possibly of an invalid symbol).
			if n <= d.nb {
				d.b >>= n
				d.nb -= n
				return e, true
			}
		} else if d.nb >= maxCodeLen {
			d.corrupt(msgBadCode)
			return 0, false
		}
		if !d.pullByte() {
			return 0, false
		}
	}
}

// readDynamic reads the code trees of a dynamic block.
func (d *decompressor) readDynamic() bool {
	v, ok := d.getBits(14)
	if !ok {
		return false
	}
	nlit := int(v&31) + 257
	ndist := int(v>>5&31) + 1
	nclen := int(v>>10&15) + 4
	if nlit > maxNumLit || ndist > maxNumDist {
		d.corrupt(msgTooManyCodes)
		return false
	}
	var cl [19]uint8
	for i := 0; i < nclen; i++ {
		x, ok := d.getBits(3)
		if !ok {
			return false
		}
		cl[codeOrder[i]] = uint8(x)
	}
	if !buildTable(d.clTable[:], clPBits, cl[:], clSymEntry[:]) {
		d.corrupt(msgBadCodeLens)
		return false
	}
	n := nlit + ndist
	lens := d.lens[:n]
	for i := 0; i < n; {
		e, ok := d.readSym(d.clTable[:], clPBits)
		if !ok {
			return false
		}
		sym := e >> eValShift
		if sym < 16 {
			lens[i] = uint8(sym)
			i++
			continue
		}
		var rep uint32
		var val uint8
		switch sym {
		case 16:
			if i == 0 {
				d.corrupt(msgBadRepeat)
				return false
			}
			val = lens[i-1]
			x, ok := d.getBits(2)
			if !ok {
				return false
			}
			rep = 3 + x
		case 17:
			x, ok := d.getBits(3)
			if !ok {
				return false
			}
			rep = 3 + x
		default:
			x, ok := d.getBits(7)
			if !ok {
				return false
			}
			rep = 11 + x
		}
		if i+int(rep) > n {
			d.corrupt(msgBadRepeat)
			return false
		}
		for ; rep > 0; rep-- {
			lens[i] = val
			i++
		}
	}
	if lens[256] == 0 {
		d.corrupt(msgMissingEOB)
		return false
	}
	if !buildTable(d.dynLit[:], litPBits, lens[:nlit], litSymEntry[:]) {
		d.corrupt(msgBadLitLens)
		return false
	}
	if !buildTable(d.dynDist[:], distPBits, lens[nlit:], distSymEntry[:]) {
		d.corrupt(msgBadDistLens)
		return false
	}
	return true
}

// stored copies stored-block data. It reports whether to yield.
func (d *decompressor) stored() bool {
	for d.storedRem > 0 {
		if d.wp > outLimit {
			return false // step slides or yields
		}
		if d.nb >= 8 {
			d.hist[d.wp] = byte(d.b)
			d.wp++
			d.b >>= 8
			d.nb -= 8
			d.storedRem--
			continue
		}
		if d.ip >= d.ie {
			if d.eof {
				d.err = d.inputErr()
				return false
			}
			if d.rp < d.wp {
				return true
			}
			d.fill()
			continue
		}
		n := min(d.storedRem, histLen-d.wp, d.ie-d.ip)
		copy(d.hist[d.wp:d.wp+n], d.in[d.ip:d.ip+n])
		d.wp += n
		d.ip += n
		d.storedRem -= n
	}
	d.blockEnd()
	return false
}

// huffman decodes a Huffman block. It reports whether to yield.
func (d *decompressor) huffman() bool {
	for {
		if d.wp > outLimit {
			return false
		}
		var st int
		if d.ie-d.ip >= fastIn {
			st = d.huffFast()
		} else if !d.eof {
			if d.rp < d.wp {
				return true
			}
			d.fill()
			continue
		} else {
			st = d.huffSlow()
			if d.err != nil {
				return false
			}
		}
		switch st {
		case hsLimit:
			continue
		case hsEOB:
			d.blockEnd()
			return false
		case hsBadCode:
			d.corrupt(msgBadCode)
		case hsBadDist:
			d.corrupt(msgBadDistCode)
		case hsDistFar:
			d.corrupt(msgDistTooFar)
		}
		return false
	}
}

// huffSlow decodes one symbol without reading input beyond it.
func (d *decompressor) huffSlow() int {
	e, ok := d.readSym(d.curLit[:], litPBits)
	if !ok {
		return hsLimit
	}
	if e&eLiteral != 0 {
		d.hist[d.wp] = byte(e >> eValShift)
		d.wp++
		return hsLimit
	}
	if e&eSpecial != 0 {
		if e&eEOB != 0 {
			return hsEOB
		}
		return hsBadCode
	}
	x, ok := d.getBits(uint(e>>eExtraShft) & 15)
	if !ok {
		return hsLimit
	}
	length := int(e>>eValShift) + int(x)
	e, ok = d.readSym(d.curDist[:], distPBits)
	if !ok {
		return hsLimit
	}
	if e&eInvalid != 0 {
		return hsBadDist
	}
	x, ok = d.getBits(uint(e>>eExtraShft) & 15)
	if !ok {
		return hsLimit
	}
	dist := int(e>>eValShift) + int(x)
	if dist > d.wp-d.validStart {
		return hsDistFar
	}
	out := d.hist
	src := d.wp - dist
	for i := 0; i < length; i++ {
		out[d.wp+i] = out[src+i]
	}
	d.wp += length
	return hsLimit
}

// huffFast is the hot loop: it decodes symbols while at least fastIn bytes
// of input are buffered and there is room for a maximal match.
func (d *decompressor) huffFast() int {
	in := d.in[:d.ie]
	ip := d.ip
	out := d.hist[:histLen+histSlack]
	wp := d.wp
	b, nb := d.b, d.nb
	lt := d.curLit
	dt := d.curDist
	validStart := d.validStart
	inLimit := len(in) - fastIn
	status := hsLimit

	for ip <= inLimit && wp <= outLimit {
		b |= binary.LittleEndian.Uint64(in[ip:]) << (nb & 63)
		ip += int((63 - nb) >> 3)
		nb |= 56

		e := lt[b&litPMask]
		if e&eSub != 0 {
			e = lt[((e>>eValShift)+uint32(b>>litPBits)&(1<<((e>>eExtraShft)&15)-1))&(litTableSize-1)]
		}
		b >>= e & eLenMask
		nb -= uint(e & eLenMask)
		if e&eLiteral != 0 {
			out[wp] = byte(e >> eValShift)
			wp++
			// Up to two more literals fit in the remaining bits (>= 41).
			e = lt[b&litPMask]
			if e&eLiteral == 0 {
				continue
			}
			b >>= e & eLenMask
			nb -= uint(e & eLenMask)
			out[wp] = byte(e >> eValShift)
			wp++
			e = lt[b&litPMask]
			if e&eLiteral == 0 {
				continue
			}
			b >>= e & eLenMask
			nb -= uint(e & eLenMask)
			out[wp] = byte(e >> eValShift)
			wp++
			continue
		}
		if e&eSpecial != 0 {
			if e&eEOB != 0 {
				status = hsEOB
			} else {
				status = hsBadCode
			}
			break
		}
		// Length: at most 15+5 bits used so far, 36 left for the distance.
		extra := (e >> eExtraShft) & 15
		length := int(e>>eValShift) + int(uint32(b)&(1<<extra-1))
		b >>= extra
		nb -= uint(extra)

		e = dt[b&distPMask]
		if e&eSub != 0 {
			e = dt[((e>>eValShift)+uint32(b>>distPBits)&(1<<((e>>eExtraShft)&15)-1))&(distTableSize-1)]
		}
		b >>= e & eLenMask
		nb -= uint(e & eLenMask)
		if e&eInvalid != 0 {
			status = hsBadDist
			break
		}
		extra = (e >> eExtraShft) & 15
		dist := int(e>>eValShift) + int(uint32(b)&(1<<extra-1))
		b >>= extra
		nb -= uint(extra)
		if dist > wp-validStart {
			status = hsDistFar
			break
		}

		src := wp - dist
		end := wp + length
		if dist >= 8 {
			for wp < end {
				binary.LittleEndian.PutUint64(out[wp:], binary.LittleEndian.Uint64(out[src:]))
				wp += 8
				src += 8
			}
		} else if dist == 1 {
			v := uint64(out[src]) * 0x0101010101010101
			for wp < end {
				binary.LittleEndian.PutUint64(out[wp:], v)
				wp += 8
			}
		} else {
			for wp < end {
				out[wp] = out[src]
				wp++
				src++
			}
		}
		wp = end
	}
	d.ip = ip
	d.wp = wp
	d.b = b & (1<<(nb&63) - 1)
	d.nb = nb
	return status
}
