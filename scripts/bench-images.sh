#!/usr/bin/env bash
# Prepares the build contexts of the realistic benchmark images (issue 5):
# Debian bookworm with python3 + numpy + pandas, nodejs + npm, OpenJDK 17 and
# gcc, each with a small app that prints a ready line. Our buildkitd builds
# the images from these contexts later; this script only lays them out.
#
# Usage: scripts/bench-images.sh [--cache DIR] [APP...]
#   APP    python, node, jvm, toolchain (default: all four)
#   DIR    cache directory (default /var/cache/socikit-bench)
#
# Steps, each cached behind a stamp file that holds a hash of its recipe
# (the bash text of the functions doing the step, the package list, the
# mirror, the previous step's hash), so that a changed recipe rebuilds
# what depends on it and an unchanged one is reused in seconds:
#   1. DIR/rootfs/base: `debootstrap --variant=minbase bookworm` from the
#      mirror apt uses here, apt caches and lists removed, /dev emptied.
#   2. DIR/APP/pkgs-upper: the app's packages, installed with apt-get in a
#      chroot of an overlay whose lower dir is the base: the upper dir is
#      the package layer. Overlay whiteouts and trusted.overlay.* xattrs are
#      removed from it (a BuildKit COPY cannot carry them) and reported.
#   3. DIR/APP: the app, the image's Dockerfile and context, and the app's
#      start-up profile (strace of a chroot run of the image's rootfs).
#
# Output, per app, DIR/APP/ (the only lines on stdout are these paths):
#   Dockerfile     FROM scratch; COPY base/ /; COPY pkgs/ /; COPY app/ /app/;
#                  ENV; CMD: three layers (base, packages, app)
#   context/base   hard-link copy of DIR/rootfs/base
#   context/pkgs   hard-link copy of DIR/APP/pkgs-upper
#   context/app    the app's files (/app in the image)
#   cmd.json       the command, a JSON array of absolute paths and arguments
#   ready          the line the app prints once started ("ready")
#   startup.txt    regular files the app reads before exiting, image paths
#                  with symlinks resolved, de-duplicated, in first-open order
#   prefetch.txt   the same, less the files of the app layer: the list for
#                  soci-prefetch/soci-reorder (the app layer is under the
#                  exporter's soci-min-layer-size, so it has no zTOC, and a
#                  soci-prefetch path must be in an indexed layer)
#   startup.json   {"files","bytes"} of startup.txt, and per layer
#   pkgs-cleanup.txt  whiteouts and overlay xattrs removed from the upper dir
#   startup-ranges.json  with BENCH_TRACE (a static socikit-trace binary):
#                  the byte ranges the app reads before its ready line,
#                  mapped pages included, a start-up profile
#                  (socikit.profile.v1) made as the socikit frontend's
#                  profiling step makes it, by socikit-trace in a chroot of
#                  the rootfs; cached per context and tracer binary
# Build with e.g.:
#   buildctl build --frontend dockerfile.v0 --local context=DIR/APP/context \
#     --local dockerfile=DIR/APP --output type=soci,... \
#     --opt ... soci-prefetch="$(paste -sd, DIR/APP/prefetch.txt)"
#
# Needs root (debootstrap, overlay mounts, chroot). Runs in a private mount
# namespace, so no mount outlives it even when killed; a trap unmounts in
# order on the way out too. BENCH_MIRROR overrides the Debian mirror;
# BENCH_TRACE names a static socikit-trace (startup-ranges.json).
set -euo pipefail
SELF=$(readlink -f "$0")

CACHE=/var/cache/socikit-bench
APPS=()
while [ $# -gt 0 ]; do
  case "$1" in
  --cache) CACHE=${2:?--cache needs a directory}; shift 2 ;;
  --cache=*) CACHE=${1#--cache=}; shift ;;
  -h|--help) sed -n '2,/^set -euo/p' "$SELF" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
  python|node|jvm|toolchain) APPS+=("$1"); shift ;;
  *) echo "bench-images.sh: unknown argument $1 (apps: python node jvm toolchain)" >&2; exit 2 ;;
  esac
