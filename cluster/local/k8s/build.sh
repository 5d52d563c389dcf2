#!/usr/bin/env bash
# Builds the local Kubernetes control plane's binaries from the Go module proxy, once per version set, into a cache
# outside the checkout (a second clone reuses it): $RISKRAY_TOOLS_CACHE, default ~/.cache/riskray.
#   kube-apiserver, kube-controller-manager, kube-scheduler  k8s.io/kubernetes (its staging modules as published)
#   kwok                                                     sigs.k8s.io/kwok
#   kuberay-operator (+ its CRDs, the Gateway API's it uses) github.com/ray-project/kuberay/ray-operator
#   prometheus-operator (+ its CRDs)                         github.com/prometheus-operator/prometheus-operator
#   promtool (the operator's default Prometheus)             github.com/prometheus/prometheus
#   etcd, etcdctl                                            Debian's etcd-server/etcd-client, unpacked (no service)
# Prints the bin directory on its last line. Versions: versions.sh beside this file.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=versions.sh
. "$HERE/versions.sh"
CACHE="${RISKRAY_TOOLS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/riskray}/$TOOLS_KEY"
BIN="$CACHE/bin"
step() { printf '[bootstrap] %s\n' "$*" >&2; }
fail() { printf 'bootstrap: %s\n' "$*" >&2; exit 1; }

