package ztoc

import (
	"errors"
	"fmt"
)

// Sentinel errors that callers branch on.
var (
	// ErrUnsupportedVersion is returned for a zTOC whose version is not 0.9.
	ErrUnsupportedVersion = errors.New("unsupported ztoc version")
	// ErrDigestMismatch is returned when a span's compressed bytes do not
	// match the digest the zTOC records for it.
	ErrDigestMismatch = errors.New("span digest mismatch")
	// ErrTooLarge is returned when input exceeds a size cap.
	ErrTooLarge = errors.New("input exceeds size limit")
)

// CorruptError reports malformed input: a zTOC, a checkpoint blob, a tar
// stream or a compressed stream. Offset is the byte offset in that input
// where the problem was found (-1 when unknown).
type CorruptError struct {
	What   string // what was being read: "ztoc", "checkpoints", "gzip", "tar", ...
	Offset int64
	Msg    string
}

func (e *CorruptError) Error() string {
	if e.Offset < 0 {
		return fmt.Sprintf("corrupt %s: %s", e.What, e.Msg)
	}
	return fmt.Sprintf("corrupt %s at offset %d: %s", e.What, e.Offset, e.Msg)
}

func corrupt(what string, off int64, format string, args ...any) error {
	return &CorruptError{What: what, Offset: off, Msg: fmt.Sprintf(format, args...)}
}
