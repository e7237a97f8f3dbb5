package cli

import (
	"context"
	"fmt"
	"os"
	"path"
	"strings"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/socikit/socikit/internal/image"
	"github.com/socikit/socikit/ztoc"
)

func runGetFile(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "get-file", "[flags] REF|LAYOUT PATH\n       socikit get-file --ztoc ZTOC_FILE --blob LAYER_FILE PATH",
		`Extract one file from an indexed layer using only its zTOC and range reads
of the layer blob (HTTP range requests for a registry). Without --layer the
topmost indexed layer holding PATH is used.
`)
	layer := fs.String("layer", "", "digest of the layer to read from")
	output := fs.String("o", "", "write the file here instead of stdout")
	ztocFile := fs.String("ztoc", "", "local zTOC file (with --blob)")
	blobFile := fs.String("blob", "", "local layer blob file (with --ztoc)")
	plainHTTP := fs.Bool("plain-http", false, "allow plain HTTP to registries")
	timeout := timeoutFlag(fs)
	var platforms platformList
	fs.Var(&platforms, "platform", "platform os/arch[/variant] to read from (default: the only one, else the host's)")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	ctx, cancel := withTimeout(ctx, *timeout)
	defer cancel()
	var data []byte
	switch {
	case *ztocFile != "" || *blobFile != "":
		if *ztocFile == "" || *blobFile == "" {
			return fmt.Errorf("get-file: --ztoc and --blob go together")
		}
		if len(pos) != 1 {
			fs.Usage()
			return fmt.Errorf("get-file: want PATH, got %d arguments", len(pos))
		}
		data, err = getLocalFile(*ztocFile, *blobFile, pos[0])
	default:
		if len(pos) != 2 {
			fs.Usage()
			return fmt.Errorf("get-file: want REF and PATH, got %d arguments", len(pos))
		}
		var dg digest.Digest
		if *layer != "" {
			if dg, err = digest.Parse(*layer); err != nil {
				return fmt.Errorf("get-file: --layer: %w", err)
			}
		}
		data, err = getImageFile(ctx, e, pos[0], pos[1], dg, platforms, *plainHTTP)
	}
	if err != nil {
		return fmt.Errorf("get-file: %w", err)
	}
	if *output != "" {
		if err := os.WriteFile(*output, data, 0o644); err != nil {
			return fmt.Errorf("get-file: %w", err)
		}
		return nil
	}
	_, err = e.stdout.Write(data)
	return err
}

func getLocalFile(ztocFile, blobFile, name string) ([]byte, error) {
	zf, err := os.Open(ztocFile)
	if err != nil {
		return nil, err
	}
	b, err := image.ReadAll(zf, image.MaxZtocSize)
	zf.Close()
	if err != nil {
		return nil, fmt.Errorf("read zTOC %s: %w", ztocFile, err)
	}
	z, err := ztoc.Unmarshal(b)
	if err != nil {
		return nil, fmt.Errorf("read zTOC %s: %w", ztocFile, err)
	}
	f, err := os.Open(blobFile)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if fi, err := f.Stat(); err == nil && fi.Size() != z.CompressedArchiveSize {
		return nil, fmt.Errorf("blob %s has %d bytes, the zTOC indexes %d", blobFile, fi.Size(), z.CompressedArchiveSize)
	}
	e, err := resolveEntry(z, name)
	if err != nil {
		return nil, err
	}
	if e == nil {
		return nil, fmt.Errorf("%s: not in the zTOC", name)
	}
	return readEntry(z, f, e)
}

