#!/usr/bin/env bash
# Idempotent set-up of everything riskray needs on this machine; both README commands run it first.
#   - checks Java 17+ (Kafka broker, Spark)
#   - installs the PostgreSQL server from Debian when no server binaries are present
#   - installs uv (pinned) and the locked Python dependencies into .venv (uv.lock), and Airflow's into the state
#     folder's airflow-venv (cluster/local/airflow/uv.lock), compiled to bytecode
#   - fetches the Kafka broker jars and Spark's Kafka connector from Maven Central into the state folder
#   - unpacks Debian's Prometheus 2.42 and Alertmanager 0.25 (with promtool and amtool) into the state folder:
#     `apt-get download` + `dpkg -x`, so no system service is installed or started
# A second run with nothing to do finishes in seconds.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
STATE="${RISKRAY_STATE_DIR:-$ROOT/.riskray}"
UV_VERSION="0.13.9"
PYTHON="${RISKRAY_PYTHON:-python3.11}"
export UV_PYTHON_DOWNLOADS=never UV_PROJECT_ENVIRONMENT="$ROOT/.venv"

step() { printf '[bootstrap] %s\n' "$*"; }
fail() { printf 'bootstrap: %s\n' "$*" >&2; exit 1; }
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else return 1; fi; }
apt_install() {
  step "installing $* from Debian"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null \
    && as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null \
    || fail "could not install $* (needs root or sudo and access to Debian's package mirror)"
}

mkdir -p "$STATE/jars" "$STATE/logs"

# --- Java ----------------------------------------------------------------------------------------------------
JAVA="${RISKRAY_JAVA_BIN:-java}"
command -v "$JAVA" >/dev/null || fail "Java 17+ is required for Kafka and Spark but '$JAVA' was not found (apt-get install openjdk-17-jre-headless, or set RISKRAY_JAVA_BIN)"
java_major=$("$JAVA" -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -n1)
[ "${java_major:-0}" -ge 17 ] || fail "Java 17+ is required, but '$JAVA' is Java ${java_major:-unknown}"
step "java $java_major ok"

# --- PostgreSQL server -----------------------------------------------------------------------------------------
if ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 && [ -z "${RISKRAY_POSTGRES_BIN_DIR:-}" ]; then
  apt_install postgresql
fi
step "postgresql $(ls -d /usr/lib/postgresql/*/ 2>/dev/null | xargs -n1 basename | sort -n | tail -n1) ok"

# --- Prometheus and Alertmanager -----------------------------------------------------------------------------------
# The versions the rules and routing tests are written for (promtool 2.42 has no fuzzy_compare).
PROM_DIR="$STATE/tools/prometheus"
PROM_VERSIONS="prometheus 2.42 prometheus-alertmanager 0.25"
if ! [ -f "$PROM_DIR/.complete" ] || [ "$(cat "$PROM_DIR/.complete")" != "$PROM_VERSIONS" ]; then
  step "unpacking prometheus and prometheus-alertmanager from Debian into $PROM_DIR"
  command -v dpkg >/dev/null || fail "dpkg is needed to unpack Debian's prometheus packages"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null 2>&1 || true
  work="$(mktemp -d)"
  (cd "$work" && apt-get download prometheus prometheus-alertmanager >"$STATE/logs/apt-prometheus.log" 2>&1) \
    || fail "could not download prometheus/prometheus-alertmanager from Debian; see $STATE/logs/apt-prometheus.log"
  rm -rf "$PROM_DIR" && mkdir -p "$PROM_DIR"
  for deb in "$work"/*.deb; do dpkg -x "$deb" "$PROM_DIR"; done
  rm -rf "$work"
  "$PROM_DIR/usr/bin/promtool" --version 2>&1 | grep -q "version 2\.42\." \
    || fail "Debian's promtool is not 2.42 (the rule tests are written for it): $("$PROM_DIR/usr/bin/promtool" --version 2>&1 | head -n1)"
  "$PROM_DIR/usr/bin/amtool" --version 2>&1 | grep -q "version 0\.25\." \
    || fail "Debian's amtool is not 0.25: $("$PROM_DIR/usr/bin/amtool" --version 2>&1 | head -n1)"
  echo "$PROM_VERSIONS" >"$PROM_DIR/.complete"
fi
# Debian's Alertmanager reads its notification templates from this fixed path (no flag moves it; upstream embeds
# them): put the package's own copies there, as installing the package would, and nothing else.
AM_TEMPLATES=/usr/share/prometheus/alertmanager
for tmpl in default.tmpl email.tmpl; do
  if ! cmp -s "$PROM_DIR$AM_TEMPLATES/$tmpl" "$AM_TEMPLATES/$tmpl" 2>/dev/null; then
    as_root install -D -m 0644 "$PROM_DIR$AM_TEMPLATES/$tmpl" "$AM_TEMPLATES/$tmpl" \
      || fail "Alertmanager needs $AM_TEMPLATES/$tmpl (Debian's build reads it there); could not install it"
  fi
done
step "prometheus $("$PROM_DIR/usr/bin/prometheus" --version 2>&1 | sed -n 's/.*version \([0-9.]*\).*/\1/p' | head -n1), alertmanager $("$PROM_DIR/usr/bin/prometheus-alertmanager" --version 2>&1 | sed -n 's/.*version \([0-9.]*\).*/\1/p' | head -n1) ok"

