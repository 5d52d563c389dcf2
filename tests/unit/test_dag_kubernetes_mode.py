"""The retraining DAG's Kubernetes mode (dags/riskray_ops/kube.py) as far as it is our logic: the RayJob made from
the shipped template, names a retry finds again, the serveConfigV2 patch that reloads Serve in place, and the
requests sent to the API (answered here by a fake namespace: no Kubernetes runs in these tests)."""

from __future__ import annotations

import json
import re
from typing import Any

import httpx
import yaml

from app.cli import cluster
from app.operations import serving
from dags.riskray_ops import kube

TEMPLATE = yaml.safe_load((cluster.CLUSTER_DIR / "base" / "ray" / "rayjob-training.yaml").read_text())
SUBMISSION = "riskray_retraining--manual__2026-12-04T02_00_00_00_00--retrain--attempt-2"


def test_rayjob_names_are_valid_dns_labels_stable_per_submission_and_distinct_per_attempt() -> None:
    name = kube.rayjob_name(SUBMISSION)
    assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", name) and len(name) <= 63
    assert name == kube.rayjob_name(SUBMISSION)
    assert name != kube.rayjob_name(SUBMISSION.replace("attempt-2", "attempt-3"))


def test_the_rayjob_is_the_template_with_the_runs_name_entrypoint_and_thresholds() -> None:
    job = kube.rayjob(TEMPLATE, "rr-x", "riskray train --trials 2", {"RISKRAY_LABEL_DELAY_DAYS": "7"})
    assert job["metadata"]["name"] == "rr-x" and job["spec"]["entrypoint"] == "riskray train --trials 2"
    assert yaml.safe_load(job["spec"]["runtimeEnvYAML"]) == {"env_vars": {"RISKRAY_LABEL_DELAY_DAYS": "7"}}
    assert job["spec"]["rayClusterSpec"] == TEMPLATE["spec"]["rayClusterSpec"]
    assert TEMPLATE["spec"]["entrypoint"] != job["spec"]["entrypoint"]  # the template itself is untouched


def test_the_serve_patch_changes_only_the_user_config_so_replicas_reconfigure_in_place() -> None:
    current = yaml.safe_dump(serving.production_config())
    patched = yaml.safe_load(kube.serve_config_with(current, {"champion": "7", "challenger": None}))
    expected = serving.production_config()
    expected["applications"][0]["deployments"][0]["user_config"].update(champion="7", challenger=None)
    assert patched == expected


class FakeNamespace:
    """What the API server answers the DAG: the template ConfigMap, RayJobs, the RayService."""

    def __init__(self, job_status: dict[str, Any] | None = None) -> None:
        self.rayjobs: dict[str, dict[str, Any]] = {}
        self.serve_config = yaml.safe_dump(serving.production_config())
        self.job_status = job_status or {}
        self.requests: list[tuple[str, str]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        path, method = request.url.path, request.method
        self.requests.append((method, path))
        assert request.headers["Authorization"] == "Bearer token"
        if path.endswith("/configmaps/riskray-rayjob-template"):
            return httpx.Response(200, json={"data": {"rayjob.yaml": yaml.safe_dump(TEMPLATE)}})
        if path.endswith("/rayjobs") and method == "POST":
            job = json.loads(request.content)
            self.rayjobs[job["metadata"]["name"]] = {**job, "status": self.job_status}
            return httpx.Response(201, json=job)
        if "/rayjobs/" in path:
            found = self.rayjobs.get(path.rsplit("/", 1)[1])
            return httpx.Response(200, json=found) if found else httpx.Response(404, json={})
        if path.endswith("/rayservices/riskray-serve") and method == "GET":
            return httpx.Response(200, json={"spec": {"serveConfigV2": self.serve_config}})
        if path.endswith("/rayservices/riskray-serve") and method == "PATCH":
            assert request.headers["Content-Type"] == "application/merge-patch+json"
            self.serve_config = json.loads(request.content)["spec"]["serveConfigV2"]
            return httpx.Response(200, json={})
        return httpx.Response(404, json={})


def test_a_retried_task_attaches_to_its_rayjob_instead_of_creating_a_second() -> None:
    fake = FakeNamespace()
    with kube.Kube("https://api", "mlops", "token", transport=httpx.MockTransport(fake)) as api:
        first = api.start(SUBMISSION, "riskray train", {}, say=lambda line: None)
        again = api.start(SUBMISSION, "riskray train", {}, say=lambda line: None)
    assert first == again and list(fake.rayjobs) == [first]
    assert [m for m, p in fake.requests if p.endswith("/rayjobs")] == ["POST"]
    assert all(p.startswith(("/apis/ray.io/v1/namespaces/mlops/", "/api/v1/namespaces/mlops/"))
               for _, p in fake.requests)


def test_a_failed_rayjob_raises_with_its_status() -> None:
    fake = FakeNamespace({"jobDeploymentStatus": "Failed", "message": "no nodes"})
    with kube.Kube("https://api", "mlops", "token", transport=httpx.MockTransport(fake)) as api:
        name = api.start(SUBMISSION, "riskray train", {}, say=lambda line: None)
        try:
            api.wait(name, timeout_s=5, poll_s=0.01)
        except kube.RayJobError as error:
            assert "failed to deploy: no nodes" in str(error)
        else:
            raise AssertionError("a failed RayJob was taken for a success")


def test_reloading_serve_patches_the_rayservices_user_config() -> None:
    fake = FakeNamespace()
    with kube.Kube("https://api", "mlops", "token", transport=httpx.MockTransport(fake)) as api:
        api.reload_serve({"champion": "12"}, say=lambda line: None)
    user_config = yaml.safe_load(fake.serve_config)["applications"][0]["deployments"][0]["user_config"]
    assert user_config["champion"] == "12" and user_config["ab_mode"] == "off"
