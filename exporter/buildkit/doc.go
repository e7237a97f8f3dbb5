// Package buildkit is socikit's only BuildKit adapter: the "soci" exporter
// type, its attribute parsing, and a BuildKit compression type that gzips new
// layers and builds their zTOCs in the same pass.
//
// BuildKit has no exporter plugin API: exporter types are a fixed switch in
// worker/base. WrapWorker wraps a worker so that Exporter("soci") returns
// this package's exporter and every other call goes to the wrapped worker.
// Our buildkitd (cmd/buildkitd) wraps the workers it creates with it.
//
// The soci exporter commits the image with BuildKit's own image writer, with
// layer compression set to Compression (plain gzip for every reader, written
// by exporter.BuildLayerStream, or exporter.BuildLayer when reordering; the
// zTOC is stored in the content store and linked to the layer blob by a label
// keyed by the span setting, as compression finalizer annotations are
// dropped). The compression is forced: every layer the build produced is
// written by Compression with the export's options, also when BuildKit has a
// blob of it from an earlier export (a plain gzip blob of type=image is
// converted, the result kept as a variant of the cache record and reused by
// the next export with the same options; reordered layers are made apart
// from BuildKit's cache records, see reorder.go); the layers of base images keep
// their blobs (see baseLayerBlobs) and are indexed with ztoc.Build. It then
// assembles the SOCI index with exporter.Assemble
// (v2 by default: the image manifest is rewritten with
// com.amazon.soci.index-digest and an image index lists it and the SOCI
// index; attestation manifests are kept) and pushes the result. Blobs and
// child manifests are pushed before the manifests that reference them, and
// the tag is pushed last, so a failed push leaves no index referencing the
// image.
//
// BuildKit streams dest= only to its built-in exporter types, so for a SOCI
// image without a registry WrapWorker also answers Exporter("oci"): without
// soci-* attributes it is the stock oci exporter; with any of them the image
// is committed and indexed as type=soci does and sent to the client as an
// OCI layout (a tar for dest=FILE, or the client's layout directory for
// tar=false); in the tar, v1 indexes are listed in index.json as referrers
// of the image.
package buildkit
