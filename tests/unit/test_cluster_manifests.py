"""Every object of every overlay under cluster/ is what the real components accept (tests/k8s_validation.py: core
schemas, the operators' CRDs and CEL rules, KubeRay's Go-only rules, Ray Serve's config schema, promtool, pinned
images), the generated parts equal their one source, broken manifests are rejected by the validator meant to catch
them, and no secret value is committed. Rendering uses `kubectl kustomize` (kubectl 1.32, kustomize 5.5)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from app.cli import cluster
from app.config import PROJECT_ROOT, Settings, get_settings
from app.operations import serving
from tests import k8s_validation as kv

SHARED_CRDS = Path(os.environ.get("RISKRAY_CRDS_DIR", PROJECT_ROOT.parent / "shared" / "k8s-crds"))
# the operators that run on the local control plane: their CRDs of the version built (cluster/local/k8s/versions.sh)
BUILT = ("kuberay", "prometheus-operator")
OVERLAYS = ("dev", "prod", "prod-incremental")
BROKEN = Path(__file__).parent.parent / "data" / "k8s-broken"
PLACEHOLDER = kv.SECRET_PLACEHOLDER


def _required(path: Path | None, what: str) -> None:
    """In CI (CI=true) a missing tool or schema fails the test; elsewhere it skips it."""
    if path is None or not path.exists():
        message = f"{what} not found ({path})"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture(scope="module")
def crds(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """KubeRay's and the Prometheus operator's CRDs of the versions that run here (the bootstrap builds them), Strimzi's
    and the Spark operator's from ../shared (no operator of theirs runs here)."""
    from app.operations import control_plane

    built = control_plane.crds_dir(get_settings())
    _required(SHARED_CRDS if SHARED_CRDS.is_dir() else None, "the CRD schemas (set RISKRAY_CRDS_DIR)")
    _required(built if built.is_dir() else None, "the built operators' CRDs (make bootstrap)")
    merged = tmp_path_factory.mktemp("crds")
    for folder in SHARED_CRDS.iterdir():
        if folder.is_dir():
            shutil.copytree(built / folder.name if folder.name in BUILT else folder, merged / folder.name)
    return merged


@pytest.fixture(scope="module")
def promtool() -> Path:
    path = get_settings().prometheus_bin_dir / "promtool"
    _required(path, "promtool (the bootstrap unpacks it)")
    return path


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[dict[str, Any]]]:
    """Each overlay built as an operator builds it, its git-ignored secret env files made from the examples."""
    kubectl = shutil.which("kubectl")
    _required(Path(kubectl) if kubectl else None, "kubectl")
    built = kv.render_overlays(cluster.CLUSTER_DIR, tmp_path_factory.mktemp("cluster"), OVERLAYS)
    return {overlay: [doc for doc in yaml.safe_load_all(text) if doc] for overlay, text in built.items()}


