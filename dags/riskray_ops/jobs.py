"""One riskray entry point run as a job for one task: a Ray job through the Ray Jobs REST API (the local stack, a
long-lived RayCluster) or, in Kubernetes mode, one KubeRay RayJob from the template ConfigMap (``kube``). Shared by
the DAGs; where things are comes from Airflow connections."""

from __future__ import annotations

import logging
import os
import shlex
from typing import Any

from airflow.sdk import Connection
from riskray_ops import kube, ray_jobs

RAY_CONN = "riskray_ray"
# "ray" or "kubernetes" (the RayJob template, Airflow's pods running as the riskray-airflow ServiceAccount)
MODE = os.environ.get("RISKRAY_DAG_MODE", "ray")
NAMESPACE = os.environ.get("RISKRAY_DAG_NAMESPACE") or None  # kubernetes mode; default: the pod's own

log = logging.getLogger(__name__)


def url(conn_id: str) -> str:
    conn = Connection.get(conn_id)
    return f"{conn.conn_type if conn.conn_type in ('http', 'https') else 'http'}://{conn.host}:{conn.port}"


def run(entrypoint: list[str], context: Any, env: dict[str, str], timeout_s: float) -> ray_jobs.JobResult:
    """One job for this task; its log streamed into the task log. A retry attaches to a running job."""
    ti = context["ti"]
    base = ray_jobs.submission_id(ti.dag_id, ti.run_id, ti.task_id)
    if MODE == "kubernetes":
        with kube.Kube.in_cluster(NAMESPACE) as cluster:
            name = cluster.start(ray_jobs.attempt_id(base, ti.try_number), shlex.join(entrypoint), env, log.info)
            return cluster.wait(name, timeout_s, log.info)
    with ray_jobs.RayJobs(url(RAY_CONN)) as jobs:
        return jobs.run(base, ti.try_number, shlex.join(entrypoint), timeout_s, env, log.info)