func getImageFile(ctx context.Context, e *env, refArg, name string, layer digest.Digest, platforms platformList, plainHTTP bool) ([]byte, error) {
	ref, err := image.ParseRef(refArg, plainHTTP)
	if err != nil {
		return nil, err
	}
	src, err := image.OpenSource(ctx, ref, e.rt)
	if err != nil {
		return nil, err
	}
	defer src.Close()
	rs, ok := src.(image.RangeSource)
	if !ok {
		return nil, fmt.Errorf("%s: no random access to blobs", refArg)
	}
	found, err := findIndexes(ctx, src)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", refArg, err)
	}
	f, err := pickIndex(found, platforms)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", refArg, err)
	}
	if err := checkIndexLayers(ctx, src, f); err != nil {
		return nil, fmt.Errorf("%s: %w", refArg, err)
	}
	layers := f.index.Layers
	for i := len(layers) - 1; i >= 0; i-- {
		l := layers[i]
		if layer != "" && l.LayerDigest != layer {
			continue
		}
		z, err := fetchZtoc(ctx, src, l)
		if err != nil {
			return nil, err
		}
		ent, err := resolveEntry(z, name)
		if err != nil {
			return nil, fmt.Errorf("layer %s: %w", l.LayerDigest, err)
		}
		if ent == nil {
			continue
		}
		ra, err := rs.BlobReaderAt(ctx, ocispec.Descriptor{MediaType: l.LayerMediaType, Digest: l.LayerDigest, Size: z.CompressedArchiveSize})
		if err != nil {
			return nil, err
		}
		defer ra.Close()
		data, err := readEntry(z, ra, ent)
		if err != nil {
			return nil, fmt.Errorf("layer %s: %w", l.LayerDigest, err)
		}
		return data, nil
	}
	if layer != "" {
		for _, l := range layers {
			if l.LayerDigest == layer {
				return nil, fmt.Errorf("%s: not in layer %s", name, layer)
			}
		}
		return nil, fmt.Errorf("layer %s is not indexed by SOCI index %s", layer, f.desc.Digest)
	}
	return nil, fmt.Errorf("%s: in no indexed layer of SOCI index %s", name, f.desc.Digest)
}

// pickIndex chooses the index to read from: the only one, else the one of
// the requested (or host) platform.
func pickIndex(found []foundIndex, platforms platformList) (foundIndex, error) {
	if len(found) == 0 {
		return foundIndex{}, errNoIndex
	}
	if len(found) == 1 && len(platforms) == 0 {
		return found[0], nil
	}
	want := platforms
	if len(want) == 0 {
		want = platformList{hostPlatform()}
	}
	have := make([]*ocispec.Platform, len(found))
	for i, f := range found {
		have[i] = f.platform
	}
	for _, p := range want {
		if i := bestPlatform(p, have); i >= 0 {
			return found[i], nil
		}
	}
	return foundIndex{}, fmt.Errorf("no SOCI index for platform %s", want.String())
}

// resolveEntry finds name in a layer's TOC: nil if absent, an error if the
// layer deletes it with a whiteout or it is not a regular file.
func resolveEntry(z *ztoc.Ztoc, name string) (*ztoc.FileEntry, error) {
	clean := strings.Trim(path.Clean("/"+name), "/")
	dir, base := path.Split(clean)
	if z.Lookup(dir+".wh."+base) != nil {
		return nil, fmt.Errorf("%s: deleted by a whiteout", name)
	}
	e := z.Lookup(clean)
	if e == nil {
		return nil, nil
	}
	for range 8 {
		switch e.Type {
		case ztoc.TypeReg:
			return e, nil
		case ztoc.TypeHardlink:
			t := z.Lookup(e.Linkname)
			if t == nil {
				return nil, fmt.Errorf("%s: hard link to %s, which the layer lacks", name, e.Linkname)
			}
			e = t
		case ztoc.TypeSymlink:
			return nil, fmt.Errorf("%s: symbolic link to %s", name, e.Linkname)
		default:
			return nil, fmt.Errorf("%s: a %s, not a regular file", name, e.Type)
		}
	}
	return nil, fmt.Errorf("%s: hard link chain too long", name)
}

func readEntry(z *ztoc.Ztoc, blob interface {
	ReadAt([]byte, int64) (int, error)
}, e *ztoc.FileEntry) ([]byte, error) {
	r, err := ztoc.NewReader(z, blob)
	if err != nil {
		return nil, err
	}
	return r.ReadFile(e)
}
