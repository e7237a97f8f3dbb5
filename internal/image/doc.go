// Package image is the image plumbing of the socikit CLI: it resolves a
// source or target reference (an OCI layout directory, an OCI layout tar, or
// a registry reference) and reads or writes manifests and blobs there.
//
// The seams are small: a [Source] resolves its reference and serves
// manifests and blobs; a [Target] writes blobs it lacks and puts manifests.
// Extra capabilities are optional interfaces found by type assertion:
// [RangeSource] (random access to a blob, used to read one file through a
// zTOC) and [ReferrerSource] (the manifests whose subject is a given
// manifest, used to find v1 SOCI indexes).
//
// A typical copy:
//
//	src, _ := image.OpenSource(ctx, srcRef)
//	defer src.Close()
//	desc, body, _ := src.Resolve(ctx)
//	dst, _ := image.OpenTarget(ctx, dstRef)
//	_ = dst.WriteBlob(ctx, layer, func(ctx context.Context) (io.ReadCloser, error) { return src.Blob(ctx, layer) })
//	_ = dst.PutManifest(ctx, desc, body, "latest")
//	_ = dst.Close() // commits an OCI layout tar
package image
