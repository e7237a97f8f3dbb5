// Package service wires socikit's snapshotter daemon: it reads the TOML
// [Config], finds the SOCI index of the image a layer belongs to
// ([Discoverer]), builds the [snapshot.FileSystem] that mounts indexed layers
// lazily (through a [LayerMounter], the layer filesystem's seam), and serves
// containerd's snapshots gRPC API on a unix socket ([Run]).
//
// # Index discovery
//
// For a layer that containerd prepares with the remote snapshot labels, the
// index is looked for in this order:
//
//  1. the explicit label containerd.io/snapshot/remote/soci.index.digest
//     (upstream SOCI's label), fetched from the image's repository;
//  2. a v2 index: the com.amazon.soci.index-digest annotation of the image
//     manifest, fetched by the digest containerd names (cri.manifest-digest),
//     so the index is bound to the image digest the user pulled;
//  3. a v1 index: a referrer of the manifest with the v1 artifact type,
//     through the referrers API or the sha256-<hex> tag fallback. Off by
//     default (Config.Discovery.EnableV1), as in upstream SOCI since v0.10:
//     a referrer is not covered by the image digest, so anyone who can push
//     to the repository can attach an index that changes which bytes the
//     snapshotter serves for a signed image, and the lookup costs one or two
//     more registry round trips for every image that has no index.
//
// Results are cached per image manifest, so the layers of one pull share
// one discovery.
//
// # zTOCs from containerd's content store
//
// containerd's transfer service also fetches the zTOCs of a SOCI v2 image
// (the SOCI index manifest is in the image index with the image's platform,
// and containerd walks it like an image manifest). The layer filesystem
// reads zTOCs and prefetch lists from containerd's content store when
// containerd has them or is fetching them (Config.Containerd), and from the
// registry otherwise; see docs/snapshotter.md.
//
// # Layers without a zTOC
//
// A layer the image's SOCI index has no zTOC for (under the index's min
// layer size: small base layers) is fetched from the registry by the
// daemon and unpacked by the snapshotter ([FileSystem.OpenLayer],
// snapshot.LayerSource) unless Config.Lazy.UnpackUnindexed is off: left to
// containerd, its unpacker would also fetch every layer above it whole.
// Every layer of an image without a SOCI index is too, unless
// Config.Pull.DisableUnindexed. The fetch is pipelined (pull.go,
// docs/pull.md): several range requests per layer, read back in order and
// unpacked as they arrive, the next layer fetched while one is unpacked.
//
// # Registry credentials
//
// Every registry client of the daemon (discovery, zTOCs, span fetches,
// unpacked layers, /profile) takes credentials from the docker config
// (go-containerregistry's default keychain). With Config.CRI the daemon
// also serves the CRI image service in front of containerd's and keeps the
// credentials of each PullImage for the image's repository ([CRIKeychain],
// asked first), so that the kubelet's pull secrets reach the lazy layers'
// range requests; the keychain travels with the registry transport
// (internal/image.KeychainTransport). See docs/kubernetes.md.
//
// # Start-up profiles
//
// With Config.Profile.Record (the default), every lazy layer's filesystem
// reports its reads to a snapshotter/record.Recorder, and a container start
// (the snapshotter's snapshot.StartObserver call: containerd prepares or
// mounts a root filesystem over lazy layers) opens a recording window for
// the image of the topmost of them. GET /profile?image=REF on
// MetricsAddress answers the image's profile (package profile), read by
// `socikit profile export`.
package service
