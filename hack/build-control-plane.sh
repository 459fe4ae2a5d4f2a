#!/usr/bin/env bash
# Builds the local Kubernetes control plane from Go modules into a cache outside
# the clone, keyed by the pinned versions, and reuses whatever is already there.
# Our machines reach no container registry or release download, so every binary
# comes from the Go module proxy (docs/local-control-plane.md).
# Prints the cache directory on stdout; progress goes to stderr.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=hack/versions.env
source "$here/versions.env"

cache_root=${TFOPS_CACHE:-$HOME/.cache/tfops}
key="k8s-${KUBERNETES_VERSION}_etcd-${ETCD_VERSION}_kwok-${KWOK_VERSION}_ms-${METRICS_SERVER_VERSION}"
dest="$cache_root/control-plane/$key"

if [[ -f "$dest/.complete" ]]; then
  echo "$dest"
  exit 0
fi

log() { printf '[control-plane %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
log "building into $dest (first run only: about 6-10 min on 2 cores, later runs reuse it)"
start=$(date +%s)

pkgs=(
  k8s.io/kubernetes/cmd/kube-apiserver
  k8s.io/kubernetes/cmd/kube-controller-manager
  k8s.io/kubernetes/cmd/kube-scheduler
  k8s.io/kubernetes/cmd/kubectl
  go.etcd.io/etcd/server/v3
  sigs.k8s.io/kwok/cmd/kwok
  sigs.k8s.io/metrics-server/cmd/metrics-server
)
binary_name() { local n; n=$(basename "$1"); [[ $n == v3 ]] && n=etcd; echo "$n"; }

work="$dest/src"
mkdir -p "$work" "$dest/bin"
cd "$work"
export CGO_ENABLED=0 GOFLAGS=-mod=mod GOTOOLCHAIN=local

# One wrapper module for every binary: kubernetes, kwok and metrics-server then
# resolve to the same k8s.io library versions and share compiled packages.
if [[ ! -f go.sum ]]; then
  rm -f go.mod
  go mod init local/tfops-control-plane >/dev/null 2>&1
  staging="v0.${KUBERNETES_VERSION#v1.}"
  log "resolving k8s.io/kubernetes@$KUBERNETES_VERSION with staging modules at $staging"
  # kubernetes requires its staging modules at v0.0.0 and replaces them with
  # ./staging paths; point each at its published version instead.
  gomod=$(go mod download -json "k8s.io/kubernetes@$KUBERNETES_VERSION" | python3 -c 'import json,sys;print(json.load(sys.stdin)["GoMod"])')
  for m in $({ awk '$1~/^k8s\.io\// && $2=="v0.0.0"{print $1}' "$gomod"; awk '$2=="=>" && $3~/^\.\/staging/{print $1}' "$gomod"; } | sort -u); do
    go mod edit -replace="$m=$m@$staging"
  done
  go mod edit -require="k8s.io/kubernetes@$KUBERNETES_VERSION" \
    -require="go.etcd.io/etcd/server/v3@$ETCD_VERSION" \
    -require="sigs.k8s.io/kwok@$KWOK_VERSION" \
    -require="sigs.k8s.io/metrics-server@$METRICS_SERVER_VERSION"
  { printf '//go:build tools\n\npackage tools\n\nimport (\n'
    for p in "${pkgs[@]}"; do printf '\t_ "%s"\n' "$p"; done
    printf ')\n'; } > tools.go
  log "downloading modules"
  # -e: tidy also walks the tests of dependencies, and one of those (in
  # prometheus, via metrics-server) has an ambiguous import that no binary uses.
  go mod tidy -e >tidy.log 2>&1
  go mod download
fi

minor=${KUBERNETES_VERSION#v1.}
minor=${minor%%.*}
ldflags="-s -w"
for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  ldflags="$ldflags -X $p.gitVersion=$KUBERNETES_VERSION -X $p.gitMajor=1 -X $p.gitMinor=$minor -X $p.gitTreeState=clean"
done

n=0
for p in "${pkgs[@]}"; do
  n=$((n + 1))
  name=$(binary_name "$p")
  if [[ -x "$dest/bin/$name" ]]; then
    log "[$n/${#pkgs[@]}] $name already built"
    continue
  fi
  log "[$n/${#pkgs[@]}] building $name (elapsed $(( $(date +%s) - start ))s)"
  go build -trimpath -ldflags "$ldflags" -o "$dest/bin/$name.partial" "$p"
  mv "$dest/bin/$name.partial" "$dest/bin/$name"
done

# kwok reads its stages and metric definitions from files and its CRDs must be
# installed in the apiserver: keep the module's own YAML beside the binaries.
kwok_src=$(go list -m -f '{{.Dir}}' sigs.k8s.io/kwok)
rm -rf "$dest/kwok"
mkdir -p "$dest/kwok"
cp -r "$kwok_src/kustomize/crd/bases" "$dest/kwok/crds"
cp "$kwok_src/kustomize/stage/node/fast/node-initialize.yaml" \
   "$kwok_src/kustomize/stage/node/heartbeat-with-lease/node-heartbeat-with-lease.yaml" \
   "$kwok_src/kustomize/stage/pod/fast/"pod-*.yaml \
   "$kwok_src/kustomize/metrics/resource/metrics-resource.yaml" "$dest/kwok/"
chmod -R u+w "$dest/kwok"

cd "$dest"
rm -rf "$work"
date -u +%FT%TZ > "$dest/.complete"
log "done in $(( $(date +%s) - start ))s"
echo "$dest"
