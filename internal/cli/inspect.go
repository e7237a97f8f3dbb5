package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"text/tabwriter"

	"github.com/opencontainers/go-digest"

	"github.com/socikit/socikit/internal/image"
	"github.com/socikit/socikit/soci"
	"github.com/socikit/socikit/ztoc"
)

// InspectOutput is what inspect --json prints. Field names are stable.
type InspectOutput struct {
	Indexes []IndexInfo `json:"indexes"`
}

// IndexInfo describes one SOCI index.
type IndexInfo struct {
	Digest         digest.Digest `json:"digest"`
	Size           int64         `json:"size"`
	Version        string        `json:"version"`
	ManifestDigest digest.Digest `json:"manifest_digest,omitempty"`
	Platform       string        `json:"platform,omitempty"`
	BuildTool      string        `json:"build_tool,omitempty"`
	Layers         []LayerInfo   `json:"layers"`
}

// LayerInfo describes one indexed layer and its zTOC.
type LayerInfo struct {
	Digest           digest.Digest       `json:"digest"`
	MediaType        string              `json:"media_type,omitempty"`
	Size             int64               `json:"size"`
	ZtocDigest       digest.Digest       `json:"ztoc_digest"`
	ZtocSize         int64               `json:"ztoc_size"`
	SpanSize         int64               `json:"span_size"`
	Spans            int                 `json:"spans"`
	Files            int                 `json:"files"`
	UncompressedSize int64               `json:"uncompressed_size"`
	ZtocPercent      float64             `json:"ztoc_percent"`
	Prefetch         []soci.PrefetchSpan `json:"prefetch,omitempty"`
	FileList         []FileInfo          `json:"file_list,omitempty"`
}

// FileInfo is one TOC entry and the spans its data touches.
type FileInfo struct {
	Name      string `json:"name"`
	Type      string `json:"type"`
	Size      int64  `json:"size"`
	FirstSpan int32  `json:"first_span"`
	LastSpan  int32  `json:"last_span"`
}

func runInspect(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "inspect", "[flags] REF|LAYOUT",
		`Find the SOCI index of an image (v2 through its image index or manifest
annotation, v1 through the referrers API or the sha256-<hex> tag; a SOCI
index reference is accepted too) and describe each indexed layer.
`)
	asJSON := fs.Bool("json", false, "print JSON instead of a table")
	files := fs.Bool("files", false, "list the files of each layer with the spans they touch")
	plainHTTP := fs.Bool("plain-http", false, "allow plain HTTP to registries")
	timeout := timeoutFlag(fs)
	var pic pictureArgs
	fs.StringVar(&pic.profile, "profile", "", "start-up profile (JSON): print, per layer, the spans its reads touch and their bytes")
	fs.StringVar(&pic.svg, "svg", "", "draw the spans of each layer, coloured by start-up reads (--profile) and prefetch, to this SVG file (- for stdout)")
	fs.Var(&pic.platforms, "platform", "with --profile or --svg: platform os/arch[/variant] of the index to use (default: the profile's, the only one, else the host's)")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	ctx, cancel := withTimeout(ctx, *timeout)
	defer cancel()
	if len(pos) != 1 {
		fs.Usage()
		return fmt.Errorf("inspect: want one image reference, got %d arguments", len(pos))
	}
	ref, err := image.ParseRef(pos[0], *plainHTTP)
	if err != nil {
		return fmt.Errorf("inspect: %w", err)
	}
	if err := pic.load(); err != nil {
		return fmt.Errorf("inspect: %w", err)
	}
	src, err := image.OpenSource(ctx, ref, e.rt)
	if err != nil {
		return fmt.Errorf("inspect: %w", err)
	}
	defer src.Close()
	found, err := findIndexes(ctx, src)
	if err != nil {
		return fmt.Errorf("inspect %s: %w", pos[0], err)
	}
	if len(found) == 0 {
		return fmt.Errorf("inspect %s: %w", pos[0], errNoIndex)
	}
	if pic.profile != "" || pic.svg != "" {
		if *files {
			return fmt.Errorf("inspect: --files does not go with --profile or --svg")
		}
		pic.json = *asJSON
		if err := inspectPicture(ctx, e, src, found, pos[0], pic); err != nil {
			return fmt.Errorf("inspect %s: %w", pos[0], err)
		}
		return nil
	}
	var out InspectOutput
	for _, f := range found {
		if err := checkIndexLayers(ctx, src, f); err != nil {
			e.warnf("%v", err)
		}
		info, err := describeIndex(ctx, src, f, *files)
		if err != nil {
			return fmt.Errorf("inspect %s: %w", pos[0], err)
		}
		out.Indexes = append(out.Indexes, info)
	}
	if *asJSON {
		enc := json.NewEncoder(e.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(out)
	}
	return printInspect(e, out)
}

