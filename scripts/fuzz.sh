#!/usr/bin/env bash
# Runs every Go fuzz target of the root module for FUZZTIME (default 10s)
# each: CI's short run. Failing inputs are written to the package's
# testdata/fuzz/FuzzX, and every run starts from the corpus committed there.
#
#   scripts/fuzz.sh                      # CI: 10s per target
#   scripts/fuzz.sh --long               # outside CI: 10m per target
#   scripts/fuzz.sh --long --time 5m --parallel 1 --save-corpus [--run REGEXP]
#
# --long      the long budget (10m per target unless --time says otherwise).
# --time D    the budget per target (a Go duration, or Nx for N executions).
# --parallel N  fuzz workers per target (go test -parallel; default GOMAXPROCS).
# --run RE    only the targets whose name matches RE (grep -E).
# --save-corpus  after each target, copy the inputs the run found interesting
#             (go's cache, $GOCACHE/fuzz) into testdata/fuzz/FuzzX: the smallest
#             first, at most 2 KiB each, 32 files and 16 KiB per target, so the committed
#             corpora stay small.
# A summary line per target (execs, new interesting inputs, the corpus size)
# is printed and appended to $FUZZ_SUMMARY if set.
#
# Go 1.26's fuzz coordinator can report a bare "context deadline exceeded"
# when -fuzztime ends while a worker is busy (golang/go#75804, fixed in Go
# 1.27), with no failing input. Such a run is retried once; a run that
# writes a failing input, or fails again, fails the script. (Count budgets,
# -fuzztime=Nx, avoid the race too, but the targets' speeds differ by three
# orders of magnitude.)
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
fuzztime=${FUZZTIME:-10s}
parallel=
only=.
save=
while [ $# -gt 0 ]; do
  case $1 in
  --long) [ -n "${timeset:-}" ] || fuzztime=10m ;;
  --time) fuzztime=$2; timeset=1; shift ;;
  --parallel) parallel=$2; shift ;;
  --run) only=$2; shift ;;
  --save-corpus) save=1 ;;
  *) echo "usage: $0 [--long] [--time D] [--parallel N] [--run REGEXP] [--save-corpus]" >&2; exit 2 ;;
  esac
  shift
done
cache=$(go env GOCACHE)/fuzz
log=$(mktemp /tmp/fuzz.XXXXXX.log)
trap 'rm -f "$log"' EXIT
status=0

# save_corpus PKGDIR FN: the smallest cached interesting inputs not yet in
# testdata, within the size caps above.
save_corpus() {
  local dir=$1 fn=$2 src dst budget=16384 files=32 f size
  src=$cache/$(go list "./$dir")/$fn
  dst=$dir/testdata/fuzz/$fn
  [ -d "$src" ] || return 0
  mkdir -p "$dst"
  budget=$((budget - $(find "$dst" -type f -printf '%s\n' | awk '{s+=$1} END {print s+0}')))
  files=$((files - $(find "$dst" -type f | wc -l)))
  while read -r size f; do
    [ "$files" -gt 0 ] || break
    [ "$size" -le 2048 ] && [ "$size" -le "$budget" ] || continue
    [ -e "$dst/$(basename "$f")" ] && continue
    cp "$f" "$dst/"
    budget=$((budget - size))
    files=$((files - 1))
  done < <(find "$src" -type f -printf '%s %p\n' | sort -n)
}

while IFS= read -r file; do
  dir=$(dirname "$file")
  pkg=./$dir
  for fn in $(grep -oE '^func (Fuzz[A-Za-z0-9_]+)\(' "$file" | sed -E 's/^func (Fuzz[A-Za-z0-9_]+)\(/\1/'); do
    [[ $fn =~ $only ]] || continue
    echo "-- $pkg $fn ($fuzztime)"
    for attempt in 1 2; do
      if go test -run='^$' -fuzz="^${fn}\$" -fuzztime="$fuzztime" ${parallel:+-parallel="$parallel"} "$pkg" >"$log" 2>&1; then
        # The last progress line: elapsed, execs, new interesting (total).
        last=$(grep -E '^fuzz: elapsed' "$log" | tail -n 1 || true)
        seeds=$( (find "$dir/testdata/fuzz/$fn" -type f 2>/dev/null || true) | wc -l)
        line="$pkg $fn: ${last#fuzz: } (committed corpus: $seeds)"
        echo "   $line"
        [ -z "${FUZZ_SUMMARY:-}" ] || echo "$line" >>"$FUZZ_SUMMARY"
        [ -z "$save" ] || save_corpus "$dir" "$fn"
        break
      fi
      if [ $attempt = 1 ] && grep -q 'context deadline exceeded' "$log" &&
        ! grep -qE 'Failing input written|panic:|--- FAIL: .*\(.*\)$' <(grep -v 'context deadline exceeded' "$log" | grep -v "^--- FAIL: ${fn} "); then
        echo "   (go fuzz coordinator's deadline race, golang/go#75804: no failing input; retrying once)"
        continue
      fi
      cat "$log"
      [ -z "${FUZZ_SUMMARY:-}" ] || echo "$pkg $fn: FAILED (see the failing input in $dir/testdata/fuzz/$fn)" >>"$FUZZ_SUMMARY"
      status=1
      break
    done
  done
done < <(git ls-files --cached --others --exclude-standard -- '*_test.go' | grep -v '^integration/' | xargs grep -l '^func Fuzz' | sort)
exit $status
