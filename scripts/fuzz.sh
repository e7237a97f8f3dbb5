#!/usr/bin/env bash
# Runs every Go fuzz target of the root module for FUZZTIME (default 10s)
# each. Failing inputs are written to the package's testdata/fuzz.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
fuzztime=${FUZZTIME:-10s}
status=0
while IFS= read -r file; do
  pkg=./$(dirname "$file")
  for fn in $(grep -oE '^func (Fuzz[A-Za-z0-9_]+)\(' "$file" | sed -E 's/^func (Fuzz[A-Za-z0-9_]+)\(/\1/'); do
    echo "-- $pkg $fn"
    if ! go test -run='^$' -fuzz="^${fn}\$" -fuzztime="$fuzztime" "$pkg" >/tmp/fuzz.$$.log 2>&1; then
      cat /tmp/fuzz.$$.log
      status=1
    else
      tail -n 1 /tmp/fuzz.$$.log
    fi
  done
done < <(git ls-files --cached --others --exclude-standard -- '*_test.go' | grep -v '^integration/' | xargs grep -l '^func Fuzz' | sort)
rm -f /tmp/fuzz.$$.log
exit $status
