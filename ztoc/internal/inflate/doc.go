// Package inflate is a pure-Go DEFLATE (RFC 1951) and gzip (RFC 1952)
// decompressor that exposes its exact state at deflate block boundaries.
//
// It exists to build SOCI zTOC checkpoints the same way zlib's zran.c does
// with inflate(..., Z_BLOCK): a [GzipReader] reports every gzip member header
// end and every deflate block end through a [Boundary] callback, carrying the
// compressed position (byte offset plus the number of unused bits of the last
// byte), the uncompressed position, and whether the block was final. From
// inside the callback, [GzipReader.Window] returns the 32 KiB of history that,
// together with the boundary position, is enough to resume inflation later
// with [NewResumeReader] (the equivalent of zlib's inflatePrime plus
// inflateSetDictionary on a raw inflate stream).
//
// The boundary positions are defined exactly as zlib reports them: at a block
// end, with bitpos the number of compressed bits consumed so far,
// In = ceil(bitpos/8) and Bits = In*8 - bitpos.
//
// The decoder uses a 64-bit bit accumulator, two-level table-driven Huffman
// decoding (11-bit primary literal/length table, 8-bit primary distance table)
// and a fast inner loop that runs while plenty of input and output room
// remain. It never panics on malformed input and reports malformed data as a
// [*CorruptError], truncated data as [io.ErrUnexpectedEOF] and checksum
// mismatches as a [*CorruptError] that matches [ErrChecksum] with errors.Is.
package inflate