# --- Python ----------------------------------------------------------------------------------------------------
command -v "$PYTHON" >/dev/null || fail "$PYTHON not found (riskray needs CPython 3.11; set RISKRAY_PYTHON)"
UV="$STATE/tools/bin/uv"
if ! [ -x "$UV" ] || [ "$("$UV" --version | cut -d' ' -f2)" != "$UV_VERSION" ]; then
  step "installing uv $UV_VERSION"
  "$PYTHON" -m venv "$STATE/tools"
  "$STATE/tools/bin/pip" install -q "uv==$UV_VERSION"
fi
# Compiled at install (--compile-bytecode; a later sync skips what is compiled): where PYTHONDONTWRITEBYTECODE is
# set (it is on this kind of machine) no import ever writes a .pyc, and every Python process of the stack and the
# suite (Ray's workers, Serve's replicas, Airflow's tasks, each CLI call) compiled its libraries from source again:
# `import ray.train.xgboost` 5.4 s -> 2.0 s, `import mlflow.server` 6.2 s -> 2.5 s (docs/tests.md#suite-time)
step "python dependencies (uv sync --frozen)"
"$UV" sync --frozen --quiet --compile-bytecode --python "$PYTHON" --project "$ROOT"
# Airflow in its own environment: airflow-core pins fastapi below Ray Serve's window
step "airflow environment (uv sync --frozen, cluster/local/airflow)"
UV_PROJECT_ENVIRONMENT="$STATE/airflow-venv" "$UV" sync --frozen --quiet --compile-bytecode --python "$PYTHON" \
  --project "$ROOT/cluster/local/airflow"

# --- JVM jars --------------------------------------------------------------------------------------------------
POM="$ROOT/cluster/local/jars/pom.xml"
pom_hash=$(sha256sum "$POM" | cut -c1-16)
for profile in kafka-broker spark-kafka; do
  dest="$STATE/jars/$profile"
  if [ -f "$dest/.complete-$pom_hash" ]; then
    step "jars $profile ok"
    continue
  fi
  command -v mvn >/dev/null || apt_install maven
  step "fetching jars $profile from Maven Central"
  rm -rf "$dest"
  mvn -B -f "$POM" -P "$profile" dependency:copy-dependencies -Driskray.jars.dir="$dest" \
    >"$STATE/logs/maven-$profile.log" 2>&1 \
    || fail "maven could not fetch the $profile jars; see $STATE/logs/maven-$profile.log"
  touch "$dest/.complete-$pom_hash"
done
rm -rf "$ROOT/cluster/local/jars/target"

# --- the local Kubernetes control plane (`riskray cluster up`) ------------------------------------------------------
# Built once from the Go module proxy (first time ~12.5 min on 2 cores; needs Go), cached outside the checkout for
# every clone.
k8s_bin="$(bash "$ROOT/cluster/local/k8s/build.sh")" || fail "building the local Kubernetes control plane failed"
k8s_versions="$(bash "$ROOT/cluster/local/k8s/versions.sh" --print | sed -n 's/^[A-Z_]*_VERSION=//p' | paste -sd' ')"
step "kubernetes control plane ok ($k8s_versions, in $k8s_bin)"
step "done"
