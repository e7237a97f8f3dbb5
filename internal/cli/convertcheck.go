package cli

import (
	"fmt"
	"slices"
	"strings"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/socikit/socikit/ztoc"
)

// checkConvertOptions validates what the flags say before convert reads or
// writes anything.
func checkConvertOptions(o *convertOptions) error {
	if o.spanSize < ztoc.MinSpanSize {
		return fmt.Errorf("--span-size %d: below the minimum %d", o.spanSize, ztoc.MinSpanSize)
	}
	for _, p := range o.prefetch {
		if strings.Trim(p, "/.") == "" {
			return fmt.Errorf("--prefetch %q: not a file path", p)
		}
	}
	return nil
}

// gzipLabelled reports whether a layer media type says gzip.
func gzipLabelled(mt string) bool {
	return strings.HasSuffix(mt, "+gzip") || strings.HasSuffix(mt, ".tar.gzip")
}

// maxNamesShown caps the entry names a layer warning names.
const maxNamesShown = 3

// warnLayer warns about what is accepted but likely a mistake in an indexed
// layer: a media type that does not say how the bytes are compressed, no
// tar entry at all, entries whose names climb out with "..".
func (c *converter) warnLayer(d ocispec.Descriptor, z *ztoc.Ztoc) {
	// Layers are indexed in parallel; stderr is not safe for that.
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case gzipLabelled(d.MediaType) && z.Compression == ztoc.Uncompressed:
		c.e.warnf("layer %s is labelled %s but is a plain tar (no gzip header): indexed as uncompressed; "+
			"a runtime that trusts the media type fails to unpack it", d.Digest, d.MediaType)
	case !gzipLabelled(d.MediaType) && z.Compression == ztoc.Gzip:
		c.e.warnf("layer %s is labelled %s but is gzip-compressed: indexed as gzip; "+
			"a runtime that trusts the media type fails to unpack it", d.Digest, d.MediaType)
	}
	if len(z.Files) == 0 {
		c.e.warnf("layer %s is empty (no tar entry, %d bytes uncompressed): its zTOC indexes nothing", d.Digest, z.UncompressedArchiveSize)
	}
	var climbing []string
	for i := range z.Files {
		fe := &z.Files[i]
		if hasDotDot(fe.Name) || (fe.Type == ztoc.TypeHardlink && hasDotDot(fe.Linkname)) {
			climbing = append(climbing, fe.Name)
		}
	}
	if len(climbing) > 0 {
		shown := climbing[:min(len(climbing), maxNamesShown)]
		more := ""
		if len(climbing) > len(shown) {
			more = fmt.Sprintf(" and %d more", len(climbing)-len(shown))
		}
		c.e.warnf("layer %s: %d tar entries have \"..\" in their path (%s%s): runtimes resolve them inside the root, "+
			"not where the name points", d.Digest, len(climbing), strings.Join(shown, ", "), more)
	}
}

// hasDotDot reports whether a tar name has a ".." element.
func hasDotDot(name string) bool {
	return slices.Contains(strings.Split(name, "/"), "..")
}
