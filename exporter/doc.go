// Package exporter is socikit's build-time pipeline, free of BuildKit types:
// it turns a layer's tar into a gzip blob plus its zTOC in one compression
// pass, with spans sized to the layer's content and, on request, the files a
// container reads at start-up moved to the front, and it assembles SOCI
// indexes (v2 image index binding or v1 referrer) for an image.
//
// The pieces, in the order a build uses them:
//
//   - Scan reads only the tar headers of a layer (random access, data
//     skipped) into a list of Entry values;
//   - Reorder writes the tar again with the start-up files first, copying
//     every entry's header and data blocks byte for byte;
//   - ChooseSpanSize picks the span size (and extra cuts around start-up
//     files) that minimises the bytes a lazy start fetches, and Planner is
//     the ztoc.SpanPlanner that applies the choice;
//   - BuildLayer runs all of that and ztoc.Compress over one layer, returning
//     the blob's digests, diffID, zTOC and prefetch spans; BuildLayerStream
//     does the same for a tar readable only once, its StreamPlanner choosing
//     span sizes greedily as entries arrive (no reordering);
//   - PrefetchSpans maps start-up files to merged span ranges of a zTOC,
//     PrefetchRanges the hot byte ranges of a start-up profile (package
//     profile; WithProfile gives one to BuildLayer, which then also cuts
//     spans around the hot ranges of big files read in part), and
//     ImagePrefetchRanges a profile across an image's layers;
//   - Assemble builds the SOCI indexes, prefetch blobs and rewritten
//     manifests of an image, and Output.Write stores them in an image.Target.
//
// The socikit CLI (convert) and the BuildKit adapter (exporter/buildkit)
// share Assemble. The package imports no BuildKit, containerd daemon, FUSE or
// snapshotter code (TestDeps checks it). See docs/exporter.md for the span
// size rule and measured figures.
package exporter
