#!/usr/bin/env bash
# Runs golangci-lint (pinned below, configured by .golangci.yml: depguard's
# import rules, errcheck, govet, ineffassign, staticcheck, unused, gofmt)
# over every module of go.work, integration-tagged files included, in one
# run. Installs golangci-lint with go install from the module proxy into a
# cache directory the first time (a few minutes on 2 cores; later runs reuse
# it). Also checks that go.work lists every module of the tree but those it
# leaves out on purpose. Needs no root. scripts/test.sh runs it after go vet;
# extra arguments go to golangci-lint run (e.g. --fix, or --new-from-rev=HEAD).
set -euo pipefail
cd "$(dirname "$0")/.."
export GOWORK=$PWD/go.work

GOLANGCI_LINT_VERSION=v2.15.0
dir=${GOLANGCI_LINT_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/socikit/golangci-lint-$GOLANGCI_LINT_VERSION}
lint=$dir/golangci-lint
if [ ! -x "$lint" ]; then
  echo "== installing golangci-lint $GOLANGCI_LINT_VERSION into $dir"
  mkdir -p "$dir"
  # pkg@version ignores the workspace and the current module.
  GOBIN=$dir go install "github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$GOLANGCI_LINT_VERSION"
fi

# Modules outside the workspace, on purpose (go.work says why). Any other
# go.mod must be listed in go.work.
outside=(cmd/buildkitd scripts/tools/buildx scripts/tools/containerd scripts/tools/soci-snapshotter)
root=$PWD
mapfile -t mods < <(go list -m -f '{{.Dir}}')
missing=()
while IFS= read -r gomod; do
  d=$(dirname "${gomod#./}")
  [ "$d" = . ] && d=$root || d=$root/$d
  printf '%s\n' "${mods[@]}" | grep -qxF "$d" && continue
  printf '%s\n' "${outside[@]/#/$root/}" | grep -qxF "$d" && continue
  missing+=("${d#"$root"/}")
done < <(find . -name go.mod -not -path './.git/*' -not -path './bin/*' -not -path '*/testdata/*' -not -path '*/vendor/*')
if [ ${#missing[@]} -gt 0 ]; then
  echo "lint: modules not in go.work: ${missing[*]} (add them with go work use, or to the outside list here and in go.work's comment)" >&2
  exit 1
fi

patterns=()
for m in "${mods[@]}"; do
  rel=${m#"$root"}
  # third_party/: others' code (go-fuse with our patch), vetted, not linted as ours.
  case $rel in /third_party/*) continue ;; esac
  patterns+=(".$rel/...")
done
echo "== golangci-lint $GOLANGCI_LINT_VERSION: ${patterns[*]}"
"$lint" run "$@" "${patterns[@]}"
