// Package ztoc reads, writes and builds zTOCs: the per-layer tables of
// contents of SOCI (Seekable OCI) indexes, in the format of upstream
// awslabs/soci-snapshotter v0.16 (flatbuffers, zTOC version 0.9).
//
// A zTOC lists every tar entry of a layer and holds checkpoints from which
// any span of the compressed layer can be decompressed on its own, plus the
// digest of each span's compressed bytes. Three ways produce one:
//
//   - Build indexes an existing gzip or tar layer in one read (a pure-Go
//     checkpointing inflater, no cgo);
//   - Compress gzips a tar stream for a build and ends a deflate block at
//     span boundaries it chooses, returning the blob and its zTOC from the
//     same pass;
//   - Unmarshal decodes one, validating every offset (untrusted input).
//
// Index and Reader turn a zTOC plus random access to the layer blob into
// verified, decompressed file contents.
//
// # Schema
//
// The flatbuffers schema is ztoc.fbs, beside the code (a copy of the
// format of upstream's ztoc/fbs/ztoc.fbs, in our words; TestSchema checks
// it against the field slots marshal.go uses). No code is generated from
// it, on purpose: Marshal drives flatbuffers.Builder by hand in upstream's
// order of builder calls, so that the bytes, and so the zTOC digest in a
// SOCI index, are upstream's; and Unmarshal reads untrusted bytes with its
// own bounds-checked table reader instead of flatc's generated accessors,
// which trust their input and panic on a bad offset (upstream recovers
// from those panics). docs/ztoc.md documents each field and the encoding
// rules.
//
// The package imports no BuildKit, containerd or FUSE code and does not log.
package ztoc
