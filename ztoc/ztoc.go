package ztoc

import (
	"fmt"
	"time"

	"github.com/opencontainers/go-digest"
)

// Version09 is the only zTOC version upstream SOCI writes and reads.
const Version09 = "0.9"

// DefaultSpanSize is upstream SOCI's span size (4 MiB). The builder and
// writer use it when the caller asks for no other.
const DefaultSpanSize int64 = 1 << 22

// WindowSize is the size of the DEFLATE history kept in each checkpoint.
// DEFLATE back-references reach at most 32 KiB back, so resuming inflation
// at a checkpoint needs exactly that much preceding output.
const WindowSize = 32 << 10

// UpstreamBuildTool is the build tool identifier upstream's CLI writes. Use
// it with WithBuildToolIdentifier to produce zTOCs byte-identical to
// upstream's.
const UpstreamBuildTool = "AWS SOCI CLI v0.2"

// DefaultBuildTool is the build tool identifier socikit writes by default.
const DefaultBuildTool = "socikit"

// EntryType is the type of a TOC entry, as named in the zTOC ("reg", "dir",
// ...).
type EntryType uint8

// The entry types upstream SOCI knows. Any other tar type flag is rejected
// when building a TOC.
const (
	TypeReg EntryType = iota + 1
	TypeDir
	TypeSymlink
	TypeHardlink
	TypeChar
	TypeBlock
	TypeFifo
)

var entryTypeNames = [...]string{
	TypeReg:      "reg",
	TypeDir:      "dir",
	TypeSymlink:  "symlink",
	TypeHardlink: "hardlink",
	TypeChar:     "char",
	TypeBlock:    "block",
	TypeFifo:     "fifo",
}

// String returns the name the zTOC stores for t.
func (t EntryType) String() string {
	if int(t) < len(entryTypeNames) && t != 0 {
		return entryTypeNames[t]
	}
	return fmt.Sprintf("EntryType(%d)", uint8(t))
}

// ParseEntryType parses the name of an entry type as stored in a zTOC.
func ParseEntryType(s string) (EntryType, error) {
	for i, n := range entryTypeNames {
		if i != 0 && n == s {
			return EntryType(i), nil
		}
	}
	return 0, fmt.Errorf("unknown toc entry type %q", s)
}

// Compression is the compression of the layer a zTOC indexes. The values
// are those of the flatbuffers enum CompressionAlgorithm.
type Compression uint8

const (
	// Gzip layers have a checkpoint blob of gzip checkpoints.
	Gzip Compression = 1
	// Uncompressed tar layers have a TarZinfo checkpoint blob.
	Uncompressed Compression = 2
)

// String returns the lower-case name of c ("gzip", "uncompressed").
func (c Compression) String() string {
	switch c {
	case Gzip:
		return "gzip"
	case Uncompressed:
		return "uncompressed"
	}
	return fmt.Sprintf("Compression(%d)", uint8(c))
}

// FileEntry is one entry of the TOC: one tar header of the layer, in archive
// order.
type FileEntry struct {
	// Name is the raw header name ("dir/" keeps its slash, "./" is kept).
	Name string
	Type EntryType
	// UncompressedOffset is the offset of the entry's data in the tar
	// stream; UncompressedSize is its size (0 for non-regular entries).
	UncompressedOffset int64
	UncompressedSize   int64
	Linkname           string
	// Mode is the raw header mode.
	Mode         int64
	UID, GID     uint32
	Uname, Gname string
	ModTime      time.Time
	Devmajor     int64
	Devminor     int64
	// PAXRecords holds all PAX records of the entry (the zTOC's "xattrs"
	// field). Only SCHILY.xattr.* records are extended attributes.
	PAXRecords map[string]string
}

// Xattrs returns the extended attributes of the entry: its
// SCHILY.xattr.* PAX records with the prefix removed.
func (e *FileEntry) Xattrs() map[string]string {
	const prefix = "SCHILY.xattr."
	var x map[string]string
	for k, v := range e.PAXRecords {
		if len(k) > len(prefix) && k[:len(prefix)] == prefix {
			if x == nil {
				x = make(map[string]string)
			}
			x[k[len(prefix):]] = v
		}
	}
	return x
}

// Ztoc is a table of contents for a compressed tar layer plus the
// checkpoints that let a reader decompress any span of it on its own.
type Ztoc struct {
	Version                 string
	BuildToolIdentifier     string
	CompressedArchiveSize   int64
	UncompressedArchiveSize int64
	// Files is the TOC: every tar entry in archive order.
	Files []FileEntry
	// Compression tells how Checkpoints is to be read.
	Compression Compression
	// MaxSpanID is the id of the last span; there are MaxSpanID+1 spans.
	MaxSpanID int32
	// SpanDigests holds the digest of each span's compressed bytes.
	SpanDigests []digest.Digest
	// Checkpoints is the raw checkpoint blob: a gzip checkpoint list (see
	// ParseGzipCheckpoints) or a TarZinfo flatbuffer for uncompressed layers.
	Checkpoints []byte
}