done
[ ${#APPS[@]} -gt 0 ] || APPS=(python node jvm toolchain)
if [ "$(id -u)" != 0 ]; then
  echo "bench-images.sh: needs root (debootstrap, overlay mounts, chroot)" >&2
  exit 1
fi
mkdir -p "$CACHE"
CACHE=$(cd "$CACHE" && pwd -P)
cd "$(dirname "$SELF")/.."
. scripts/lib.sh

# Re-run in a private mount namespace: every mount made below dies with it.
if [ -z "${SOCIKIT_BENCH_NS:-}" ]; then
  SOCIKIT_BENCH_NS=1 exec unshare --mount --propagation private -- "$SELF" --cache "$CACHE" "${APPS[@]}"
fi

# Bump to rebuild everything whatever the hashes say.
RECIPE_VERSION=1
SUITE=bookworm
# The image's environment, and that of the profiling run.
IMAGE_ENV=(PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 HOME=/root)

log() { echo "== $*" >&2; }
die() { echo "bench-images.sh: $*" >&2; exit 1; }
now() { date +%s.%N; }
took() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1fs", b - a }'; }
# key ARG...: a short hash of the arguments (recipe text, lists, keys).
key() { printf '%s\n' "$@" RECIPE_VERSION=$RECIPE_VERSION | sha256sum | cut -c1-16; }
# fresh STAMP KEY: true when STAMP holds KEY.
fresh() { [ -f "$1" ] && [ "$(cat "$1")" = "$2" ]; }

# ---------------------------------------------------------------- mounts
# Mount points in mount order; cleanup unmounts them in reverse.
MOUNTS=()
mnt() { # mnt TARGET MOUNT-ARGS...
  local target=$1; shift
  mount "$@" "$target"
  MOUNTS+=("$target")
}
umount_all() {
  local i
  for ((i = ${#MOUNTS[@]} - 1; i >= 0; i--)); do
    umount -R "${MOUNTS[i]}" 2>/dev/null || umount -R -l "${MOUNTS[i]}" 2>/dev/null || true
  done
  MOUNTS=()
}
trap umount_all EXIT
trap 'exit 130' INT TERM

# overlay MERGED UPPER WORK LOWER...: an overlay whose first LOWER is on top.
# No redirect_dir/metacopy/index: the upper dir must be a plain directory
# tree (whiteouts aside) that a COPY can carry.
overlay() {
  local merged=$1 upper=$2 work=$3; shift 3
  local IFS=:
  mkdir -p "$merged" "$upper" "$work"
  mnt "$merged" -t overlay overlay \
    -o "lowerdir=$*,upperdir=$upper,workdir=$work,redirect_dir=off,metacopy=off,index=off"
}
# chroot_mounts ROOT: /proc, /sys, /dev and the host's resolv.conf, as a
# container runtime provides them.
chroot_mounts() {
  mnt "$1/proc" -t proc proc
  mnt "$1/sys" -t sysfs -o ro sysfs
  mnt "$1/dev" --rbind /dev
  mount --make-rslave "$1/dev"
  if [ -e "$1/etc/resolv.conf" ] && [ -e /etc/resolv.conf ]; then
    mnt "$1/etc/resolv.conf" --bind /etc/resolv.conf
  fi
}

# ---------------------------------------------------------------- mirror
# The Debian mirror apt uses: BENCH_MIRROR, else the first URI serving
# $SUITE in /etc/apt/sources.list.d/*.sources (deb822) or sources.list.
apt_mirror() {
  if [ -n "${BENCH_MIRROR:-}" ]; then echo "$BENCH_MIRROR"; return; fi
  local m="" src=()
  shopt -s nullglob
  src=(/etc/apt/sources.list.d/*.sources)
  shopt -u nullglob
  [ ${#src[@]} -eq 0 ] || m=$(awk -v suite="$SUITE" '
    function flush() {
      if (!found && types ~ /(^| )deb( |$)/ && (" " suites " ") ~ (" " suite " ") && uris != "") { split(uris, u, " "); print u[1]; found = 1 }
      types = suites = uris = ""
    }
    FNR == 1 || /^[ \t]*$/ { flush() }
    /^Types:/ { sub(/^Types:[ \t]*/, ""); types = $0 }
    /^Suites:/ { sub(/^Suites:[ \t]*/, ""); suites = $0 }
    /^URIs:/ { sub(/^URIs:[ \t]*/, ""); uris = $0 }
    END { flush() }' "${src[@]}")
  if [ -z "$m" ] && [ -f /etc/apt/sources.list ]; then
    m=$(awk -v suite="$SUITE" '$1 == "deb" { i = 2; if ($2 ~ /^\[/) while (i <= NF && $i !~ /\]$/) i++; if ($2 ~ /^\[/) i++; if ($(i+1) == suite) { print $i; exit } }' /etc/apt/sources.list)
  fi
  [ -n "$m" ] || die "no Debian mirror for $SUITE in /etc/apt/sources.list{,.d/*.sources}: set BENCH_MIRROR"
  echo "$m"
}

# ---------------------------------------------------------------- step 1
# build_base DEST MIRROR: minbase bookworm into DEST, made lean.
build_base() {
  local dest=$1 mirror=$2
  rm -rf --one-file-system "$dest"
  debootstrap --variant=minbase "$SUITE" "$dest" "$mirror" >"$dest.log" 2>&1 ||
    { tail -20 "$dest.log" >&2; die "debootstrap failed (log: $dest.log)"; }
  # apt caches and package lists (each app's step fetches fresh lists);
  # lists/partial and lists/lock stay, so that deleting nothing of the
  # base leaves whiteouts in the package layers.
  rm -f "$dest"/var/cache/apt/archives/*.deb "$dest"/var/cache/apt/*.bin
  rm -f "$dest"/var/lib/apt/lists/*_*
  # Host-specific files debootstrap copied: the runtime provides them.
  : >"$dest/etc/resolv.conf"
  echo localhost >"$dest/etc/hostname"
  # A COPY of a context cannot carry device nodes; the runtime makes /dev.
  find "$dest/dev" -mindepth 1 -delete
  local odd
  odd=$(find "$dest" -xdev \( -type b -o -type c -o -type p -o -type s \) -printf '/%P\n')
  [ -z "$odd" ] || die "special files in the base a COPY cannot carry: $odd"
}

# ---------------------------------------------------------------- apps
# app_packages APP: the Debian packages of the app's package layer.
app_packages() {
  case "$1" in
  python) echo python3 python3-numpy python3-pandas ;;
  node) echo nodejs npm ;;
  jvm) echo openjdk-17-jre-headless ;;
  toolchain) echo gcc g++ libc6-dev make ;;
  esac
}
# app_cmd APP: the image's command, one word a line (absolute paths).
app_cmd() {
  case "$1" in
  python) printf '%s\n' /usr/bin/python3 /app/main.py ;;
  node) printf '%s\n' /usr/bin/node /app/main.js ;;
  jvm) printf '%s\n' /usr/bin/java -cp /app Main ;;
  toolchain) printf '%s\n' /bin/sh /app/main.sh ;;
  esac
}
READY=ready

# write_app_APP DIR: the app's files, /app in the image.
write_app_python() {
  cat >"$1/main.py" <<'EOF'
# socikit benchmark app: imports numpy, pandas and heavy stdlib modules,
# computes a little, prints the ready line.
import asyncio, decimal, email.parser, http.client, json, sqlite3, ssl
import xml.etree.ElementTree as ET

import numpy as np
import pandas as pd

df = pd.DataFrame({"a": np.arange(10), "b": np.linspace(0.0, 1.0, 10)})
assert int(df["a"].sum()) == 45
assert abs(float(df["b"].mean()) - 0.5) < 1e-9
assert ET.fromstring("<a><b>1</b></a>").find("b").text == "1"
db = sqlite3.connect(":memory:")
assert db.execute("select 6 * 7").fetchone()[0] == 42
assert json.loads(json.dumps({"x": str(decimal.Decimal("1.5"))}))["x"] == "1.5"
print("ready", flush=True)
EOF
}
write_app_node() {
  cat >"$1/main.js" <<'EOF'
// socikit benchmark app: loads Node built-ins and modules of npm's Debian
// tree (/usr/share/nodejs), computes a little, prints the ready line.
'use strict';
const assert = require('assert');
const crypto = require('crypto');
const http = require('http');
const zlib = require('zlib');
const { URL } = require('url');
const semver = require('semver');
const glob = require('glob');
const npa = require('npm-package-arg');
const minimatch = require('minimatch');
const npm = require('/usr/share/nodejs/npm/lib/npm.js');

assert.strictEqual(typeof http.createServer, 'function');
assert.strictEqual(typeof npm, 'function');
assert.ok(semver.satisfies('1.2.3', '^1.0.0'));
assert.strictEqual(npa('left-pad@1.3.0').name, 'left-pad');
assert.ok(minimatch('main.js', '*.js'));
assert.strictEqual(typeof glob.sync, 'function');
assert.strictEqual(zlib.gunzipSync(zlib.gzipSync('x')).toString(), 'x');
assert.strictEqual(new URL('http://a/b').pathname, '/b');
crypto.createHash('sha256').update('x').digest('hex');
console.log('ready');
EOF
}
write_app_jvm() {
  cat >"$1/Main.java" <<'EOF'
// socikit benchmark app: touches java.util.concurrent, java.net.http,
// javax.xml and java.security, prints the ready line.
import java.io.ByteArrayInputStream;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.nio.charset.StandardCharsets;
import java.security.MessageDigest;
import java.time.Duration;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.stream.IntStream;
import javax.xml.parsers.DocumentBuilderFactory;

public class Main {
    public static void main(String[] args) throws Exception {
        ExecutorService pool = Executors.newFixedThreadPool(2);
        Future<Integer> sum = pool.submit(() -> IntStream.rangeClosed(1, 100).sum());
        HttpClient client = HttpClient.newBuilder().connectTimeout(Duration.ofSeconds(1)).build();
        HttpRequest req = HttpRequest.newBuilder(URI.create("http://127.0.0.1:9/ready")).GET().build();
        var doc = DocumentBuilderFactory.newInstance().newDocumentBuilder()
            .parse(new ByteArrayInputStream("<a><b>1</b></a>".getBytes(StandardCharsets.UTF_8)));
        byte[] h = MessageDigest.getInstance("SHA-256").digest("x".getBytes(StandardCharsets.UTF_8));
        if (sum.get() != 5050 || !"1".equals(doc.getElementsByTagName("b").item(0).getTextContent())
            || h.length != 32 || client.version() == null || !req.uri().getPath().equals("/ready")) {
            throw new IllegalStateException("self-check failed");
        }
        pool.shutdown();
        System.out.println("ready");
    }
}
EOF
  # The host's javac 17 (same bytecode whatever the JDK 17 update).
  local src
  src=$(mktemp -d)
  javac --release 17 -d "$src" "$1/Main.java"
  cp "$src/Main.class" "$1/"
  rm -rf "$src"
}
write_app_toolchain() {
  cat >"$1/hello.c" <<'EOF'
/* socikit benchmark app: compiled by /app/main.sh at start-up. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(void) {
    char buf[16];
    snprintf(buf, sizeof buf, "%s", "ready");
    if (strlen(buf) != 5 || (int)sqrt(49.0) != 7)
        return EXIT_FAILURE;
    puts(buf);
    return EXIT_SUCCESS;
}
EOF
  cat >"$1/main.sh" <<'EOF'
#!/bin/sh
# socikit benchmark app: compiles /app/hello.c with gcc and runs it.
set -e
d=$(mktemp -d)
gcc -O2 -Wall -o "$d/hello" /app/hello.c -lm
"$d/hello"
rm -rf "$d"
EOF
  chmod 755 "$1/main.sh"
}

# ---------------------------------------------------------------- step 2
# build_pkgs APP BASE DIR: DIR/pkgs-upper holds the app's packages over BASE.
build_pkgs() {
  local app=$1 base=$2 dir=$3
  local upper=$dir/pkgs-upper work=$dir/.pkgs-work merged=$dir/.pkgs-merged
  local n=${#MOUNTS[@]}
  rm -rf --one-file-system "$upper" "$work" "$merged"
  overlay "$merged" "$upper" "$work" "$base"
  chroot_mounts "$merged"
  # shellcheck disable=SC2046 # the package list splits into words
  if ! chroot "$merged" /usr/bin/env -i "${IMAGE_ENV[@]}" DEBIAN_FRONTEND=noninteractive sh -ec '
      apt-get update -qq
      apt-get install -y -qq --no-install-recommends "$@"
      apt-get clean' sh $(app_packages "$app") >"$dir/pkgs.log" 2>&1; then
    tail -20 "$dir/pkgs.log" >&2
    die "$app: apt-get install failed (log: $dir/pkgs.log)"
  fi
  while [ ${#MOUNTS[@]} -gt "$n" ]; do
    umount -R "${MOUNTS[-1]}"
    unset 'MOUNTS[-1]'
  done
  rm -rf --one-file-system "$work" "$merged"
  clean_upper "$upper" "$base" >"$dir/pkgs-cleanup.txt"
}

# clean_upper UPPER LOWER: drops apt's lists and caches from an overlay
# upper dir, then the overlay-only parts a COPY cannot carry: whiteouts
# (character devices 0/0) and trusted.overlay.* xattrs. An opaque marker
# matters only on a directory LOWER has too (it hid LOWER's entries there);
# the kernel also marks directories it creates new in the upper dir opaque,
# which changes nothing once the marker is gone. Lists what it removed on
# stdout and warns on stderr about what changes the image's view.
clean_upper() {
  local up=$1 lower=$2 f rel kind attr line n_wh=0 n_opq=0 n_new=0 n_x=0
  rm -f "$up"/var/lib/apt/lists/*_* "$up"/var/cache/apt/*.bin "$up"/var/cache/apt/archives/*.deb
  rm -rf "$up"/tmp/* "$up"/root/.cache
  while IFS= read -r -d '' f; do
    rel=/${f#"$up"/}
    kind=$(stat -c '%t:%T' "$f")
    if [ "$kind" = 0:0 ]; then
      echo "whiteout $rel"; n_wh=$((n_wh + 1))
    else
      echo "device $rel ($kind)"
    fi
    rm -f "$f"
  done < <(find "$up" -type c -print0)
  f=$(find "$up" \( -type b -o -type p -o -type s \) -printf '/%P\n')
  [ -z "$f" ] || die "special files in $up a COPY cannot carry: $f"
  # getfattr prints "# file: PATH" then NAME=VALUE lines.
  while IFS= read -r line; do
    case "$line" in
    "# file: "*) f=${line#"# file: "} ;;
    trusted.overlay.*=*)
      attr=${line%%=*}
      rel=/${f#"$up"/}
      [ "$f" = "$up" ] && rel=/
      if [ "$attr" = trusted.overlay.opaque ]; then
        if [ -d "$lower$rel" ]; then
          echo "opaque $rel"; n_opq=$((n_opq + 1))
        else
          n_new=$((n_new + 1))
        fi
      fi
      setfattr -h -x "$attr" "$f"
      n_x=$((n_x + 1)) ;;
    esac
  done < <(getfattr -R -P -h --absolute-names -d -m '^trusted\.overlay\.' "$up" 2>/dev/null)
  if [ $n_wh -gt 0 ] || [ $n_opq -gt 0 ]; then
    echo "bench-images.sh: warning: removed $n_wh whiteouts and $n_opq opaque markers over base directories from $up: the base's files they hid stay visible in the image (see pkgs-cleanup.txt)" >&2
  fi
  echo "# removed: $n_wh whiteouts, $n_opq opaque markers over base directories, $n_new on new directories, $n_x trusted.overlay xattrs in all"
}

# ---------------------------------------------------------------- step 3
# build_context APP BASE DIR: the app, Dockerfile, context and profile.
build_context() {
  local app=$1 base=$2 dir=$3 w
  rm -rf --one-file-system "$dir/context" "$dir/.run"
  rm -f "$dir"/{Dockerfile,cmd.json,ready,startup.txt,prefetch.txt,startup.json}
  mkdir -p "$dir/context/app"
  cp -al "$base" "$dir/context/base"
  cp -al "$dir/pkgs-upper" "$dir/context/pkgs"
  "write_app_$app" "$dir/context/app"

  local cmd=() json=""
  mapfile -t cmd < <(app_cmd "$app")
  for w in "${cmd[@]}"; do json+="${json:+,}\"$w\""; done
  echo "[$json]" >"$dir/cmd.json"
  echo "$READY" >"$dir/ready"
  {
    echo "# socikit benchmark image \"$app\" (written by scripts/bench-images.sh)."
    echo "# Three layers: the Debian $SUITE minbase, the app's packages"
    echo "# ($(app_packages "$app")), the app."
    echo "# COPY from a build context gives every file owner 0:0 (Debian's few"
    echo "# files owned by other users or groups, e.g. /etc/shadow's group, are"
    echo "# root's in the image): acceptable for these benchmarks."
    echo "FROM scratch"
    echo "COPY base/ /"
    echo "COPY pkgs/ /"
    echo "COPY app/ /app/"
    echo "ENV ${IMAGE_ENV[*]}"
    echo "CMD [$json]"
  } >"$dir/Dockerfile"
  profile "$app" "$dir"
}

# profile APP DIR: runs the app in a chroot of the image's rootfs (the
# three context layers under a throw-away upper dir) under strace, checks
# that it prints the ready line, and writes startup.txt, prefetch.txt and
# startup.json.
profile() {
  local app=$1 dir=$2 run=$2/.run
  local ctx=$dir/context n=${#MOUNTS[@]} cmd=()
  mapfile -t cmd < <(app_cmd "$app")
  mkdir -p "$run/applayer"
  cp -al "$ctx/app" "$run/applayer/app"
  overlay "$run/merged" "$run/upper" "$run/work" "$run/applayer" "$ctx/pkgs" "$ctx/base"
  chroot_mounts "$run/merged"
  local merged
  merged=$(cd "$run/merged" && pwd -P)
  # -y resolves each returned fd to its path as the kernel sees it (from
  # outside the chroot: MERGED/...), symlinks and relative names resolved;
  # -z keeps successful calls only, each on one line.
  if ! env -i "${IMAGE_ENV[@]}" timeout 600 strace -f -qq -y -z --seccomp-bpf -e signal=none \
      -e trace=open,openat,openat2,execve,execveat,chroot -o "$run/trace" \
      /usr/sbin/chroot "$merged" "${cmd[@]}" >"$run/stdout" 2>"$run/stderr"; then
    cat "$run/stderr" >&2
    die "$app: the app failed in the chroot"
  fi
  [ "$(cat "$run/stdout")" = "$READY" ] ||
    { cat "$run/stdout" "$run/stderr" >&2; die "$app: the app printed something else than \"$READY\""; }
  [ ! -s "$run/stderr" ] || { echo "$app: the app wrote on stderr:" >&2; cat "$run/stderr" >&2; }

  # Candidates in first-open order: "O PATH" for a file opened for reading
  # (resolved by the kernel), "E PATH" for an execve after the chroot (the
  # path as given, resolved below inside the rootfs).
  awk -v root="$merged" '
    / chroot\(/ { inside = 1; next }
    / execve(at)?\(/ {
      if (!inside) next
      if (match($0, /\("[^"]*"/)) print "E " substr($0, RSTART + 2, RLENGTH - 3)
      next
    }
    / open(at|at2)?\(/ {
      if ($0 ~ /O_WRONLY|O_PATH/) next
      if (!match($0, /= [0-9]+<.*>$/)) next
      p = substr($0, RSTART, RLENGTH); sub(/^= [0-9]+</, "", p); sub(/>$/, "", p)
      if (index(p, root "/") != 1) next
      print "O " substr(p, length(root) + 1)
    }' "$run/trace" >"$run/candidates"

  # Resolve execs (and their ELF or #! interpreters) inside the rootfs.
  local kind p q interp
  : >"$run/paths"
  while read -r kind p; do
    if [ "$kind" = O ]; then echo "$p" >>"$run/paths"; continue; fi
    q=$(chroot "$merged" /usr/bin/readlink -f -- "$p") || continue
    echo "$q" >>"$run/paths"
    interp=""
    if [ "$(head -c 2 "$merged$q")" = '#!' ]; then
      interp=$(head -n 1 "$merged$q" | sed 's/^#![ \t]*//; s/[ \t].*//')
    elif [ "$(head -c 4 "$merged$q" | od -An -c | tr -d ' ')" = '177ELF' ]; then
      interp=$(readelf -lW "$merged$q" 2>/dev/null | sed -n 's/.*Requesting program interpreter: \(.*\)]$/\1/p')
    fi
    [ -z "$interp" ] || chroot "$merged" /usr/bin/readlink -f -- "$interp" >>"$run/paths" || true
  done <"$run/candidates"

  while [ ${#MOUNTS[@]} -gt "$n" ]; do
    umount -R "${MOUNTS[-1]}"
    unset 'MOUNTS[-1]'
  done

  # Keep regular files of the image (the layer that shows each path is the
  # topmost holding it), de-duplicated, in order; count sizes per layer.
  local layer l sz files=0 bytes=0
  declare -A seen=() lf=() lb=()
  : >"$dir/startup.txt.tmp"
  : >"$dir/prefetch.txt.tmp"
  while IFS= read -r p; do
    [ -n "${seen[$p]+x}" ] && continue
    seen[$p]=1
    layer=""
    for l in app pkgs base; do
      if [ "$l" = app ]; then q=$run/applayer$p; else q=$ctx/$l$p; fi
      if [ -e "$q" ] || [ -L "$q" ]; then layer=$l; break; fi
    done
    if [ -z "$layer" ] || [ ! -f "$q" ] || [ -L "$q" ]; then continue; fi
    sz=$(stat -c %s "$q")
    echo "$p" >>"$dir/startup.txt.tmp"
    [ "$layer" = app ] || echo "$p" >>"$dir/prefetch.txt.tmp"
    files=$((files + 1)); bytes=$((bytes + sz))
    lf[$layer]=$((${lf[$layer]:-0} + 1)); lb[$layer]=$((${lb[$layer]:-0} + sz))
  done <"$run/paths"
  mv "$dir/startup.txt.tmp" "$dir/startup.txt"
  mv "$dir/prefetch.txt.tmp" "$dir/prefetch.txt"
  printf '{"files": %d, "bytes": %d, "layers": {"base": {"files": %d, "bytes": %d}, "pkgs": {"files": %d, "bytes": %d}, "app": {"files": %d, "bytes": %d}}}\n' \
    "$files" "$bytes" "${lf[base]:-0}" "${lb[base]:-0}" "${lf[pkgs]:-0}" "${lb[pkgs]:-0}" "${lf[app]:-0}" "${lb[app]:-0}" >"$dir/startup.json"
  rm -rf --one-file-system "$run"
}

# trace_ranges APP DIR: runs the app in a chroot of the image's rootfs
# under socikit-trace (BENCH_TRACE), the way the socikit frontend's
# profiling step runs it in the build (tracer and output under /.socikit*,
# excluded; until the ready line), and writes startup-ranges.json.
trace_ranges() {
  local app=$1 dir=$2 run=$2/.trace
  local ctx=$dir/context n=${#MOUNTS[@]} cmd=()
  mapfile -t cmd < <(app_cmd "$app")
  rm -rf --one-file-system "$run"
  mkdir -p "$run/applayer"
  cp -al "$ctx/app" "$run/applayer/app"
  overlay "$run/merged" "$run/upper" "$run/work" "$run/applayer" "$ctx/pkgs" "$ctx/base"
  chroot_mounts "$run/merged"
  mkdir -p "$run/merged/.socikit" "$run/merged/.socikit-out"
  cp "$BENCH_TRACE" "$run/merged/.socikit/socikit-trace"
  chmod 0755 "$run/merged/.socikit/socikit-trace"
  env -i "${IMAGE_ENV[@]}" timeout 600 /usr/sbin/chroot "$run/merged" /.socikit/socikit-trace \
    --ready "$READY" --timeout 120s --out /.socikit-out/profile.json --status /.socikit-out/status.json \
    --exclude /.socikit --exclude /.socikit-out -- "${cmd[@]}" >"$run/stdout" 2>"$run/stderr" ||
    { cat "$run/stderr" >&2; die "$app: socikit-trace failed in the chroot"; }
  grep -q '"ok":true' "$run/merged/.socikit-out/status.json" ||
    { cat "$run/stderr" "$run/merged/.socikit-out/status.json" >&2; die "$app: socikit-trace made no profile"; }
  cp "$run/merged/.socikit-out/profile.json" "$dir/startup-ranges.json.tmp"
  grep '^socikit-trace:' "$run/stderr" >&2 || true
  while [ ${#MOUNTS[@]} -gt "$n" ]; do
    umount -R "${MOUNTS[-1]}"
    unset 'MOUNTS[-1]'
  done
  mv "$dir/startup-ranges.json.tmp" "$dir/startup-ranges.json"
  rm -rf --one-file-system "$run"
}

# ---------------------------------------------------------------- main
apt_install debootstrap strace attr binutils
if [[ " ${APPS[*]} " == *" jvm "* ]] && ! javac -version 2>&1 | grep -q '^javac 17\.'; then
  apt_install openjdk-17-jdk-headless
  export PATH="/usr/lib/jvm/java-17-openjdk-amd64/bin:$PATH"
fi

mkdir -p "$CACHE/rootfs"
exec 9>"$CACHE/.lock"
flock 9 || die "cannot lock $CACHE/.lock"

MIRROR=$(apt_mirror)
BASE=$CACHE/rootfs/base
base_key=$(key "$SUITE" "$MIRROR" "$(declare -f build_base)")
if fresh "$BASE.stamp" "$base_key"; then
  log "base: cached ($BASE)"
else
  log "base: debootstrap --variant=minbase $SUITE from $MIRROR"
  t=$(now)
  rm -f "$BASE.stamp"
  build_base "$BASE" "$MIRROR"
  echo "$base_key" >"$BASE.stamp"
  log "base: done in $(took "$t") ($(du -sh "$BASE" | cut -f1))"
fi

for app in "${APPS[@]}"; do
  dir=$CACHE/$app
  mkdir -p "$dir"
  pkgs_key=$(key "$base_key" "$(app_packages "$app")" "${IMAGE_ENV[*]}" \
    "$(declare -f build_pkgs clean_upper overlay chroot_mounts)")
  if fresh "$dir/pkgs.stamp" "$pkgs_key"; then
    log "$app: packages cached"
  else
    log "$app: installing $(app_packages "$app")"
    t=$(now)
    rm -f "$dir/pkgs.stamp" "$dir/context.stamp"
    build_pkgs "$app" "$BASE" "$dir"
    echo "$pkgs_key" >"$dir/pkgs.stamp"
    log "$app: packages done in $(took "$t") ($(du -sh "$dir/pkgs-upper" | cut -f1))"
  fi
  extra=""
  [ "$app" != jvm ] || extra=$(javac -version 2>&1)
  ctx_key=$(key "$pkgs_key" "$READY" "${IMAGE_ENV[*]}" "$extra" "$(app_cmd "$app")" \
    "$(declare -f "write_app_$app" build_context profile overlay chroot_mounts)")
  if fresh "$dir/context.stamp" "$ctx_key"; then
    log "$app: context cached"
  else
    log "$app: context and start-up profile"
    t=$(now)
    rm -f "$dir/context.stamp" "$dir/ranges.stamp" "$dir/startup-ranges.json"
    build_context "$app" "$BASE" "$dir"
    echo "$ctx_key" >"$dir/context.stamp"
    log "$app: context done in $(took "$t"): start-up $(cat "$dir/startup.json")"
  fi
  if [ -n "${BENCH_TRACE:-}" ]; then
    ranges_key=$(key "$ctx_key" "$(sha256sum <"$BENCH_TRACE")" "$(declare -f trace_ranges overlay chroot_mounts)")
    if fresh "$dir/ranges.stamp" "$ranges_key"; then
      log "$app: byte ranges cached"
    else
      log "$app: byte ranges read at start-up (socikit-trace)"
      t=$(now)
      rm -f "$dir/ranges.stamp"
      trace_ranges "$app" "$dir"
      echo "$ranges_key" >"$dir/ranges.stamp"
      log "$app: byte ranges done in $(took "$t")"
    fi
  fi
done

for app in "${APPS[@]}"; do
  echo "$CACHE/$app"
done
