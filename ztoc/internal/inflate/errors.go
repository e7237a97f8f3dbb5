package inflate

import (
	"errors"
	"strconv"
)

// ErrChecksum is matched (via errors.Is) by the *CorruptError returned when a
// gzip trailer CRC-32 or ISIZE, or a gzip header CRC-16 (FHCRC), does not
// match the data.
var ErrChecksum = errors.New("inflate: checksum mismatch")

// CorruptError reports invalid deflate or gzip data.
type CorruptError struct {
	Offset int64  // compressed offset (relative to the start of the reader's input) near which the problem was detected
	Msg    string // description of the problem

	checksum bool // a checksum mismatch: errors.Is(err, ErrChecksum) reports true
}

func (e *CorruptError) Error() string {
	return "inflate: corrupt input at offset " + strconv.FormatInt(e.Offset, 10) + ": " + e.Msg
}

// Is reports whether target is ErrChecksum and e is a checksum mismatch.
func (e *CorruptError) Is(target error) bool {
	return target == ErrChecksum && e.checksum
}

// Messages of the CorruptErrors produced by this package.
const (
	msgBadBlockType    = "invalid block type"
	msgStoredLen       = "invalid stored block lengths"
	msgTooManyCodes    = "too many length or distance symbols"
	msgBadCodeLens     = "invalid code lengths set"
	msgBadRepeat       = "invalid bit length repeat"
	msgMissingEOB      = "invalid code -- missing end-of-block"
	msgBadLitLens      = "invalid literal/lengths set"
	msgBadDistLens     = "invalid distances set"
	msgBadCode         = "invalid literal/length code"
	msgBadDistCode     = "invalid distance code"
	msgDistTooFar      = "invalid distance too far back"
	msgBadMagic        = "incorrect gzip header magic"
	msgBadMethod       = "unknown gzip compression method"
	msgReservedFlags   = "unknown gzip header flags set"
	msgNameTooLong     = "gzip header name too long"
	msgCommentTooLong  = "gzip header comment too long"
	msgHeaderCRC       = "gzip header crc mismatch"
	msgTrailerCRC      = "incorrect data check"
	msgTrailerSize     = "incorrect length check"
	msgInternalTooLong = "huffman table overflow"
)
