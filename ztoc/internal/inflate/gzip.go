package inflate

import (
	"hash/crc32"
	"io"
)

// Boundary is a point in the compressed stream where inflation can resume.
type Boundary struct {
	In     int64 // compressed bytes consumed, counting a partly used byte: ceil(bitpos/8), offset from the start of the stream given to the reader
	Bits   uint8 // unused bits in byte In-1 that belong to what follows (0..7): Bits = In*8 - bitpos
	Out    int64 // uncompressed bytes produced before this point (total across gzip members)
	Final  bool  // true when the block that just ended was the final block of its deflate stream (zlib's data_type&64); such a boundary is not a valid resume point
	Header bool  // true when this boundary is just after a gzip member header, before its first block
}

const (
	gzipID1     = 0x1f
	gzipID2     = 0x8b
	gzipDeflate = 8

	flagText    = 1 << 0
	flagHdrCrc  = 1 << 1
	flagExtra   = 1 << 2
	flagName    = 1 << 3
	flagComment = 1 << 4
	flagsRsvd   = 0xe0

	maxHeaderString = 64 << 10 // cap of FNAME and FCOMMENT, including the terminating NUL
)

// GzipReader decompresses a gzip stream (one or more concatenated members,
// RFC 1952) as an io.Reader.
//
// Malformed data is reported as a *CorruptError (checksum mismatches also
// match ErrChecksum), truncated data (including an empty input) as
// io.ErrUnexpectedEOF. Bytes after the last member that do not form a valid
// gzip member are an error.
type GzipReader struct {
	d decompressor
}

// NewGzipReader returns a GzipReader reading the gzip stream from r. Nothing
// is read from r until the first Read. r is read in large chunks; an
// io.ByteReader implementation is not used.
func NewGzipReader(r io.Reader) *GzipReader {
	z := new(GzipReader)
	z.Reset(r)
	return z
}

// Reset discards the reader's state and makes it read a new gzip stream
// from r, reusing its buffers. The OnBoundary callback is kept.
func (z *GzipReader) Reset(r io.Reader) {
	z.d.init(r)
	z.d.checkTrailer = true
	z.d.st = stHeader
}

// OnBoundary sets a callback invoked synchronously, in stream order, at every
// gzip member header end and every deflate block end (including stored blocks
// and empty blocks), at the moment the boundary is reached: all output before
// it has been produced into the internal history, none after it. Output
// handed to Read callers may lag. fn may call Window; it must not call Read
// or Reset. A nil fn disables the callback.
func (z *GzipReader) OnBoundary(fn func(b Boundary)) {
	z.d.onBoundary = fn
}

// Window copies into dst the last 32 KiB of uncompressed output at the
// current point (valid when called from inside the OnBoundary callback),
// zero-padded at the front when less than 32 KiB has been produced so far.
// The history spans gzip members. len(dst) should be 32768; a shorter dst
// receives the last len(dst) bytes, a longer one is zero-padded at the front.
func (z *GzipReader) Window(dst []byte) {
	z.d.window(dst)
}

func (d *decompressor) window(dst []byte) {
	n := min(len(dst), windowSize)
	clear(dst[:len(dst)-n])
	copy(dst[len(dst)-n:], d.hist[d.wp-n:d.wp])
}

// Read implements io.Reader.
func (z *GzipReader) Read(p []byte) (int, error) {
	return z.d.read(p)
}

// WriteTo implements io.WriterTo: it writes the decompressed stream to w
// without an intermediate copy. It returns nil at the end of the stream.
func (z *GzipReader) WriteTo(w io.Writer) (int64, error) {
	return z.d.writeTo(w)
}

func (d *decompressor) writeTo(w io.Writer) (int64, error) {
	var total int64
	for {
		if d.rp < d.wp {
			n, err := w.Write(d.hist[d.rp:d.wp])
			if n < 0 || n > d.wp-d.rp {
				n = 0
				if err == nil {
					err = io.ErrShortWrite
				}
			}
			d.rp += n
			total += int64(n)
			if err == nil && d.rp < d.wp {
				err = io.ErrShortWrite
			}
			if err != nil {
				return total, err
			}
			continue
		}
		if d.err != nil {
			if d.err == io.EOF {
				return total, nil
			}
			return total, d.err
		}
		d.step()
	}
}

