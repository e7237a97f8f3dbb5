#!/usr/bin/env bash
# Writes the base of the builder image (the top-level Dockerfile's "base"
# stage) as an OCI layout, from Debian packages only: no Docker Hub.
#
#   scripts/builder-base.sh OUTDIR     # prints OUTDIR@sha256:<manifest digest>
#
# The image is one layer: the files of the .deb packages below (apt-get
# download of the candidate versions, unpacked with dpkg-deb -x; docs, man
# pages, locales and gconv modules dropped), busybox's applets linked in
# /bin, a CA bundle made from ca-certificates' files (what
# update-ca-certificates would write), /tmp and /var/lib/buildkit, and
# PATH in the image config. The layer is written with a fixed mtime, owner
# and order, so the same packages give the same digests.
#   busybox-static   sh and the usual tools (docker exec, debugging)
#   runc libseccomp2 libc6   the OCI worker's runtime (runc links libseccomp, glibc)
#   ca-certificates  TLS to registries
# Give it to the Dockerfile with
#   buildctl build ... --oci-layout base=OUTDIR --opt context:base=oci-layout://base@sha256:...
#   docker buildx build --build-context base=oci-layout://OUTDIR@sha256:... ...
# The .deb files are kept in $BUILDER_BASE_CACHE (default
# /var/cache/socikit-builder-base).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
out=${1:?usage: builder-base.sh OUTDIR}
pkgs=(busybox-static runc libseccomp2 libc6 ca-certificates)
cache=${BUILDER_BASE_CACHE:-/var/cache/socikit-builder-base}
arch=$(dpkg --print-architecture)

mkdir -p "$cache"
# The candidate version of each package (one apt-cache call: each costs ~1 s);
# download the ones not cached.
candidates() {
  apt-cache policy "${pkgs[@]}" 2>/dev/null |
    awk '/^[^ ]/ {sub(":$", ""); p = $0} $1 == "Candidate:" && $2 != "(none)" {print p, $2}'
}
vers=$(candidates)
if [ "$(wc -l <<<"$vers")" -ne ${#pkgs[@]} ]; then
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  vers=$(candidates)
fi
debs=()
for p in "${pkgs[@]}"; do
  v=$(awk -v p="$p" '$1 == p {print $2}' <<<"$vers")
  [ -n "$v" ] || { echo "builder-base.sh: no candidate version of $p" >&2; exit 1; }
  f=$(ls "$cache/${p}_"*"${v#*:}_"*.deb 2>/dev/null | head -1 || true)
  if [ -z "$f" ]; then
    (cd "$cache" && apt-get download -q "$p=$v" >/dev/null 2>&1) || {
      echo "builder-base.sh: apt-get download $p=$v failed" >&2
      exit 1
    }
    f=$(ls "$cache/${p}_"*"${v#*:}_"*.deb | head -1)
  fi
  debs+=("$f")
done

work=$(mktemp -d -t socikit-builder-base.XXXXXX)
trap 'rm -rf "$work"' EXIT
root=$work/rootfs
mkdir -p "$root"
for f in "${debs[@]}"; do dpkg-deb -x "$f" "$root"; done
rm -rf "$root/usr/share/doc" "$root/usr/share/man" "$root/usr/share/locale" \
  "$root/usr/share/lintian" "$root/usr/share/bash-completion" "$root"/usr/lib/*/gconv
for a in $("$root/bin/busybox" --list); do
  [ -e "$root/bin/$a" ] || [ -e "$root/usr/bin/$a" ] || [ -e "$root/usr/sbin/$a" ] || [ -e "$root/sbin/$a" ] ||
    ln -s busybox "$root/bin/$a"
done
mkdir -p "$root/etc/ssl/certs" "$root/etc/buildkit" "$root/var/lib/buildkit" "$root/tmp" "$root/root"
cat "$root"/usr/share/ca-certificates/mozilla/*.crt >"$root/etc/ssl/certs/ca-certificates.crt"
chmod 1777 "$root/tmp"
printf 'root:x:0:0:root:/root:/bin/sh\n' >"$root/etc/passwd"
printf 'root:x:0:\n' >"$root/etc/group"

tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner --format=gnu \
  -C "$root" -cf "$work/layer.tar" .
gzip -n -6 <"$work/layer.tar" >"$work/layer.tar.gz"
sha() { sha256sum "$1" | cut -d' ' -f1; }
size() { stat -c %s "$1"; }
diffid=$(sha "$work/layer.tar")

rm -rf "$out"
mkdir -p "$out/blobs/sha256"
put() { # put FILE: stores FILE as a blob, prints its hex digest
  local d
  d=$(sha "$1")
  cp "$1" "$out/blobs/sha256/$d"
  echo "$d"
}
layer=$(put "$work/layer.tar.gz")
pkglist=$(for f in "${debs[@]}"; do basename "$f" .deb; done | paste -sd' ')
printf '{"architecture":"%s","os":"linux","config":{"Env":["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],"WorkingDir":"/"},"rootfs":{"type":"layers","diff_ids":["sha256:%s"]},"history":[{"created":"1970-01-01T00:00:00Z","created_by":"scripts/builder-base.sh: %s"}]}' \
  "$arch" "$diffid" "$pkglist" >"$work/config.json"
config=$(put "$work/config.json")
printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%d},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:%s","size":%d}]}' \
  "$config" "$(size "$work/config.json")" "$layer" "$(size "$work/layer.tar.gz")" >"$work/manifest.json"
manifest=$(put "$work/manifest.json")
printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%d,"platform":{"architecture":"%s","os":"linux"},"annotations":{"org.opencontainers.image.ref.name":"latest"}}]}' \
  "$manifest" "$(size "$work/manifest.json")" "$arch" >"$out/index.json"
printf '{"imageLayoutVersion":"1.0.0"}' >"$out/oci-layout"
echo "$(cd "$out" && pwd)@sha256:$manifest"
