package ztoc

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"maps"
)

// tarBlockSize is the size of a tar block: headers and data padding come in
// whole blocks.
const tarBlockSize = 512

// alignTar rounds off up to the next tar block boundary.
func alignTar(off int64) int64 {
	return (off + tarBlockSize - 1) &^ (tarBlockSize - 1)
}

// posReader counts the bytes read through it.
type posReader struct {
	r   io.Reader
	pos int64
}

func (p *posReader) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	p.pos += int64(n)
	return n, err
}

// tocReader walks a tar stream and produces its TOC entries. The data offset
// of each entry is the stream position right after archive/tar has read its
// header(s), as upstream SOCI records it.
type tocReader struct {
	pos   *posReader
	tr    *tar.Reader
	files []FileEntry
}

func newTOCReader(r io.Reader) *tocReader {
	p := &posReader{r: r}
	return &tocReader{pos: p, tr: tar.NewReader(p)}
}

// next reads the next header and returns its entry, or io.EOF at the end of
// the archive. The caller reads the entry's data from t.tr (or not: next
// skips what is left).
func (t *tocReader) next() (*FileEntry, error) {
	hdr, err := t.tr.Next()
	if errors.Is(err, io.EOF) {
		return nil, io.EOF
	}
	if err != nil {
		return nil, &CorruptError{What: "tar", Offset: t.pos.pos, Msg: err.Error()}
	}
	e, err := entryFromHeader(hdr, t.pos.pos)
	if err != nil {
		return nil, err
	}
	t.files = append(t.files, e)
	return &t.files[len(t.files)-1], nil
}

func entryFromHeader(hdr *tar.Header, dataOffset int64) (FileEntry, error) {
	typ, err := entryType(hdr)
	if err != nil {
		return FileEntry{}, &CorruptError{What: "tar", Offset: dataOffset, Msg: fmt.Sprintf("entry %q: %v", hdr.Name, err)}
	}
	if hdr.Size < 0 {
		return FileEntry{}, &CorruptError{What: "tar", Offset: dataOffset, Msg: fmt.Sprintf("entry %q: negative size", hdr.Name)}
	}
	for k := range hdr.PAXRecords {
		// Sparse files: the tar carries a sparse map and fragments, not the
		// file's bytes at UncompressedOffset, so an index would serve
		// wrong data. Refuse rather than mis-index.
		if len(k) > 11 && k[:11] == "GNU.sparse." {
			return FileEntry{}, &CorruptError{What: "tar", Offset: dataOffset, Msg: fmt.Sprintf("entry %q: sparse files are not supported", hdr.Name)}
		}
	}
	var pax map[string]string
	if len(hdr.PAXRecords) > 0 {
		pax = maps.Clone(hdr.PAXRecords)
	}
	return FileEntry{
		Name:               hdr.Name,
		Type:               typ,
		UncompressedOffset: dataOffset,
		UncompressedSize:   hdr.Size,
		Linkname:           hdr.Linkname,
		Mode:               hdr.Mode,
		UID:                uint32(hdr.Uid),
		GID:                uint32(hdr.Gid),
		Uname:              hdr.Uname,
		Gname:              hdr.Gname,
		ModTime:            hdr.ModTime.UTC(),
		Devmajor:           hdr.Devmajor,
		Devminor:           hdr.Devminor,
		PAXRecords:         pax,
	}, nil
}

// entryType maps a tar type flag to a TOC entry type, accepting the same
// flags as upstream SOCI.
func entryType(hdr *tar.Header) (EntryType, error) {
	switch hdr.Typeflag {
	case tar.TypeReg:
		return TypeReg, nil
	case tar.TypeDir:
		return TypeDir, nil
	case tar.TypeSymlink:
		return TypeSymlink, nil
	case tar.TypeLink:
		return TypeHardlink, nil
	case tar.TypeChar:
		return TypeChar, nil
	case tar.TypeBlock:
		return TypeBlock, nil
	case tar.TypeFifo:
		return TypeFifo, nil
	}
	return 0, fmt.Errorf("unsupported tar entry type %q", hdr.Typeflag)
}

// readAll reads the rest of the archive's entries and returns the
// uncompressed archive size: the position at the end of the archive, not
// counting padding after the end-of-archive blocks.
func (t *tocReader) readAll() (int64, error) {
	for {
		if _, err := t.next(); err != nil {
			if errors.Is(err, io.EOF) {
				return t.pos.pos, nil
			}
			return 0, err
		}
	}
}
