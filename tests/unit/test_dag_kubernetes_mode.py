"""The retraining DAG's Kubernetes mode (dags/riskray_ops/kube.py) as far as it is pure logic: the RayJob made from
the shipped template, names a retry finds again (and KubeRay accepts), the serveConfigV2 patch that reloads Serve in
place. Its requests to a real API server, as its real service account, are tests/integration/test_kubernetes.py's."""

from __future__ import annotations

import re

import yaml

from app.cli import cluster
from app.operations import serving
from dags.riskray_ops import kube

TEMPLATE = yaml.safe_load((cluster.CLUSTER_DIR / "base" / "ray" / "rayjob-training.yaml").read_text())
SUBMISSION = "riskray_retraining--manual__2026-12-04T02_00_00_00_00--retrain--attempt-2"


def test_rayjob_names_are_valid_dns_labels_stable_per_submission_and_distinct_per_attempt() -> None:
    name = kube.rayjob_name(SUBMISSION)
    assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", name) and len(name) <= kube.MAX_RAYJOB_NAME == 47
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
