#!/usr/bin/env bash
# Shaped registry for the benchmark harness (integration/harness).
#
#   bench-net.sh up   [--rate 200mbit] [--latency 20ms] [--burst BYTES] [--dir DIR]
#   bench-net.sh down [--dir DIR]
#   bench-net.sh status [--dir DIR]
#
# up: creates the network namespace socikit-bench and a veth pair, host side
#   sbench0 10.200.0.1/24, namespace side sbench1 10.200.0.2/24; limits the
#   traffic from the registry to the host with tc tbf on sbench1's egress
#   (--rate, in tc units: kbit, mbit or gbit; 0 = unshaped; host->registry
#   traffic, i.e. pushes, is never shaped); builds bin/bench-registry and starts
#   it inside the namespace (nsenter --net, not `ip netns exec`, which would
#   give it a private mount namespace) on 10.200.0.2:5000 with --latency added
#   before every HTTP request (netem is not in this kernel); waits until
#   GET http://10.200.0.2:5000/v2/ answers and prints the settings.
#   Counters: GET http://10.200.0.2:5000/_bench/stats, POST .../_bench/reset.
#   Running up again re-applies the rate (the registry keeps its content) and
#   restarts the registry only if --latency changed (its content is lost then).
# down: stops the registry and deletes the namespace and the veth pair.
# status: prints the qdisc counters and the registry's stats.
# Both up and down are idempotent. Pid file and log are in --dir (default
# /run/socikit-bench). Needs root; installs iproute2 and curl if missing.
#
# The tbf burst defaults to 4 ms of traffic at --rate (at least 64 KiB); with
# a 50 ms queue, 200mbit gives ~190 Mbit/s of TCP goodput on this link.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
ROOT=$PWD
BIN=${BIN:-$ROOT/bin}

NS=socikit-bench
HOST_IF=sbench0
NS_IF=sbench1
HOST_IP=10.200.0.1
NS_IP=10.200.0.2
PORT=5000
URL=http://$NS_IP:$PORT

usage() { sed -n '4,6s/^# *//p' "$0" >&2; exit 2; }
die() { echo "bench-net.sh: $*" >&2; exit 1; }

cmd=${1:-}
[ $# -gt 0 ] && shift
RATE=200mbit LATENCY=20ms BURST='' DIR=/run/socikit-bench
while [ $# -gt 0 ]; do
  case $1 in
    --rate) RATE=${2:?--rate needs a value}; shift 2 ;;
    --rate=*) RATE=${1#*=}; shift ;;
    --latency) LATENCY=${2:?--latency needs a value}; shift 2 ;;
    --latency=*) LATENCY=${1#*=}; shift ;;
    --burst) BURST=${2:?--burst needs a value}; shift 2 ;;
    --burst=*) BURST=${1#*=}; shift ;;
    --dir) DIR=${2:?--dir needs a value}; shift 2 ;;
    --dir=*) DIR=${1#*=}; shift ;;
    -h | --help) usage ;;
    *) echo "bench-net.sh: unknown argument $1" >&2; usage ;;
  esac
done
[ "$(id -u)" = 0 ] || die "needs root (network namespaces, tc)"
PIDFILE=$DIR/bench-registry.pid
ARGSFILE=$DIR/bench-registry.args
LOG=$DIR/bench-registry.log

# rate_bits RATE: RATE (N[.N]kbit|mbit|gbit, or 0) in bit/s.
rate_bits() {
  awk -v r="$1" 'BEGIN {
    if (r == "0") { print 0; exit }
    if (!match(r, /^[0-9]+(\.[0-9]+)?[kmg]bit$/)) exit 1
    n = r + 0; u = substr(r, length(r) - 3, 1)
    printf "%d\n", n * (u == "k" ? 1e3 : u == "m" ? 1e6 : 1e9)
  }' || die "bad --rate $1: want e.g. 200mbit, 1gbit or 0"
}

# registry_pid: the pid of our running bench-registry, if any.
registry_pid() {
  local pid
  [ -f "$PIDFILE" ] || return 1
  pid=$(cat "$PIDFILE")
  [ -n "$pid" ] && tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline" | grep -q bench-registry || return 1
  echo "$pid"
}