func describeIndex(ctx context.Context, src image.Source, f foundIndex, files bool) (IndexInfo, error) {
	info := IndexInfo{Digest: f.desc.Digest, Size: f.desc.Size, Version: f.index.Version.String(),
		ManifestDigest: f.manifest, Platform: platformString(f.platform), BuildTool: f.index.BuildTool, Layers: []LayerInfo{}}
	prefetch := map[digest.Digest]soci.LayerPrefetch{}
	for _, p := range f.index.Prefetches {
		prefetch[p.Layer] = p
	}
	for _, l := range f.index.Layers {
		z, err := fetchZtoc(ctx, src, l)
		if err != nil {
			return IndexInfo{}, err
		}
		ix, err := ztoc.NewIndex(z)
		if err != nil {
			return IndexInfo{}, fmt.Errorf("zTOC %s of layer %s: %w", l.Ztoc.Digest, l.LayerDigest, err)
		}
		li := LayerInfo{Digest: l.LayerDigest, MediaType: l.LayerMediaType, Size: z.CompressedArchiveSize,
			ZtocDigest: l.Ztoc.Digest, ZtocSize: l.Ztoc.Size, SpanSize: l.SpanSize, Spans: len(ix.Spans()),
			Files: len(z.Files), UncompressedSize: z.UncompressedArchiveSize}
		if li.SpanSize == 0 {
			li.SpanSize = spanSizeOf(z)
		}
		if li.Size > 0 {
			li.ZtocPercent = float64(int64(float64(l.Ztoc.Size)/float64(li.Size)*10000+0.5)) / 100
		}
		if p, ok := prefetch[l.LayerDigest]; ok {
			b, err := image.ReadBlob(ctx, src, p.Prefetch, soci.MaxDocumentSize)
			if err != nil {
				return IndexInfo{}, fmt.Errorf("prefetch of layer %s: %w", l.LayerDigest, err)
			}
			pf, err := soci.ParsePrefetch(b)
			if err != nil {
				return IndexInfo{}, fmt.Errorf("prefetch of layer %s: %w", l.LayerDigest, err)
			}
			li.Prefetch = pf.Spans
		}
		if files {
			li.FileList = []FileInfo{}
			for i := range z.Files {
				fe := &z.Files[i]
				first, last := ix.SpansOf(fe.UncompressedOffset, fe.UncompressedSize)
				li.FileList = append(li.FileList, FileInfo{Name: fe.Name, Type: fe.Type.String(), Size: fe.UncompressedSize,
					FirstSpan: first, LastSpan: last})
			}
		}
		info.Layers = append(info.Layers, li)
	}
	return info, nil
}

func fetchZtoc(ctx context.Context, src image.Source, l soci.LayerZtoc) (*ztoc.Ztoc, error) {
	b, err := image.ReadBlob(ctx, src, l.Ztoc, image.MaxZtocSize)
	if err != nil {
		return nil, fmt.Errorf("zTOC of layer %s: %w", l.LayerDigest, err)
	}
	z, err := ztoc.Unmarshal(b)
	if err != nil {
		return nil, fmt.Errorf("zTOC %s of layer %s: %w", l.Ztoc.Digest, l.LayerDigest, err)
	}
	return z, nil
}

func spanSizeOf(z *ztoc.Ztoc) int64 {
	switch z.Compression {
	case ztoc.Gzip:
		if g, err := ztoc.ParseGzipCheckpoints(z.Checkpoints); err == nil {
			return g.SpanSize
		}
	case ztoc.Uncompressed:
		if t, err := ztoc.ParseTarCheckpoints(z.Checkpoints); err == nil {
			return t.SpanSize
		}
	}
	return 0
}

func printInspect(e *env, out InspectOutput) error {
	w := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	for i, ix := range out.Indexes {
		if i > 0 {
			fmt.Fprintln(w)
		}
		fmt.Fprintf(w, "SOCI index:\t%s\n", ix.Digest)
		fmt.Fprintf(w, "Version:\t%s\n", ix.Version)
		if ix.ManifestDigest != "" {
			fmt.Fprintf(w, "Image manifest:\t%s\n", ix.ManifestDigest)
		}
		if ix.Platform != "" {
			fmt.Fprintf(w, "Platform:\t%s\n", ix.Platform)
		}
		if ix.BuildTool != "" {
			fmt.Fprintf(w, "Build tool:\t%s\n", ix.BuildTool)
		}
		if err := w.Flush(); err != nil {
			return err
		}
		fmt.Fprintln(w)
		fmt.Fprintln(w, "LAYER\tSIZE\tZTOC\tZTOC SIZE\tSPAN SIZE\tSPANS\tFILES\tUNCOMPRESSED\tZTOC %\tPREFETCH")
		for _, l := range ix.Layers {
			pf := "-"
			if len(l.Prefetch) > 0 {
				pf = ""
				for j, s := range l.Prefetch {
					if j > 0 {
						pf += ","
					}
					pf += spanRange(s.StartSpan, s.EndSpan)
				}
			}
			fmt.Fprintf(w, "%s\t%d\t%s\t%d\t%d\t%d\t%d\t%d\t%.2f\t%s\n", l.Digest, l.Size, l.ZtocDigest, l.ZtocSize,
				l.SpanSize, l.Spans, l.Files, l.UncompressedSize, l.ZtocPercent, pf)
		}
		if err := w.Flush(); err != nil {
			return err
		}
		for _, l := range ix.Layers {
			if l.FileList == nil {
				continue
			}
			fmt.Fprintf(w, "\nFiles of layer %s:\n", l.Digest)
			fmt.Fprintln(w, "NAME\tTYPE\tSIZE\tSPANS")
			for _, f := range l.FileList {
				fmt.Fprintf(w, "%s\t%s\t%d\t%s\n", f.Name, f.Type, f.Size, spanRange(f.FirstSpan, f.LastSpan))
			}
			if err := w.Flush(); err != nil {
				return err
			}
		}
	}
	return w.Flush()
}

func spanRange(first, last int32) string {
	if first == last {
		return fmt.Sprint(first)
	}
	return fmt.Sprintf("%d-%d", first, last)
}
