#!/usr/bin/env bash
# Builds helm, promtool, prometheus and kube-score from Go modules into a cache outside the clone, keyed by
# version, and reuses them. Prints the bin directory on stdout; progress on stderr.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=hack/versions.env
source "$here/versions.env"

cache_root=${TFOPS_CACHE:-$HOME/.cache/tfops}
dest="$cache_root/tools/helm-${HELM_VERSION}_prometheus-${PROMETHEUS_VERSION}"
log() { printf '[tools %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
export CGO_ENABLED=0 GOTOOLCHAIN=local GOFLAGS=-mod=mod

build() {
  local name=$1 package=$2
  if [[ -x "$dest/bin/$name" ]]; then
    return
  fi
  log "building $name from $package (first run only, a few minutes)"
  local start
  start=$(date +%s)
  mkdir -p "$dest/partial"
  GOBIN="$dest/partial" go install "$package"
  mkdir -p "$dest/bin"
  mv "$dest/partial/$name" "$dest/bin/$name"
  log "built $name in $(($(date +%s) - start))s"
}

# Prometheus' go.mod has replace directives, which `go install pkg@version`
# refuses: build promtool (rule tests) and prometheus (the memory guard's
# Prometheus source in tests) in a wrapper module that repeats them.
build_prometheus() {
  local name=$1
  if [[ -x "$dest/bin/$name" ]]; then
    return
  fi
  log "building $name from github.com/prometheus/prometheus@$PROMETHEUS_VERSION (first run only)"
  local start work gomod
  start=$(date +%s)
  work="$dest/prometheus-src"
  mkdir -p "$work" "$dest/bin"
  (
    cd "$work"
    if [[ ! -f go.sum ]]; then
      rm -f go.mod
      go mod init local/tfops-prometheus >/dev/null 2>&1
      gomod=$(go mod download -json "github.com/prometheus/prometheus@$PROMETHEUS_VERSION" |
        python3 -c 'import json,sys;print(json.load(sys.stdin)["GoMod"])')
      awk '$1=="replace"{print $2"="$4"@"$5}' "$gomod" | while read -r rule; do
        go mod edit -replace="$rule"
      done
      go mod edit -require="github.com/prometheus/prometheus@$PROMETHEUS_VERSION"
      printf '//go:build tools\n\npackage tools\n\nimport (\n\t_ "github.com/prometheus/prometheus/cmd/promtool"\n\t_ "github.com/prometheus/prometheus/cmd/prometheus"\n)\n' > tools.go
      go mod tidy -e >/dev/null 2>&1 || true
    fi
    go build -o "$dest/bin/$name.partial" "github.com/prometheus/prometheus/cmd/$name"
    mv "$dest/bin/$name.partial" "$dest/bin/$name"
  )
  log "built $name in $(($(date +%s) - start))s"
}

# kube-score in a directory of its own version, linked into the bin directory,
# so a new kube-score does not rebuild helm and Prometheus.
build_kube_score() {
  local own="$cache_root/tools/kube-score-$KUBE_SCORE_VERSION"
  if [[ ! -x "$own/kube-score" ]]; then
    log "building kube-score from github.com/zegl/kube-score@$KUBE_SCORE_VERSION (first run only)"
    local start
    start=$(date +%s)
    mkdir -p "$own/partial"
    GOBIN="$own/partial" go install "github.com/zegl/kube-score/cmd/kube-score@$KUBE_SCORE_VERSION"
    mv "$own/partial/kube-score" "$own/kube-score"
    log "built kube-score in $(($(date +%s) - start))s"
  fi
  mkdir -p "$dest/bin"
  ln -sfn "$own/kube-score" "$dest/bin/kube-score"
}

build helm "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
build_prometheus promtool
build_prometheus prometheus
build_kube_score
echo "$dest/bin"