WANTED="$(bash "$HERE/versions.sh" --print)"  # a new pin builds what is missing only
if [ "$(cat "$CACHE/.complete" 2>/dev/null)" = "$WANTED" ]; then echo "$BIN"; exit 0; fi
command -v go >/dev/null || fail "Go is needed to build the local Kubernetes control plane (go.dev/dl)"
command -v kubectl >/dev/null || fail "kubectl is needed (kwok's stages are rendered with its kustomize)"
mkdir -p "$BIN" "$CACHE/crds" "$CACHE/logs"
exec 9>"$CACHE/.lock" && flock 9  # clones bootstrapping at once share this cache: one builds, the other waits
if [ "$(cat "$CACHE/.complete" 2>/dev/null)" = "$WANTED" ]; then echo "$BIN"; exit 0; fi
# a module's source folder, downloaded again if the Go module cache was cleaned since the binaries were built
moddir() { go mod download -json "$1@$2" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p'; }
copy() { mkdir -p "$2" && cp -f "$1"/*.yaml "$2"/ && chmod -R u+w "$2"; }
export GOFLAGS="-buildvcs=false" GOBIN="$BIN"

# etcd from Debian, unpacked like Prometheus (apt-get download + dpkg -x)
if ! [ -x "$BIN/etcd" ]; then
  step "unpacking etcd from Debian"
  work="$(mktemp -d)"
  (cd "$work" && apt-get download etcd-server etcd-client >"$CACHE/logs/apt-etcd.log" 2>&1) \
    || fail "could not download etcd-server from Debian; see $CACHE/logs/apt-etcd.log"
  for deb in "$work"/*.deb; do dpkg -x "$deb" "$work/x"; done
  cp "$work/x/usr/bin/etcd" "$work/x/usr/bin/etcdctl" "$BIN/"
  rm -rf "$work"
fi

# Kubernetes: `go install k8s.io/kubernetes/cmd/...` refuses (its go.mod replaces the staging modules with local
# folders), so a throwaway module requires it with each staging module replaced by its published v0.x twin.
if ! [ -x "$BIN/kube-apiserver" ] || ! [ -x "$BIN/kube-controller-manager" ] || ! [ -x "$BIN/kube-scheduler" ]; then
  step "building kube-apiserver, kube-controller-manager, kube-scheduler $KUBERNETES_VERSION (first time: ~10 min)"
  mod="$CACHE/src/kubernetes" && mkdir -p "$mod"
  staging="v0.${KUBERNETES_VERSION#v1.}"
  (set -e; cd "$mod" && cat >go.mod <<GOMOD
module riskray.local/kubernetes

go 1.23.0

require k8s.io/kubernetes $KUBERNETES_VERSION
GOMOD
   go mod download -json "k8s.io/kubernetes@$KUBERNETES_VERSION" >/dev/null
   gomod="$(go env GOMODCACHE)/cache/download/k8s.io/kubernetes/@v/$KUBERNETES_VERSION.mod"
   { echo; echo "replace ("
     sed -n '/^replace (/,/^)/p' "$gomod" | grep '=> ./staging/src/' \
       | sed -E "s#^\s*(\S+) => ./staging/src/\S+#\t\1 => \1 $staging#"
     echo ")"; } >>go.mod
   go get "k8s.io/kubernetes/cmd/kube-apiserver@$KUBERNETES_VERSION" "k8s.io/kubernetes/cmd/kube-controller-manager@$KUBERNETES_VERSION" \
     "k8s.io/kubernetes/cmd/kube-scheduler@$KUBERNETES_VERSION" >"$CACHE/logs/go-get.log" 2>&1 || fail "see $CACHE/logs/go-get.log"
   minor="${KUBERNETES_VERSION#v1.}" && minor="${minor%%.*}"
   pkg=k8s.io/component-base/version  # else the binaries say v0.0.0-master, which kubectl cannot parse
   ldflags="-X $pkg.gitVersion=$KUBERNETES_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
   ldflags="$ldflags -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
   for cmd in kube-apiserver kube-controller-manager kube-scheduler; do
     go build -ldflags "-s -w $ldflags" -o "$BIN/$cmd" "k8s.io/kubernetes/cmd/$cmd" >>"$CACHE/logs/go-build.log" 2>&1 \
       || fail "building $cmd failed; see $CACHE/logs/go-build.log"
   done) || fail "building Kubernetes failed; see $CACHE/logs"
fi

if ! [ -x "$BIN/kwok" ]; then
  step "building kwok $KWOK_VERSION"
  go install "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION" >"$CACHE/logs/kwok.log" 2>&1 || fail "see $CACHE/logs/kwok.log"
fi
# kwok's own "fast" stages (nodes Ready with leases, pods Running at once, Job pods completed), from its module
kubectl kustomize "$(moddir sigs.k8s.io/kwok "$KWOK_VERSION")/kustomize/stage/fast" >"$CACHE/kwok-stages.yaml.partial" \
  && mv "$CACHE/kwok-stages.yaml.partial" "$CACHE/kwok-stages.yaml" || fail "rendering kwok's stages failed"

if ! [ -x "$BIN/ray-operator" ]; then
  step "building the KubeRay operator $KUBERAY_VERSION"
  go install "github.com/ray-project/kuberay/ray-operator@$KUBERAY_VERSION" >"$CACHE/logs/kuberay.log" 2>&1 \
    || fail "see $CACHE/logs/kuberay.log"
fi
src="$(moddir github.com/ray-project/kuberay/ray-operator "$KUBERAY_VERSION")"
copy "$src/config/crd/bases" "$CACHE/crds/kuberay"
# the Gateway API at the version KubeRay builds against: its incremental upgrade (prod-incremental) makes a Gateway
# and an HTTPRoute
gateway="$(awk '$1 == "sigs.k8s.io/gateway-api" {print $2}' "$src/go.mod")"
gateway_src="$(moddir sigs.k8s.io/gateway-api "$gateway")" || fail "downloading the Gateway API $gateway failed"
mkdir -p "$CACHE/crds/gateway-api"
for kind in gatewayclasses gateways httproutes referencegrants; do
  cp -f "$gateway_src/config/crd/standard/gateway.networking.k8s.io_$kind.yaml" "$CACHE/crds/gateway-api/"
done
chmod -R u+w "$CACHE/crds/gateway-api"

if ! [ -x "$BIN/operator" ]; then
  # `go install` refuses it too (replace directives for its own sub-modules, which are published at the same version)
  step "building the Prometheus operator $PROMETHEUS_OPERATOR_VERSION"
  mod="$CACHE/src/prometheus-operator" && mkdir -p "$mod"
  (set -e; cd "$mod" && printf 'module riskray.local/prometheus-operator\n\ngo 1.24.0\n' >go.mod \
   && go get "github.com/prometheus-operator/prometheus-operator/cmd/operator@$PROMETHEUS_OPERATOR_VERSION" \
   && go build -ldflags "-s -w" -o "$BIN/operator" github.com/prometheus-operator/prometheus-operator/cmd/operator) \
    >"$CACHE/logs/prometheus-operator.log" 2>&1 || fail "see $CACHE/logs/prometheus-operator.log"
fi
src="$(moddir github.com/prometheus-operator/prometheus-operator "$PROMETHEUS_OPERATOR_VERSION")"
copy "$src/example/prometheus-operator-crd" "$CACHE/crds/prometheus-operator"

if ! "$BIN/promtool" --version 2>/dev/null | grep -q "version ${PROMTOOL_VERSION#v} "; then
  # Prometheus v3.X.Y is the Go module github.com/prometheus/prometheus v0.3XX.Y; its go.mod's one replace is kept
  step "building promtool $PROMTOOL_VERSION"
  minor="${PROMTOOL_VERSION#v3.}" && patch="${minor#*.}" && minor="${minor%%.*}"
  mod="$CACHE/src/promtool" && mkdir -p "$mod"
  (set -e; cd "$mod" && printf 'module riskray.local/promtool\n\ngo 1.23.0\n\n%s\n' \
     "replace github.com/fsnotify/fsnotify v1.8.0 => github.com/fsnotify/fsnotify v1.7.0" >go.mod \
   && go get "github.com/prometheus/prometheus/cmd/promtool@v0.$((300 + minor)).$patch" \
   && go build -ldflags "-s -w -X github.com/prometheus/common/version.Version=${PROMTOOL_VERSION#v}" \
        -o "$BIN/promtool" github.com/prometheus/prometheus/cmd/promtool) \
    >"$CACHE/logs/promtool.log" 2>&1 || fail "see $CACHE/logs/promtool.log"
fi

echo "$WANTED" >"$CACHE/.complete"
echo "$BIN"
