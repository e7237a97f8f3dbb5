#!/usr/bin/env bash
# Starts a Docker Engine (Debian's docker.io: dockerd 20.10 with the
# containerd it manages) with all of its state under a directory of its own,
# and prints shell assignments for eval:
#
#   eval "$(scripts/docker-start.sh [DIR])"
#   docker -H "$DOCKER_HOST" info          # or: export DOCKER_HOST
#   scripts/docker-stop.sh [--rm] "$DOCKER_DIR"
#
# Installs docker.io (as root) when dockerd is missing, with a policy-rc.d
# that keeps the package from starting the system's daemon (only when the
# machine has none). DIR defaults to a new /tmp/socikit-docker.XXXXXX and
# holds everything the daemon writes:
#   DIR/docker.sock  the API socket (--host unix://...)
#   DIR/data         --data-root (images, containers, volumes)
#   DIR/exec         --exec-root (its containerd's socket and state)
#   DIR/docker.pid   --pidfile
#   DIR/daemon.json  --config-file: insecure-registries from
#                    DOCKERD_INSECURE_REGISTRIES (host:port, space or comma
#                    separated; 127.0.0.0/8 is insecure anyway), and the
#                    daemon's key under DIR instead of /etc/docker
#   DIR/dockerd.log  its log
# The daemon touches no host network: no docker0 bridge and no iptables
# rules (--bridge=none --iptables=false): containers run with --network host
# or --network none (a buildx docker-container builder: --driver-opt
# network=host). DOCKERD_FLAGS adds flags.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
if [ "$(id -u)" != 0 ]; then
  echo "docker-start.sh: dockerd needs root" >&2
  exit 1
fi
command -v curl >/dev/null || apt_install curl >&2
if ! command -v dockerd >/dev/null; then
  rc=/usr/sbin/policy-rc.d
  added=
  if [ ! -e $rc ]; then
    printf '#!/bin/sh\nexit 101\n' >$rc && chmod +x $rc && added=1
  fi
  apt_install docker.io >&2 || { [ -z "$added" ] || rm -f $rc; echo "docker-start.sh: cannot install docker.io" >&2; exit 1; }
  [ -z "$added" ] || rm -f $rc
fi

dir=${1:-$(mktemp -d /tmp/socikit-docker.XXXXXX)}
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
sock=$dir/docker.sock
# Capabilities the daemon would give a privileged container that this
# machine's bounding set lacks (here: CAP_SYS_RESOURCE). runc fails on them
# ("unable to apply caps: operation not permitted"), and the buildx
# docker-container driver always makes its builder privileged. When some are
# missing, a runc wrapper, DIR/runc-capfilter, becomes the default runtime:
# it deletes those names from the OCI spec (create) or process (exec) runc is
# given, then runs runc.
caps=(chown dac_override dac_read_search fowner fsetid kill setgid setuid setpcap linux_immutable
  net_bind_service net_broadcast net_admin net_raw ipc_lock ipc_owner sys_module sys_rawio sys_chroot
  sys_ptrace sys_pacct sys_admin sys_boot sys_nice sys_resource sys_time sys_tty_config mknod lease
  audit_write audit_control setfcap mac_override mac_admin syslog wake_alarm block_suspend audit_read
  perfmon bpf checkpoint_restore)
bnd=$((16#$(awk '$1 == "CapBnd:" {print $2}' /proc/self/status)))
missing=()
for i in "${!caps[@]}"; do
  (( (bnd >> i) & 1 )) || missing+=("CAP_${caps[$i]^^}")
done
runtime=
if [ ${#missing[@]} -gt 0 ]; then
  runtime=$dir/runc-capfilter
  {
    echo '#!/bin/sh'
    echo "# Written by scripts/docker-start.sh: runc without ${missing[*]} (not in this machine's bounding set)."
    printf 'sedexpr='\''%s'\''\n' "$(for c in "${missing[@]}"; do printf 's/"%s",//g;s/,"%s"//g;s/\\["%s"\\]/[]/g;' "$c" "$c" "$c"; done)"
    cat <<'WRAP'
prev=
for a in "$@"; do
  case "$prev" in
  --bundle|-b) [ -f "$a/config.json" ] && sed -i "$sedexpr" "$a/config.json" ;;
  --process|-p) [ -f "$a" ] && sed -i "$sedexpr" "$a" ;;
  esac
  case "$a" in
  --bundle=*) f="${a#--bundle=}/config.json"; [ -f "$f" ] && sed -i "$sedexpr" "$f" ;;
  --process=*) f="${a#--process=}"; [ -f "$f" ] && sed -i "$sedexpr" "$f" ;;
  esac
  prev=$a
done
exec /usr/sbin/runc "$@"
WRAP
  } >"$runtime"
  chmod +x "$runtime"
  echo "docker-start.sh: ${missing[*]} not in the capability bounding set: default runtime $runtime drops them" >&2
fi

{
  printf '{\n  "insecure-registries": ['
  sep=
  for r in ${DOCKERD_INSECURE_REGISTRIES:+${DOCKERD_INSECURE_REGISTRIES//,/ }}; do
    printf '%s"%s"' "$sep" "$r"
    sep=', '
  done
  printf '],\n'
  if [ -n "$runtime" ]; then
    printf '  "runtimes": {"runc-capfilter": {"path": "%s"}},\n  "default-runtime": "runc-capfilter",\n' "$runtime"
  fi
  printf '  "deprecated-key-path": "%s"\n}\n' "$dir/key.json"
} >"$dir/daemon.json"

# Debian's containerd 1.6 and runc, whatever else is on PATH (dockerd 20.10
# starts the containerd it finds there).
PATH=/usr/sbin:/usr/bin:/sbin:/bin setsid dockerd \
  --config-file "$dir/daemon.json" \
  --data-root "$dir/data" --exec-root "$dir/exec" --pidfile "$dir/docker.pid" \
  --host "unix://$sock" \
  --bridge=none --iptables=false --ip-masq=false \
  ${DOCKERD_FLAGS:-} >"$dir/dockerd.log" 2>&1 </dev/null &
pid=$!
for _ in $(seq 1 300); do
  if [ -S "$sock" ] && curl -fs --unix-socket "$sock" http://docker/_ping >/dev/null 2>&1; then
    echo "DOCKER_HOST=unix://$sock"
    echo "DOCKER_DIR=$dir"
    exit 0
  fi
  if ! kill -0 $pid 2>/dev/null; then
    echo "docker-start.sh: dockerd exited; its log:" >&2
    tail -30 "$dir/dockerd.log" >&2
    exit 1
  fi
  sleep 0.1
done
echo "docker-start.sh: dockerd did not answer on $sock within 30 s; log in $dir/dockerd.log" >&2
exit 1
