"""The manifests under cluster/ on a real control plane (`riskray cluster up`: etcd, kube-apiserver with RBAC and
service-account tokens, kube-controller-manager, kube-scheduler, kwok nodes, the KubeRay and Prometheus operators
built from the Go module proxy): every overlay accepted by the API server, the operators' reconciliation as the
manifests intend it, the retraining DAG's Kubernetes mode as its own service account, the operator's own verdict on
a broken RayService.

kwok schedules pods and marks them running; no container runs. Where reconciliation needs a live Ray dashboard inside
a pod (a Serve application's health, a RayJob's Ray job), the tests stop there and say so.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from app.cli import cluster
from app.config import PROJECT_ROOT, Settings
from app.operations import control_plane, manager, supervisor
from dags.riskray_ops import kube
from tests import k8s_validation as kv

pytestmark = pytest.mark.integration

OVERLAYS = ("dev", "prod", "prod-incremental")
NS = cluster.NAMESPACE
# the CRDs of the components no operator runs for here (their schemas only): Strimzi's Kafka and the Spark operator
SHARED_CRDS = Path(os.environ.get("RISKRAY_CRDS_DIR", PROJECT_ROOT.parent / "shared" / "k8s-crds"))
SUBMISSION = "riskray_retraining--manual__2026-12-04T02_00_00_00_00--retrain--attempt-1"


def _wait(condition: Callable[[], Any], what: str, timeout_s: float = 90) -> Any:
    deadline = time.monotonic() + timeout_s
    while not (found := condition()):
        assert time.monotonic() < deadline, f"not within {timeout_s:.0f} s: {what}"
        time.sleep(1)
    return found


@pytest.fixture(scope="module")
def kubernetes(settings: Settings) -> Iterator[Settings]:
    """A control plane from nothing (fresh etcd and PKI in the scratch world's kube_home), stopped at the end."""
    was_running = supervisor.is_running(settings)
    manager.stop_group(settings, control_plane.GROUP, echo=lambda line: None)
    shutil.rmtree(control_plane.home(settings), ignore_errors=True)
    try:  # stopped whatever happens: a control plane left running would take CPU from every later test
        manager.up(settings, echo=lambda line: None, groups=(control_plane.GROUP,), core=False)
        for folder in ("strimzi", "spark-operator"):
            control_plane.install_crds(settings, SHARED_CRDS / folder)
        yield settings
    finally:
        manager.stop_group(settings, control_plane.GROUP, echo=lambda line: None)
        if not was_running:
            manager.down(settings, echo=lambda line: None)
        shutil.rmtree(control_plane.home(settings), ignore_errors=True)


def _kubectl(settings: Settings, *args: str, input_text: str | None = None) -> str:
    result = control_plane.kubectl(settings, *args, input_text=input_text)
    assert result.returncode == 0, f"kubectl {' '.join(args)}: {result.stderr[-2000:]}"
    return result.stdout


def _found(settings: Settings, path: str) -> dict[str, Any] | None:
    with control_plane.client(settings) as api:
        response = api.get(path)
        return None if response.status_code == 404 else response.raise_for_status().json()


def _get(settings: Settings, path: str) -> dict[str, Any]:
    with control_plane.client(settings) as api:
        response = api.get(path)
        response.raise_for_status()
        return response.json()


@pytest.fixture(scope="module")
def overlays(kubernetes: Settings, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    return kv.render_overlays(cluster.CLUSTER_DIR, tmp_path_factory.mktemp("overlays"), OVERLAYS)


@pytest.fixture(scope="module")
def applied(kubernetes: Settings, overlays: dict[str, str]) -> dict[str, str]:
    """Each overlay as a fresh install: prod and prod-incremental with --dry-run=server (every admission step, no
    write), then dev for real (the operators reconcile it). The namespace first: a dry run creates none."""
    _kubectl(kubernetes, "create", "namespace", NS)
    said = {o: _kubectl(kubernetes, "apply", "--server-side", "--dry-run=server", "-f", "-", input_text=overlays[o])
            for o in ("prod", "prod-incremental")}
    said["dev"] = _kubectl(kubernetes, "apply", "--server-side", "-f", "-", input_text=overlays["dev"])
    return said


def _objects(text: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(text) if doc]


def test_every_object_of_every_overlay_is_accepted_by_the_api_server(
        applied: dict[str, str], overlays: dict[str, str]) -> None:
    for overlay, said in applied.items():
        lines = said.strip().splitlines()
        assert len(lines) == len(_objects(overlays[overlay])), (overlay, said)
        assert all("serverside-applied" in line for line in lines), (overlay, said)


def test_every_port_the_control_plane_opens_listens_on_loopback_only(applied: dict[str, str],
                                                                     kubernetes: Settings) -> None:
    import psutil

    home = str(control_plane.home(kubernetes))
    pids = {p.pid for p in psutil.process_iter(["cmdline"]) if home in " ".join(p.info["cmdline"] or [])}
    listening = [(c.laddr.ip, c.laddr.port) for c in psutil.net_connections(kind="inet")
                 if c.status == psutil.CONN_LISTEN and c.pid in pids]
    assert len(pids) == len(control_plane.COMPONENTS) and len(listening) >= len(control_plane.COMPONENTS), listening
    assert [a for a in listening if a[0] not in {"127.0.0.1", "::1", "::ffff:127.0.0.1"}] == []


def _pods(settings: Settings, selector: str) -> list[dict[str, Any]]:
    return _get(settings, f"/api/v1/namespaces/{NS}/pods?labelSelector={selector}")["items"]


def _running(settings: Settings, selector: str, count: int) -> list[dict[str, Any]]:
    def ready() -> tuple[list[dict[str, Any]]] | None:
        pods = _pods(settings, selector)
        return (pods,) if len(pods) == count and all(p["status"].get("phase") == "Running" for p in pods) else None

    return _wait(ready, f"{count} running pods {selector}")[0]


def _as_intended(intended: dict[str, Any], pod: dict[str, Any]) -> list[str]:
    """What the manifest's pod template asks of each container, found in the pod KubeRay made."""
    problems = []
    made = {c["name"]: c for c in pod["spec"]["containers"]}
    for want in intended["spec"]["containers"]:
        got = made.get(want["name"])
        if got is None:
            problems.append(f"no container {want['name']}")
            continue
        for field in ("image", "resources", "envFrom"):
            if want.get(field) != got.get(field):
                problems.append(f"{want['name']}.{field}: {got.get(field)} != {want.get(field)}")
        env = {e["name"]: e for e in got.get("env", [])}
        problems += [f"{want['name']}: env {e['name']} missing or changed" for e in want.get("env", [])
                     if env.get(e["name"]) != e]
        ports = {(p["name"], p["containerPort"]) for p in got.get("ports", [])}
        problems += [f"{want['name']}: port {p['name']}" for p in want.get("ports", [])
                     if (p["name"], p["containerPort"]) not in ports]
    volumes = {v["name"] for v in pod["spec"].get("volumes", [])}
    problems += [f"volume {v['name']}" for v in intended["spec"].get("volumes", []) if v["name"] not in volumes]
    wanted = intended["spec"].get("serviceAccountName")
    if wanted is not None and pod["spec"].get("serviceAccountName") != wanted:
        problems.append(f"serviceAccountName {pod['spec'].get('serviceAccountName')}")
    return problems


def _one(objects: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    return next(o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name)


def test_kuberay_makes_the_rayservices_cluster_with_the_pods_the_manifest_intends(
        applied: dict[str, str], overlays: dict[str, str], kubernetes: Settings) -> None:
    spec = _one(_objects(overlays["dev"]), "RayService", cluster.RAYSERVICE)["spec"]["rayClusterConfig"]
    path = f"/apis/ray.io/v1/namespaces/{NS}/rayservices/{cluster.RAYSERVICE}"
    service = _wait(lambda: _get(kubernetes, path).get("status", {}).get("pendingServiceStatus", {})
                    .get("rayClusterName"), "the RayService's cluster")
    worker = spec["workerGroupSpecs"][0]
    head = _running(kubernetes, f"ray.io/cluster={service},ray.io/node-type=head", 1)[0]
    workers = _running(kubernetes, f"ray.io/cluster={service},ray.io/group={worker['groupName']}", worker["replicas"])
    assert _as_intended(spec["headGroupSpec"]["template"], head) == []
    assert all(_as_intended(worker["template"], pod) == [] for pod in workers)
    # the overlay enables Ray's autoscaler: KubeRay adds its sidecar to the head
    assert "autoscaler" in {c["name"] for c in head["spec"]["containers"]}
    # KubeRay's probes, a Serve worker's readiness including Serve's own health
    probe = " ".join(workers[0]["spec"]["containers"][0]["readinessProbe"]["exec"]["command"])
    assert "/-/healthz" in probe and workers[0]["spec"]["containers"][0]["livenessProbe"]
    # Where it stops: the Serve application is deployed through the head's dashboard, which no kwok pod runs, so the
    # RayService stays initializing (its cluster pending, never promoted to active).
    status = _get(kubernetes, f"/apis/ray.io/v1/namespaces/{NS}/rayservices/{cluster.RAYSERVICE}")["status"]
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "False" and ready["reason"] == "Initializing"


def test_an_image_change_starts_the_new_cluster_upgrade_the_dev_overlay_chose(
        applied: dict[str, str], overlays: dict[str, str], kubernetes: Settings) -> None:
    service = _one(_objects(overlays["dev"]), "RayService", cluster.RAYSERVICE)
    assert service["spec"]["upgradeStrategy"]["type"] == "NewCluster"
    path = f"/apis/ray.io/v1/namespaces/{NS}/rayservices/{cluster.RAYSERVICE}"
    before = _wait(lambda: _get(kubernetes, path).get("status", {}).get("pendingServiceStatus", {})
                   .get("rayClusterName"), "the RayService's cluster")
    image = service["spec"]["rayClusterConfig"]["headGroupSpec"]["template"]["spec"]["containers"][0]["image"]
    upgraded = image.rsplit(":", 1)[0] + ":0.1.1-test"
    _kubectl(kubernetes, "patch", "rayservice", cluster.RAYSERVICE, "-n", NS, "--type=json", "-p",
             f'[{{"op": "replace", "path": "/spec/rayClusterConfig/headGroupSpec/template/spec/containers/0/image", '
             f'"value": "{upgraded}"}}]')
    # A kwok pod runs no Ray: asked for the Serve status of a head kwok calls ready, KubeRay gets no answer from its
    # dashboard, fails the reconcile before reading the new spec and backs off (until the node controller marks
    # kwok's pods unready, ~40 s). The old head is marked unready, as its readiness probe would mark a head whose
    # dashboard does not answer: KubeRay then skips the dashboard and acts on the spec at once.
    head = _running(kubernetes, f"ray.io/cluster={before},ray.io/node-type=head", 1)[0]
    _kubectl(kubernetes, "patch", "pod", head["metadata"]["name"], "-n", NS, "--subresource=status", "-p",
             '{"status": {"conditions": [{"type": "Ready", "status": "False"}]}}')
    # a second cluster with the new image: the first keeps serving until the new one's Serve application is healthy
    after = _wait(lambda: (name := _get(kubernetes, path).get("status", {}).get("pendingServiceStatus", {})
                           .get("rayClusterName")) != before and name, "a new cluster for the new image")
    made = _wait(lambda: _found(kubernetes, f"/apis/ray.io/v1/namespaces/{NS}/rayclusters/{after}"), after)
    assert made["spec"]["headGroupSpec"]["template"]["spec"]["containers"][0]["image"] == upgraded
    # Where it stops: the switch to the new cluster waits for its Serve application to be healthy, which only the
    # head's dashboard reports (no kwok pod runs one).


def test_kuberay_makes_the_lab_raycluster_with_the_pods_the_manifest_intends(
        applied: dict[str, str], overlays: dict[str, str], kubernetes: Settings) -> None:
    spec = _one(_objects(overlays["dev"]), "RayCluster", "riskray-lab")["spec"]
    head = _running(kubernetes, "ray.io/cluster=riskray-lab,ray.io/node-type=head", 1)[0]
    assert _as_intended(spec["headGroupSpec"]["template"], head) == []
    for group in spec["workerGroupSpecs"]:
        pods = _running(kubernetes, f"ray.io/cluster=riskray-lab,ray.io/group={group['groupName']}",
                        group.get("replicas", group.get("minReplicas", 0)))
        assert all(_as_intended(group["template"], pod) == [] for pod in pods)


def _service_account_token(settings: Settings, name: str) -> str:
    """A real service-account token (TokenRequest), signed by the API server's service-account key."""
    with control_plane.client(settings) as api:
        response = api.post(f"/api/v1/namespaces/{NS}/serviceaccounts/{name}/token",
                            json={"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                                  "spec": {"expirationSeconds": 600}})
        response.raise_for_status()
        return str(response.json()["status"]["token"])


def test_the_dags_kubernetes_mode_creates_and_attaches_to_its_rayjob_and_patches_serve_as_its_service_account(
        applied: dict[str, str], kubernetes: Settings) -> None:
    token = _service_account_token(kubernetes, "riskray-airflow")
    ca = str(control_plane.ca_file(kubernetes))
    with kube.Kube(control_plane.api_url(kubernetes), NS, token, verify=ca) as api:
        said: list[str] = []
        name = api.start(SUBMISSION, "riskray train --trials 2", {"RISKRAY_LABEL_DELAY_DAYS": "7"}, said.append)
        again = api.start(SUBMISSION, "riskray train --trials 2", {}, said.append)  # Airflow's retry of the task
        assert again == name and said[-1] == f"attaching to RayJob {name}"
        jobs = _get(kubernetes, f"/apis/ray.io/v1/namespaces/{NS}/rayjobs")["items"]
        dags = [j["metadata"]["name"] for j in jobs if j["metadata"]["name"].startswith("rr-riskray-retraining")]
        assert dags == [name]  # this run's task: one RayJob, however often it tried

        # KubeRay makes the job's cluster from the template's rayClusterSpec
        template = api.template()["spec"]["rayClusterSpec"]
        job_cluster = _wait(lambda: _get(kubernetes, f"/apis/ray.io/v1/namespaces/{NS}/rayjobs/{name}")
                            .get("status", {}).get("rayClusterName"), "the RayJob's cluster")
        head = _running(kubernetes, f"ray.io/cluster={job_cluster},ray.io/node-type=head", 1)[0]
        assert _as_intended(template["headGroupSpec"]["template"], head) == []
        train = template["workerGroupSpecs"][0]
        workers = _running(kubernetes, f"ray.io/cluster={job_cluster},ray.io/group={train['groupName']}",
                           train["replicas"])
        assert all(_as_intended(train["template"], pod) == [] for pod in workers)
        # Where it stops: KubeRay submits the entrypoint through the head's dashboard (K8sJobMode's submitter), which
        # no kwok pod runs: the Ray job never starts, so the DAG's wait is not exercised here.

        api.reload_serve({"champion": "7"}, said.append)
        served = _get(kubernetes, f"/apis/ray.io/v1/namespaces/{NS}/rayservices/{cluster.RAYSERVICE}")
        config = yaml.safe_load(served["spec"]["serveConfigV2"])
        deployment = config["applications"][0]["deployments"][0]
        assert deployment["name"] == kube.DEPLOYMENT and deployment["user_config"]["champion"] == "7"

        # a RayJob KubeRay refuses fails the DAG's wait with the operator's own reason (no name the DAG makes is
        # refused: the one below is one character over KubeRay's limit)
        refused = "rr-" + "x" * (kube.MAX_RAYJOB_NAME - 2)
        job = kube.rayjob(api.template(), refused, "riskray train", {})
        _kubectl(kubernetes, "apply", "-n", NS, "--server-side", "-f", "-", input_text=yaml.safe_dump(job))
        with pytest.raises(kube.RayJobError, match="RayJob name should be no more than 47 characters"):
            api.wait(refused, timeout_s=60, say=said.append, poll_s=1)

    # what its Role does not grant is the API server's own 403, naming the service account
    with httpx.Client(base_url=control_plane.api_url(kubernetes), verify=control_plane.ssl_context(kubernetes),
                      headers={"Authorization": f"Bearer {token}"}) as http:
        for method, path in (("GET", f"/api/v1/namespaces/{NS}/secrets"),
                             ("DELETE", f"/apis/ray.io/v1/namespaces/{NS}/rayservices/{cluster.RAYSERVICE}"),
                             ("PATCH", f"/apis/ray.io/v1/namespaces/{NS}/rayclusters/riskray-lab")):
            response = http.request(method, path, json={} if method == "PATCH" else None,
                                    headers={"Content-Type": "application/merge-patch+json"})
            assert response.status_code == 403, (method, path, response.text)
            assert "system:serviceaccount:mlops:riskray-airflow" in response.json()["message"]


def _events(settings: Settings, name: str) -> list[dict[str, Any]]:
    return _get(settings, f"/api/v1/namespaces/{NS}/events?fieldSelector=involvedObject.name={name}")["items"]


BROKEN = Path(__file__).parents[1] / "data" / "k8s-broken"


@pytest.mark.parametrize(("validator", "said"), [
    ("core", "replicas"),  # Kubernetes' own schema: not an integer
    ("crd", ".spec.partition: field not declared in schema"),  # a misspelt field, refused by server-side apply
    ("cel", "deletionStrategy requires either BOTH onSuccess and onFailure"),  # the CRD's CEL rule
])
def test_the_api_server_itself_refuses_each_broken_manifest(
        validator: str, said: str, applied: dict[str, str], kubernetes: Settings) -> None:
    result = control_plane.kubectl(kubernetes, "apply", "-n", NS, "--server-side", "--dry-run=server", "-f",
                                   str(BROKEN / f"{validator}.yaml"))
    assert result.returncode != 0 and said in result.stderr, result.stderr


def _rayservice(overlays: dict[str, str], change: Callable[[dict[str, Any]], None], name: str) -> dict[str, Any]:
    service = yaml.safe_load(yaml.safe_dump(_one(_objects(overlays["prod-incremental"]), "RayService",
                                                 cluster.RAYSERVICE)))
    service["metadata"] = {"name": name, "namespace": NS}
    change(service["spec"])
    return service


def _rayjob(overlays: dict[str, str], change: Callable[[dict[str, Any]], None], name: str) -> dict[str, Any]:
    template = _one(_objects(overlays["dev"]), "ConfigMap", kube.TEMPLATE_CONFIGMAP)["data"][kube.TEMPLATE_KEY]
    job = kube.rayjob(yaml.safe_load(template), name, "riskray train", {})
    job["metadata"]["namespace"] = NS
    change(job["spec"])
    return job


def _options(spec: dict[str, Any]) -> dict[str, Any]:
    return spec["upgradeStrategy"]["clusterUpgradeOptions"]


def _rules(spec: dict[str, Any]) -> list[dict[str, Any]]:
    return spec["deletionStrategy"]["deletionRules"]


# KubeRay 1.5's own checks (ray-operator/controllers/ray/utils/validation.go) that its CRD cannot express: each
# broken resource, and the words of the operator's verdict
INVALID = {
    "rs-no-autoscaler": ("RayService", lambda s: s["rayClusterConfig"].update(enableInTreeAutoscaling=False),
                         "Ray Autoscaler is required for NewClusterWithIncrementalUpgrade"),
    "rs-no-options": ("RayService", lambda s: s["upgradeStrategy"].pop("clusterUpgradeOptions"),
                      "ClusterUpgradeOptions are required for NewClusterWithIncrementalUpgrade"),
    "rs-surge": ("RayService", lambda s: _options(s).update(maxSurgePercent=150),
                 "maxSurgePercent must be between 0 and 100"),
    "rs-step": ("RayService", lambda s: _options(s).update(stepSizePercent=-5),
                "stepSizePercent must be between 0 and 100"),
    "rs-interval": ("RayService", lambda s: _options(s).update(intervalSeconds=0),
                    "intervalSeconds must be greater than 0"),
    "rs-gateway": ("RayService", lambda s: _options(s).update(gatewayClassName=""),
                   "gatewayClassName is required for NewClusterWithIncrementalUpgrade"),
    "rs-upgrade-type": ("RayService", lambda s: s["upgradeStrategy"].update(type="Sideways"),
                        "Spec.UpgradeStrategy.Type value Sideways is invalid"),
    "rj-ttl": ("RayJob", lambda s: (s.pop("deletionStrategy"), s.update(ttlSecondsAfterFinished=60)),
               "shutdownAfterJobFinishes set to false cannot have TTLSecondsAfterFinished"),
    "rj-shutdown": ("RayJob", lambda s: s.update(shutdownAfterJobFinishes=True),
                    "spec.shutdownAfterJobFinishes and spec.deletionStrategy.deletionRules are mutually exclusive"),
    "rj-duplicate": ("RayJob", lambda s: _rules(s).append(dict(_rules(s)[0])), "duplicate rule"),
    "rj-ttl-order": ("RayJob", lambda s: _rules(s)[0]["condition"].update(ttlSeconds=7200),
                     "DeleteSelf TTL (3600) must be >= DeleteCluster TTL (7200)"),
    "rj-workers": ("RayJob", lambda s: (s["rayClusterSpec"].update(enableInTreeAutoscaling=True),
                                        _rules(s).append({"policy": "DeleteWorkers",
                                                          "condition": {"jobStatus": "FAILED", "ttlSeconds": 60}})),
                   "'DeleteWorkers' not supported with autoscaling enabled"),
}


def test_kuberay_itself_refuses_what_its_go_code_checks(
        applied: dict[str, str], overlays: dict[str, str], kubernetes: Settings) -> None:
    """The operator's own verdict (an InvalidRayServiceSpec / InvalidRayJobSpec event), in place of a Python copy of
    its Go rules; every case applied at once, then each verdict awaited."""
    resources = [(_rayservice if kind == "RayService" else _rayjob)(overlays, change, name)
                 for name, (kind, change, _) in INVALID.items()]
    _kubectl(kubernetes, "apply", "--server-side", "-f", "-", input_text=yaml.safe_dump_all(resources))
    for name, (kind, _, words) in INVALID.items():
        reason = f"Invalid{kind}Spec"
        found = _wait(lambda name=name, reason=reason: [e["message"] for e in _events(kubernetes, name)
                                                        if e["reason"] == reason], f"{name}: KubeRay's {reason}")
        assert any(words in message for message in found), (name, found)
    for resource in resources:
        _kubectl(kubernetes, "delete", "-n", NS, resource["kind"].lower(), resource["metadata"]["name"])


def test_the_prometheus_operator_turns_the_rules_and_monitors_into_a_config_prometheus_loads(
        applied: dict[str, str], kubernetes: Settings, tmp_path: Path) -> None:
    """A Prometheus resource selecting riskray's PrometheusRule, ServiceMonitor and PodMonitors (the overlays ship
    none: the cluster's Prometheus is the operator's user's): the operator writes the rule files and the scrape
    configuration from them, and the promtool of the Prometheus it deploys checks both as Prometheus will load them."""
    import base64
    import gzip
    import subprocess

    selector = {"matchLabels": {"app.kubernetes.io/name": "riskray"}}
    prometheus = {"apiVersion": "monitoring.coreos.com/v1", "kind": "Prometheus",
                  "metadata": {"name": "riskray-check", "namespace": NS},
                  "spec": {"replicas": 1, "ruleSelector": selector, "serviceMonitorSelector": selector,
                           "podMonitorSelector": selector}}
    _kubectl(kubernetes, "apply", "--server-side", "-f", "-", input_text=yaml.safe_dump(prometheus))
    rules = _wait(lambda: [c for c in _get(kubernetes, f"/api/v1/namespaces/{NS}/configmaps")["items"]
                           if c["metadata"]["name"].startswith("prometheus-riskray-check-rulefiles")],
                  "the operator's rule files")
    files = []
    for configmap in rules:
        for name, text in configmap.get("data", {}).items():
            files.append(tmp_path / name)
            files[-1].write_text(text)
    expected = [r["alert"] for g in yaml.safe_load(cluster.RULES_FILE.read_text())["groups"] for r in g["rules"]
                if "alert" in r]
    text = "\n".join(f.read_text() for f in files)
    assert expected and all(f"alert: {name}" in text for name in expected)
    _wait(lambda: _get(kubernetes, f"/apis/apps/v1/namespaces/{NS}/statefulsets?labelSelector="
                                   "operator.prometheus.io/name=riskray-check")["items"], "the Prometheus StatefulSet")
    secret = _wait(lambda: _found(kubernetes, f"/api/v1/namespaces/{NS}/secrets/prometheus-riskray-check"),
                   "the generated configuration")
    config = tmp_path / "prometheus.yaml"
    config.write_bytes(gzip.decompress(base64.b64decode(secret["data"]["prometheus.yaml.gz"])))
    jobs = [job["job_name"] for job in yaml.safe_load(config.read_text())["scrape_configs"]]
    assert {"serviceMonitor/mlops/riskray-serve/0", "podMonitor/mlops/ray-head/0",
            "podMonitor/mlops/ray-workers/0"} <= set(jobs), jobs
    promtool = str(control_plane.binary(kubernetes, "promtool"))
    checked = subprocess.run([promtool, "check", "rules", *map(str, files)], capture_output=True, text=True,
                             timeout=60)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    # --syntax-only: the files it names (rule globs, service-account credentials) live in the pod, not here
    checked = subprocess.run([promtool, "check", "config", "--syntax-only", str(config)], capture_output=True,
                             text=True, timeout=60)
    assert checked.returncode == 0, checked.stdout + checked.stderr
