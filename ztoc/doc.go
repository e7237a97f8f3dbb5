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
// The package imports no BuildKit, containerd or FUSE code and does not log.
package ztoc