func (d *decompressor) read(p []byte) (int, error) {
	for {
		if d.rp < d.wp {
			n := copy(p, d.hist[d.rp:d.wp])
			d.rp += n
			return n, nil
		}
		if d.err != nil {
			return 0, d.err
		}
		if len(p) == 0 {
			return 0, nil
		}
		d.step()
	}
}

// readGzipHeader parses a gzip member header (byte aligned).
func (d *decompressor) readGzipHeader() {
	var h [10]byte
	for i := range h {
		c, ok := d.readByte()
		if !ok {
			return
		}
		h[i] = c
	}
	if h[0] != gzipID1 || h[1] != gzipID2 {
		d.corrupt(msgBadMagic)
		return
	}
	if h[2] != gzipDeflate {
		d.corrupt(msgBadMethod)
		return
	}
	flg := h[3]
	if flg&flagsRsvd != 0 {
		d.corrupt(msgReservedFlags)
		return
	}
	hcrc := flg&flagHdrCrc != 0
	d.hdrBuf = append(d.hdrBuf[:0], h[:]...)
	if flg&flagExtra != 0 {
		var xl [2]byte
		for i := range xl {
			c, ok := d.readByte()
			if !ok {
				return
			}
			xl[i] = c
		}
		if hcrc {
			d.hdrBuf = append(d.hdrBuf, xl[:]...)
		}
		for n := int(xl[0]) | int(xl[1])<<8; n > 0; n-- {
			c, ok := d.readByte()
			if !ok {
				return
			}
			if hcrc {
				d.hdrBuf = append(d.hdrBuf, c)
			}
		}
	}
	for _, f := range [2]struct {
		flag byte
		msg  string
	}{{flagName, msgNameTooLong}, {flagComment, msgCommentTooLong}} {
		if flg&f.flag == 0 {
			continue
		}
		for n := 1; ; n++ {
			if n > maxHeaderString {
				d.corrupt(f.msg)
				return
			}
			c, ok := d.readByte()
			if !ok {
				return
			}
			if hcrc {
				d.hdrBuf = append(d.hdrBuf, c)
			}
			if c == 0 {
				d.maxStrLen = max(d.maxStrLen, n)
				break
			}
		}
	}
	if hcrc {
		sum := uint16(crc32.ChecksumIEEE(d.hdrBuf))
		var c [2]byte
		for i := range c {
			x, ok := d.readByte()
			if !ok {
				return
			}
			c[i] = x
		}
		if uint16(c[0])|uint16(c[1])<<8 != sum {
			d.err = &CorruptError{Offset: d.bitPos()/8 - 2, Msg: msgHeaderCRC, checksum: true}
			return
		}
	}
	if cap(d.hdrBuf) > 4096 {
		d.hdrBuf = nil
	}
	// Start of a member: back-references may not reach into earlier members.
	d.updateCRC()
	d.crc = 0
	d.validStart = d.wp
	d.memberStart = d.total()
	d.st = stBlock
	if d.onBoundary != nil {
		d.onBoundary(Boundary{In: d.bitPos() / 8, Out: d.total(), Header: true})
	}
}

// readTrailer skips to a byte boundary and reads the 8-byte gzip trailer,
// verifying it when checkTrailer is set.
func (d *decompressor) readTrailer() {
	d.b >>= d.nb & 7
	d.nb -= d.nb & 7
	var t [8]byte
	for i := range t {
		c, ok := d.readByte()
		if !ok {
			return
		}
		t[i] = c
	}
	if d.checkTrailer {
		d.updateCRC()
		crc := uint32(t[0]) | uint32(t[1])<<8 | uint32(t[2])<<16 | uint32(t[3])<<24
		size := uint32(t[4]) | uint32(t[5])<<8 | uint32(t[6])<<16 | uint32(t[7])<<24
		if crc != d.crc {
			d.err = &CorruptError{Offset: d.bitPos()/8 - 8, Msg: msgTrailerCRC, checksum: true}
			return
		}
		if size != uint32(d.total()-d.memberStart) {
			d.err = &CorruptError{Offset: d.bitPos()/8 - 4, Msg: msgTrailerSize, checksum: true}
			return
		}
	}
	d.st = stNext
}
