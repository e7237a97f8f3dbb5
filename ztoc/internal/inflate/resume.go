package inflate

import (
	"errors"
	"io"
)

// resumeReader inflates from a checkpoint.
type resumeReader struct {
	d decompressor
}

// NewResumeReader resumes inflation at a checkpoint (a non-final Boundary).
//
// src yields compressed bytes starting at byte In-1 when bits != 0 (that first
// byte's top bits bits are primed: value byte>>(8-bits)), or at byte In when
// bits == 0. window is the history (the dictionary), normally the 32 KiB
// returned by GzipReader.Window; a longer window is truncated to its last
// 32 KiB. Back-references may reach anywhere into window.
//
// The stream is raw deflate from there; when a deflate stream's final block
// ends, the 8-byte gzip trailer is skipped (not verified), and if more input
// follows, the next gzip member header is parsed and inflation continues.
// Read returns output as soon as it is decoded; when src ends mid-stream,
// Read first returns all output decodable from the bits given, then
// io.ErrUnexpectedEOF. CorruptError offsets are relative to the first byte
// read from src.
func NewResumeReader(src io.Reader, bits uint8, window []byte) (io.Reader, error) {
	if src == nil {
		return nil, errors.New("inflate: nil source")
	}
	if bits > 7 {
		return nil, errors.New("inflate: resume bits out of range (0..7)")
	}
	r := new(resumeReader)
	d := &r.d
	d.init(src)
	if len(window) > windowSize {
		window = window[len(window)-windowSize:]
	}
	copy(d.hist[windowSize-len(window):windowSize], window)
	d.validStart = windowSize - len(window)
	d.outBase = -windowSize
	d.checkTrailer = false
	d.primeBits = bits
	if bits != 0 {
		d.st = stPrime
	} else {
		d.st = stBlock
	}
	return r, nil
}

func (r *resumeReader) Read(p []byte) (int, error) {
	return r.d.read(p)
}

// WriteTo implements io.WriterTo.
func (r *resumeReader) WriteTo(w io.Writer) (int64, error) {
	return r.d.writeTo(w)
}