def _one(objects: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    return next(o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name)


def _rayjob_template(objects: list[dict[str, Any]]) -> dict[str, Any]:
    return yaml.safe_load(_one(objects, "ConfigMap", "riskray-rayjob-template")["data"]["rayjob.yaml"])


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_object_of_the_overlay_passes_every_validator_that_applies(
        overlay: str, rendered: dict[str, list[dict[str, Any]]], crds: Path, promtool: Path) -> None:
    objects = rendered[overlay]
    # the RayJob template ships inside a ConfigMap (applying it would start a run): validated as a RayJob too
    problems = [p for obj in [*objects, _rayjob_template(objects)]
                for found in kv.validate(obj, crds, promtool).values() for p in found]
    assert problems == []
    assert {o["metadata"].get("namespace") for o in objects if o["kind"] != "Namespace"} == {"mlops"}


def test_the_overlays_hold_every_component_operators_apply(rendered: dict[str, list[dict[str, Any]]]) -> None:
    kinds = {o["kind"] for o in rendered["prod"]}
    assert {"RayService", "RayCluster", "Kafka", "KafkaNodePool", "KafkaTopic", "SparkApplication", "StatefulSet",
            "Job", "Deployment", "PodMonitor", "ServiceMonitor", "PrometheusRule", "Ingress", "NetworkPolicy",
            "Secret", "ConfigMap"} <= kinds


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_rayservice_serves_the_local_serve_config_with_the_overlays_replica_bounds(
        overlay: str, rendered: dict[str, list[dict[str, Any]]]) -> None:
    service = _one(rendered[overlay], "RayService", "riskray-serve")
    bounds = cluster.SERVE_BOUNDS["dev" if overlay == "dev" else "prod"]
    assert yaml.safe_load(service["spec"]["serveConfigV2"]) == serving.production_config(bounds)
    workers = service["spec"]["rayClusterConfig"]["workerGroupSpecs"][0]
    # one replica per worker pod: the pod bounds are the Serve bounds
    assert (workers["minReplicas"], workers["maxReplicas"]) == (bounds["min_replicas"], bounds["max_replicas"])
    head = service["spec"]["rayClusterConfig"]["headGroupSpec"]
    assert head["rayStartParams"]["num-cpus"] == "0"
    assert service["spec"]["rayClusterConfig"]["autoscalerOptions"]["version"] == "v2"


def test_prod_and_dev_differ_in_upgrade_strategy_only_where_meant(rendered: dict[str, list[dict[str, Any]]]) -> None:
    strategies = {o: _one(rendered[o], "RayService", "riskray-serve")["spec"]["upgradeStrategy"]["type"]
                  for o in OVERLAYS}
    assert strategies == {"dev": "NewCluster", "prod": "NewCluster",
                          "prod-incremental": "NewClusterWithIncrementalUpgrade"}


def test_kafka_in_prod_is_three_kraft_nodes_and_the_topics_survive_one_down(
        rendered: dict[str, list[dict[str, Any]]]) -> None:
    objects = rendered["prod"]
    pool = _one(objects, "KafkaNodePool", "combined")
    assert pool["spec"]["replicas"] == 3 and set(pool["spec"]["roles"]) == {"controller", "broker"}
    topic = _one(objects, "KafkaTopic", "transactions")["spec"]
    settings = Settings.model_construct()  # the defaults (the product's names), not the environment's
    assert (topic["topicName"], topic["partitions"], topic["replicas"]) == (settings.kafka_topic, 12, 3)
    assert topic["config"]["min.insync.replicas"] == 2
    assert topic["config"]["retention.ms"] == settings.kafka_retention_days * 86_400_000
    assert _one(objects, "KafkaTopic", "transactions-dlq")["spec"]["topicName"] == settings.kafka_dlq_topic
    labels = _one(objects, "KafkaTopic", "labels")["spec"]
    assert (labels["topicName"], labels["partitions"], labels["replicas"]) == (
        settings.kafka_labels_topic, settings.kafka_labels_partitions, 3)
    assert _one(objects, "KafkaTopic", "labels-dlq")["spec"]["topicName"] == settings.kafka_labels_dlq_topic


def test_every_image_is_the_one_pinned_release(rendered: dict[str, list[dict[str, Any]]]) -> None:
    pins = {i["name"]: i for i in yaml.safe_load((cluster.CLUSTER_DIR / "base" / "kustomization.yaml").read_text())[
        "images"]}
    riskray = f"{pins['riskray']['newName']}:{pins['riskray']['newTag']}"
    objects = rendered["prod"]
    found = {i for o in objects for i in kv.images(o)}
    assert riskray in found and not any(":latest" in i or i in pins for i in found)
    # the RayJob template is not rewritten by kustomize: it names the same release itself
    assert set(kv.images(_rayjob_template(objects))) == {riskray}


def test_the_prometheus_rule_and_dashboard_are_the_monitoring_sources(
        rendered: dict[str, list[dict[str, Any]]]) -> None:
    objects = rendered["prod"]
    rule = _one(objects, "PrometheusRule", "riskray-alerts")
    assert rule["spec"]["groups"] == yaml.safe_load(cluster.RULES_FILE.read_text())["groups"]
    dashboard = _one(objects, "ConfigMap", "riskray-dashboard")
    assert yaml.safe_load(dashboard["data"]["riskray-dashboard.json"]) == yaml.safe_load(
        cluster.DASHBOARD_FILE.read_text())


def test_the_cluster_alertmanager_config_is_valid_and_holds_no_secret(promtool: Path) -> None:
    amtool = promtool.with_name("amtool")
    path = cluster.CLUSTER_DIR / "base" / "monitoring" / "alertmanager.yaml"
    result = subprocess.run([str(amtool), "check-config", str(path)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    config = yaml.safe_load(path.read_text())
    receivers = {r["name"]: r for r in config["receivers"]}
    assert receivers["pagerduty"]["pagerduty_configs"][0]["routing_key_file"].startswith(cluster.ALERT_SECRETS_DIR)
    assert receivers["slack"]["slack_configs"][0]["api_url_file"].startswith(cluster.ALERT_SECRETS_DIR)


def test_the_generated_files_under_cluster_are_up_to_date() -> None:
    assert cluster.stale() == [], "run `riskray cluster render`"


@pytest.mark.parametrize("validator", ["core", "crd", "cel", "kuberay", "serve", "promtool", "pinned"])
def test_a_broken_manifest_is_rejected_by_the_validator_meant_to_catch_it_and_only_by_it(
        validator: str, crds: Path, promtool: Path) -> None:
    obj = yaml.safe_load((BROKEN / f"{validator}.yaml").read_text())
    results = kv.validate(obj, crds, promtool)
    assert results[validator], f"{validator} accepted {BROKEN / f'{validator}.yaml'}"
    assert {name for name, found in results.items() if found} == {validator}, results


def test_the_fields_kuberay_no_longer_reads_are_flagged() -> None:
    service = {"apiVersion": "ray.io/v1", "kind": "RayService", "metadata": {"name": "old"},
               "spec": {"serviceUnhealthySecondThreshold": 300, "rayClusterConfig": {}}}
    assert kv.kuberay(service) == ["RayService/old: spec.serviceUnhealthySecondThreshold is no longer read by KubeRay"]


def test_no_secret_value_is_committed_under_cluster(rendered: dict[str, list[dict[str, Any]]]) -> None:
    tracked = subprocess.run(["git", "ls-files", "cluster"], cwd=PROJECT_ROOT, capture_output=True, text=True,
                             check=True).stdout.split()
    assert tracked, "cluster/ is not tracked by git"
    assert not [f for f in tracked if f.endswith(".env")], "a secrets env file is tracked"
    for example in (PROJECT_ROOT / f for f in tracked if f.endswith(".env.example")):
        values = [line.split("=", 1)[1] for line in example.read_text().splitlines()
                  if "=" in line and not line.startswith("#")]
        assert all(v in ("", "riskray-admin") for v in values), example
    # every Secret value in the rendered overlays came from those (git-ignored) env files or holds no secret
    for obj in rendered["prod"]:
        if obj["kind"] == "Secret" and obj["metadata"]["name"] != "alertmanager-riskray":
            import base64

            decoded = {k: base64.b64decode(v).decode() for k, v in obj.get("data", {}).items()}
            assert all(v in (PLACEHOLDER, "riskray-admin") for v in decoded.values()), obj["metadata"]["name"]


def _locked(package: str) -> str:
    lock = (PROJECT_ROOT / "uv.lock").read_text()
    return lock.split(f'name = "{package}"\nversion = "', 1)[1].split('"', 1)[0]


def test_the_image_is_built_on_the_official_images_of_the_pinned_versions_from_the_lock_file() -> None:
    dockerfile = (cluster.CLUSTER_DIR / "image" / "Dockerfile").read_text()
    assert f"ARG RAY_IMAGE=rayproject/ray:{_locked('ray')}-py311-cpu" in dockerfile
    assert f"ARG SPARK_IMAGE=apache/spark:{_locked('pyspark')}-scala2.13-java17-python3-ubuntu" in dockerfile
    assert "uv export --frozen --no-dev" in dockerfile  # exactly the locked versions
    pins = {i["name"]: i for i in yaml.safe_load((cluster.CLUSTER_DIR / "base" / "kustomization.yaml").read_text())[
        "images"]}
    for target in ("riskray", "riskray-spark"):
        assert f"FROM ${{{'RAY' if target == 'riskray' else 'SPARK'}_IMAGE}} AS {target}" in dockerfile
        assert f"--target {target} -t {pins[target]['newName']}:{pins[target]['newTag']}" in dockerfile
    rayservice = yaml.safe_load((cluster.CLUSTER_DIR / "base" / "ray" / "rayservice.yaml").read_text())
    assert rayservice["spec"]["rayClusterConfig"]["rayVersion"] == _locked("ray")
    spark = next(yaml.safe_load_all((cluster.CLUSTER_DIR / "base" / "spark" / "sparkapplication.yaml").read_text()))
    assert spark["spec"]["sparkVersion"] == _locked("pyspark")


def _containers(obj: dict[str, Any]) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key in ("containers", "initContainers") and isinstance(value, list):
                    found.extend(value)
                else:
                    walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(obj.get("spec", {}))
    return found


def test_production_has_tls_at_the_ingress_mlflow_behind_auth_and_credentials_only_from_secrets(
    rendered: dict[str, list[dict[str, Any]]]
) -> None:
    prod = rendered["prod"]
    ingresses = [o for o in prod if o["kind"] == "Ingress"]
    assert ingresses and all(i["spec"].get("tls") and all(t.get("secretName") for t in i["spec"]["tls"])
                             for i in ingresses)
    assert all(i["metadata"]["annotations"].get("nginx.ingress.kubernetes.io/force-ssl-redirect") == "true"
               for i in ingresses)
    mlflow = next(c for c in _containers(_one(prod, "Deployment", "mlflow")) if c["name"] == "mlflow")
    assert "--app-name basic-auth" in " ".join(mlflow.get("command", []) + mlflow.get("args", []))
    secret_like = ("PASSWORD", "SECRET", "TOKEN", "API_KEY", "ROUTING_KEY")
    for obj in prod:
        for container in _containers(obj):
            for env in container.get("env") or []:
                if any(word in env["name"].upper() for word in secret_like):
                    assert "valueFrom" in env and "secretKeyRef" in env["valueFrom"], (obj["metadata"]["name"], env)
    settings_map = _one(prod, "ConfigMap", "riskray-settings")
    assert not [k for k in settings_map["data"] if any(word in k.upper() for word in secret_like)]
    secrets = (cluster.CLUSTER_DIR / "overlays" / "prod" / "secrets" / "riskray.env.example").read_text()
    for name in ("RISKRAY_POSTGRES_PASSWORD=", "MLFLOW_TRACKING_PASSWORD=", "RISKRAY_SERVE_API_KEYS="):
        assert name in secrets  # each from the riskray-secrets Secret, which every riskray container reads
