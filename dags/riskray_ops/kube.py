"""The retraining DAG's Kubernetes mode: training and evaluation run as KubeRay RayJobs made from the template
ConfigMap (cluster/base/ray/rayjob-training.yaml), and Serve reloads by a patch of the RayService's serveConfigV2
(the operator owns the Serve app: a direct Serve REST deploy would be overwritten). Plain REST with the pod's
service-account token, so Airflow's environment needs no Kubernetes client.

A RayJob's name is derived from the Ray job submission id (one per DAG run, task and attempt): an Airflow retry of a
task whose RayJob still exists attaches to it instead of creating a second one.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import yaml

from .ray_jobs import JobResult, RayJobError, RayJobs, tail

SERVICE_ACCOUNT = Path("/var/run/secrets/kubernetes.io/serviceaccount")
TEMPLATE_CONFIGMAP, TEMPLATE_KEY = "riskray-rayjob-template", "rayjob.yaml"
RAYSERVICE = "riskray-serve"
APPLICATION = "riskray"
DEPLOYMENT = "FraudDetector"  # app.prediction_service.DEPLOYMENT (no import here: a unit test pins it)
FINISHED = {"SUCCEEDED", "FAILED", "STOPPED"}


# KubeRay names the job's RayCluster after the RayJob plus a suffix, and refuses (status ValidationFailed) a RayJob
# name longer than 47 characters (MaxRayJobNameLength, KubeRay 1.5); found by the operator on the local control plane
MAX_RAYJOB_NAME = 47


def rayjob_name(submission_id: str) -> str:
    """A DNS-1123 name KubeRay accepts (at most 47 characters), stable for one submission id and readable at its
    start."""
    digest = hashlib.sha256(submission_id.encode()).hexdigest()[:10]
    room = MAX_RAYJOB_NAME - len("rr--") - len(digest)
    readable = re.sub(r"[^a-z0-9-]+", "-", submission_id.lower()).strip("-")[:room].strip("-")
    return f"rr-{readable}-{digest}"


def rayjob(template: dict[str, Any], name: str, entrypoint: str, env: dict[str, str]) -> dict[str, Any]:
    """The template with this run's name, entrypoint and RISKRAY_* thresholds (as the job's runtime env)."""
    job = yaml.safe_load(yaml.safe_dump(template))  # a deep copy
    job["metadata"] = {**job.get("metadata", {}), "name": name,
                       "labels": {**job.get("metadata", {}).get("labels", {}), "riskray.io/submitted-by": "airflow"}}
    job["spec"]["entrypoint"] = entrypoint
    job["spec"]["runtimeEnvYAML"] = yaml.safe_dump({"env_vars": env}, sort_keys=True)
    return job


def serve_config_with(serve_config: str, user_config: dict[str, Any]) -> str:
    """serveConfigV2 with the deployment's user_config updated (KubeRay then reconfigures replicas in place)."""
    config = yaml.safe_load(serve_config)
    application = next(a for a in config["applications"] if a["name"] == APPLICATION)
    deployment = next(d for d in application["deployments"] if d["name"] == DEPLOYMENT)
    deployment["user_config"] = {**deployment.get("user_config", {}), **user_config}
    return yaml.safe_dump(config, sort_keys=False)


