# The local Kubernetes control plane (`riskray cluster up`): every version in one place, sourced by
# cluster/local/k8s/build.sh, the bootstrap and app/operations/control_plane.py (all through bash). Why each one:
# - Kubernetes v1.32.4: the machine's kubectl is 1.32 (version skew +-1 is supported); built from the Go module
#   proxy (FACTS.md, "Kubernetes control plane").
KUBERNETES_VERSION=v1.32.4
# - KubeRay v1.5.0: the newest ray-operator the Go module proxy serves; the CRDs the tests install are this
#   version's own (from the same module), not the newer release candidate in ../shared/k8s-crds/kuberay.
KUBERAY_VERSION=v1.5.0
# - kwok v0.8.0: simulated nodes and pods (no container runtime, no Docker here).
KWOK_VERSION=v0.8.0
# - Prometheus operator v0.85.0: the newest the proxy serves for its module; its CRDs come from the same module
#   (../shared/k8s-crds has 0.93's).
PROMETHEUS_OPERATOR_VERSION=v0.85.0
# - etcd: Debian's etcd-server package (3.4), unpacked like Prometheus, never installed as a service.
# - promtool v3.5.0: the Prometheus the operator deploys by default; it checks the configuration and rule files the
#   operator generates (Debian's promtool 2.42 is built without Kubernetes service discovery and cannot parse them).
PROMTOOL_VERSION=v3.5.0
# The cache folder of this version set (~/.cache/riskray/<this>): one name for the build and for riskray.
TOOLS_KEY="k8s-$KUBERNETES_VERSION-kuberay-$KUBERAY_VERSION-kwok-$KWOK_VERSION-promop-$PROMETHEUS_OPERATOR_VERSION"
# `bash versions.sh --print`: NAME=value lines, the one way riskray's Python reads this file
if [ "${1:-}" = "--print" ]; then
  for name in KUBERNETES_VERSION KUBERAY_VERSION KWOK_VERSION PROMETHEUS_OPERATOR_VERSION PROMTOOL_VERSION TOOLS_KEY; do
    echo "$name=${!name}"
  done
fi