stop_registry() {
  local pid
  if pid=$(registry_pid); then
    kill -TERM "$pid"
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid"
    echo "bench-net: stopped bench-registry (pid $pid)"
  fi
  rm -f "$PIDFILE" "$ARGSFILE"
}

net_up() {
  [ -e /run/netns/$NS ] || ip netns add $NS
  ip link show $HOST_IF >/dev/null 2>&1 || ip link add $HOST_IF type veth peer name $NS_IF netns $NS
  ip addr replace $HOST_IP/24 dev $HOST_IF
  ip link set $HOST_IF up
  ip -n $NS addr replace $NS_IP/24 dev $NS_IF
  ip -n $NS link set $NS_IF up
  ip -n $NS link set lo up
}

# shape: tbf on the registry's egress, or none for --rate 0.
shape() {
  local bits=$1
  if [ "$bits" = 0 ]; then
    ip netns exec $NS tc qdisc del dev $NS_IF root 2>/dev/null || true
    return
  fi
  [ -n "$BURST" ] || BURST=$(( bits / 8 / 250 > 65536 ? bits / 8 / 250 : 65536 ))
  ip netns exec $NS tc qdisc replace dev $NS_IF root tbf rate "$RATE" burst "$BURST" latency 50ms
}

start_registry() {
  local args=(--addr "$NS_IP:$PORT" --latency "$LATENCY")
  if registry_pid >/dev/null && [ "$(cat "$ARGSFILE" 2>/dev/null)" = "${args[*]}" ]; then
    return
  fi
  if registry_pid >/dev/null; then
    echo "bench-net: registry settings changed: restarting it (its content is lost)"
  fi
  stop_registry
  mkdir -p "$DIR"
  setsid nsenter --net=/run/netns/$NS "$BIN/bench-registry" "${args[@]}" >>"$LOG" 2>&1 </dev/null &
  echo $! >"$PIDFILE"
  echo "${args[*]}" >"$ARGSFILE"
  for _ in $(seq 1 200); do
    curl -sf --noproxy '*' -o /dev/null --max-time 1 "$URL/v2/" && return
    registry_pid >/dev/null || break
    sleep 0.05
  done
  tail -n 20 "$LOG" >&2 || true
  stop_registry
  die "bench-registry did not answer on $URL/v2/ (log: $LOG)"
}

case $cmd in
  up)
    bits=$(rate_bits "$RATE")
    apt_install iproute2 curl
    (cd integration/harness && go build -o "$BIN/bench-registry" ./cmd/bench-registry)
    net_up
    shape "$bits"
    start_registry
    if [ "$bits" = 0 ]; then shaping="unshaped"; else shaping="tbf rate $RATE burst $BURST latency 50ms"; fi
    echo "bench-net: netns $NS: host $HOST_IF $HOST_IP/24 <-> $NS_IF $NS_IP/24"
    echo "bench-net: registry->host: $shaping; host->registry: unshaped"
    echo "bench-net: registry $URL (pid $(registry_pid)), latency $LATENCY per HTTP request, log $LOG"
    echo "bench-net: stats GET $URL/_bench/stats, reset POST $URL/_bench/reset"
    ;;
  down)
    stop_registry
    if [ -e /run/netns/$NS ]; then ip netns del $NS; fi
    if ip link show $HOST_IF >/dev/null 2>&1; then ip link del $HOST_IF; fi
    echo "bench-net: down"
    ;;
  status)
    [ -e /run/netns/$NS ] || { echo "bench-net: down"; exit 1; }
    ip netns exec $NS tc -s qdisc show dev $NS_IF
    if pid=$(registry_pid); then
      echo "bench-registry pid $pid: $(cat "$ARGSFILE" 2>/dev/null)"
      curl -sf --noproxy '*' --max-time 2 "$URL/_bench/stats" || echo "stats: no answer"
    else
      echo "bench-registry: not running"
      exit 1
    fi
    ;;
  *) usage ;;
esac
