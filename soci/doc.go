// Package soci builds, binds and validates SOCI indexes: the OCI image
// manifests that tell a lazy-loading snapshotter which zTOC describes which
// image layer.
//
// A SOCI index lists one zTOC per indexed image layer (in image-layer order)
// and, optionally, one prefetch blob per layer. It is serialized as an OCI
// image manifest whose config is the two-byte "{}" blob and whose config media
// type names the index version:
//
//   - [V1] indexes carry a subject (the platform image manifest) and are found
//     through the OCI referrers API or its tag fallback ([ReferrersTag]).
//   - [V2] indexes have no subject. [BindV2] annotates the image manifest with
//     the index digest (so the image digest changes) and [BuildImageIndex]
//     lists the rewritten manifests and the SOCI indexes in one OCI image
//     index.
//
// The runtime side parses what a registry serves with [ParseIndex],
// [ParsePrefetch], [IndexDigestFromManifest] and [FindIndexInImageIndex]. All
// parsers bound their input to [MaxDocumentSize] and return errors matching
// [ErrInvalid] (as a [*FieldError] naming the offending field) instead of
// panicking.
//
// The JSON written by this package matches upstream soci-snapshotter's byte
// for byte: encoding/json of the image-spec types, fields in struct order,
// map keys sorted.
//
// A typical producer:
//
//	ix := &soci.Index{Version: soci.V2, Layers: layers, BuildTool: "socikit"}
//	body, desc, err := ix.Marshal()          // push body, and soci.EmptyConfigJSON
//	m, mdesc, err := soci.BindV2(manifest, platform, desc)
//	idx, idesc, err := soci.BuildImageIndex(nil, []soci.BoundImage{{Original: orig, Manifest: mdesc, Index: desc}})
package soci