class Kube:
    """The namespace's API as the DAG uses it."""

    def __init__(self, api: str, namespace: str, token: str, verify: str | bool = True,
                 transport: httpx.BaseTransport | None = None) -> None:
        import ssl

        self.namespace = namespace
        trust = ssl.create_default_context(cafile=verify) if isinstance(verify, str) else verify  # a CA file's path
        self._http = httpx.Client(base_url=api.rstrip("/"), headers={"Authorization": f"Bearer {token}"},
                                  verify=trust, timeout=30, transport=transport)

    @classmethod
    def in_cluster(cls, namespace: str | None = None) -> Kube:
        """From the pod's service account (KUBERNETES_SERVICE_HOST/PORT and the mounted token and CA)."""
        import os

        api = f"https://{os.environ['KUBERNETES_SERVICE_HOST']}:{os.environ['KUBERNETES_SERVICE_PORT']}"
        ns = namespace or (SERVICE_ACCOUNT / "namespace").read_text().strip()
        return cls(api, ns, (SERVICE_ACCOUNT / "token").read_text().strip(), str(SERVICE_ACCOUNT / "ca.crt"))

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Kube:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _path(self, kind: str, name: str | None = None) -> str:
        prefix = "/api/v1" if kind == "configmaps" else "/apis/ray.io/v1"
        return f"{prefix}/namespaces/{self.namespace}/{kind}" + (f"/{name}" if name else "")

    def _check(self, response: httpx.Response, what: str) -> dict[str, Any]:
        if response.status_code >= 400:
            raise RayJobError(f"Kubernetes refused {what}: HTTP {response.status_code} {response.text[:500]}")
        return response.json()

    # --- RayJobs ---------------------------------------------------------------------------------------------
    def template(self) -> dict[str, Any]:
        data = self._check(self._http.get(self._path("configmaps", TEMPLATE_CONFIGMAP)), "the RayJob template")
        return yaml.safe_load(data["data"][TEMPLATE_KEY])

    def get_rayjob(self, name: str) -> dict[str, Any] | None:
        response = self._http.get(self._path("rayjobs", name))
        return None if response.status_code == 404 else self._check(response, f"RayJob {name}")

    def start(self, submission_id: str, entrypoint: str, env: dict[str, str],
              say: Callable[[str], None] = print) -> str:
        """Create this task's RayJob, or attach to it when an earlier try of the task created it."""
        name = rayjob_name(submission_id)
        if self.get_rayjob(name) is not None:
            say(f"attaching to RayJob {name}")
            return name
        self._check(self._http.post(self._path("rayjobs"), json=rayjob(self.template(), name, entrypoint, env)),
                    f"RayJob {name}")
        say(f"created RayJob {name}: {entrypoint}")
        return name

    def wait(self, name: str, timeout_s: float, say: Callable[[str], None] = print, poll_s: float = 5.0
             ) -> JobResult:
        """Until the RayJob's Ray job ends; its log read through the job cluster's dashboard (kept a while after
        success by the template's deletion rules, so the result line can be read)."""
        deadline = time.monotonic() + timeout_s
        while True:
            job = self.get_rayjob(name)
            if job is None:
                raise RayJobError(f"RayJob {name} disappeared")
            status = job.get("status", {})
            if status.get("jobDeploymentStatus") in {"Failed", "ValidationFailed"}:
                raise RayJobError(f"RayJob {name} failed to deploy: {status.get('message', '')}")
            if status.get("jobStatus") in FINISHED:
                break
            if time.monotonic() > deadline:
                raise RayJobError(f"RayJob {name} still {status.get('jobStatus') or 'pending'} after {timeout_s:.0f} s")
            time.sleep(poll_s)
        with RayJobs(status["dashboardURL"] if "://" in status["dashboardURL"]
                     else f"http://{status['dashboardURL']}") as ray:
            logs = ray.logs(status["jobId"])
        for line in logs.splitlines():
            say(line)
        if status["jobStatus"] != "SUCCEEDED":
            raise RayJobError(f"RayJob {name} {status['jobStatus']}: {status.get('message', '')}\nlast log lines:\n"
                              + tail(logs))
        return JobResult(name, status["jobStatus"], logs, attached=False)

    # --- Serve -----------------------------------------------------------------------------------------------
    def reload_serve(self, user_config: dict[str, Any], say: Callable[[str], None] = print) -> None:
        """Patch the RayService's serveConfigV2 with the new user_config (e.g. the champion's version)."""
        path = self._path("rayservices", RAYSERVICE)
        current = self._check(self._http.get(path), f"RayService {RAYSERVICE}")["spec"]["serveConfigV2"]
        patch = {"spec": {"serveConfigV2": serve_config_with(current, user_config)}}
        self._check(self._http.patch(path, json=patch, headers={"Content-Type": "application/merge-patch+json"}),
                    f"the patch of RayService {RAYSERVICE}")
        say(f"RayService {RAYSERVICE}: user_config {user_config}")
