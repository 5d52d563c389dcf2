"""The retraining DAG's helpers that need no Airflow (dags/riskray_ops): Ray job ids that let a retry attach, the
result lines read back from job logs, and the promotion verdict of `riskray compare`."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import httpx
import numpy as np
import pytest

from app import job_results
from dags.riskray_ops import ray_jobs
from training.compare import decide

SEED = 20261202
SINCE, UNTIL = datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 11, 8, tzinfo=UTC)


def test_submission_ids_are_stable_per_task_and_accepted_by_ray() -> None:
    first = ray_jobs.submission_id("riskray_retraining", "manual__2026-12-02T02:00:00+00:00", "retrain")
    assert first == ray_jobs.submission_id("riskray_retraining", "manual__2026-12-02T02:00:00+00:00", "retrain")
    assert first != ray_jobs.submission_id("riskray_retraining", "manual__2026-12-02T02:00:00+00:00", "evaluate")
    assert all(c.isalnum() or c in "_-" for c in first)
    assert ray_jobs.attempt_id(first, 1) == first and ray_jobs.attempt_id(first, 3).endswith("--attempt-3")


class FakeJobsApi:
    """The Ray Jobs REST API's answers for jobs in given states: what a retried task finds."""

    def __init__(self, jobs: dict[str, str]) -> None:
        self.jobs = dict(jobs)
        self.submitted: list[str] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if request.method == "POST" and path == "/api/jobs/":
            job_id = json.loads(request.content)["submission_id"]
            self.submitted.append(job_id)
            self.jobs[job_id] = "PENDING"
            return httpx.Response(200, json={"submission_id": job_id})
        job_id = path.removeprefix("/api/jobs/")
        if job_id in self.jobs:
            return httpx.Response(200, json={"status": self.jobs[job_id]})
        return httpx.Response(404)


@pytest.mark.parametrize(("earlier", "attempt", "expected", "attached"), [
    ({}, 1, "base", False),  # first try: submit
    ({"base": "RUNNING"}, 2, "base", True),  # the first try's job still runs: attach, no duplicate
    ({"base": "SUCCEEDED"}, 2, "base", True),  # it finished after the task died: use its result
    ({"base": "FAILED"}, 2, "base--attempt-2", False),  # it failed: this try submits its own
    ({"base": "FAILED", "base--attempt-2": "RUNNING"}, 3, "base--attempt-2", True),
])
def test_a_retry_attaches_to_a_live_or_finished_job_and_resubmits_after_a_failed_one(
        earlier: dict[str, str], attempt: int, expected: str, attached: bool) -> None:
    api = FakeJobsApi(earlier)
    with ray_jobs.RayJobs("http://ray.invalid", transport=httpx.MockTransport(api)) as jobs:
        job_id, was_attached = jobs.start("base", attempt, "riskray train", say=lambda line: None)
    assert (job_id, was_attached) == (expected, attached)
    assert api.submitted == ([] if attached else [expected])


def test_the_dag_reads_the_result_line_the_entry_points_print() -> None:
    payload = {"version": "7", "run_id": "abc"}
    logs = "training ...\n" + job_results.line(job_results.MODEL, json.dumps(payload)) + "\ndone\n"
    result = ray_jobs.JobResult("job", "SUCCEEDED", logs, attached=False)
    # the DAG writes the prefix itself (it cannot import app): both sides must agree
    assert result.result_line(f"{job_results.PREFIX} {job_results.MODEL}: ") == payload
    with pytest.raises(ray_jobs.RayJobError, match="printed no"):
        result.result_line(f"{job_results.PREFIX} {job_results.COMPARISON}: ")


def test_the_dag_file_uses_the_entry_points_result_prefix() -> None:
    from pathlib import Path

    dag_source = (Path(__file__).parents[2] / "dags" / "riskray_retraining.py").read_text()
    assert f'RESULT = "{job_results.PREFIX}"' in dag_source
    for kind in (job_results.REPORT, job_results.MODEL, job_results.COMPARISON):
        assert f'{{RESULT}} {kind}: ' in dag_source


def _scores(n: int, separation: float, rng: np.random.Generator, labels: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-(rng.normal(0, 1, n) + separation * labels)))


def test_a_challenger_is_promoted_only_when_it_beats_the_champion_by_the_margin() -> None:
    rng = np.random.default_rng(SEED)
    labels = (rng.random(4000) < 0.02).astype(int)
    better, worse = _scores(4000, 2.5, rng, labels), _scores(4000, 1.0, rng, labels)
    won = decide(labels, ("5", better), ("4", worse), "roc_auc", 0.005, SINCE, UNTIL)
    assert won.promote and won.challenger.roc_auc > won.champion.roc_auc + 0.005  # type: ignore[union-attr]
    lost = decide(labels, ("5", worse), ("4", better), "roc_auc", 0.005, SINCE, UNTIL)
    assert not lost.promote and "< margin" in lost.reason
    gain = won.challenger.average_precision - won.champion.average_precision  # type: ignore[union-attr]
    short = decide(labels, ("5", better), ("4", worse), "average_precision", gain + 0.01, SINCE, UNTIL)
    assert not short.promote  # better, but not by enough
    first = decide(labels, ("1", worse), None, "roc_auc", 0.005, SINCE, UNTIL)
    assert first.promote and first.champion is None
    same = decide(labels, ("4", better), ("4", better), "roc_auc", -1, SINCE, UNTIL)
    assert not same.promote and "already the champion" in same.reason


def test_by_backtested_cost_the_cheaper_challenger_wins_by_a_relative_margin() -> None:
    rng = np.random.default_rng(SEED)
    labels = (rng.random(400) < 0.05).astype(int)
    scores = _scores(400, 2.0, rng, labels)
    cheaper = decide(labels, ("5", scores), ("4", scores), "backtest_cost", 0.05, SINCE, UNTIL,
                     costs={"5": 90.0, "4": 100.0})
    assert cheaper.promote and "saves +10.0% >= margin +5.0%" in cheaper.reason
    assert cheaper.challenger.backtest_cost_per_day == 90.0
    barely = decide(labels, ("5", scores), ("4", scores), "backtest_cost", 0.05, SINCE, UNTIL,
                    costs={"5": 97.0, "4": 100.0})
    assert not barely.promote and "< margin" in barely.reason


def test_the_dags_fallback_schedule_is_the_settings_default() -> None:
    # the DAG cannot import app (Airflow's environment has no riskray), so the nightly cron is written twice
    import re
    from pathlib import Path

    from app.config import Settings

    source = (Path(ray_jobs.__file__).parent.parent / "riskray_retraining.py").read_text()
    fallback = re.search(r'os\.environ\.get\("RISKRAY_DAG_SCHEDULE", "([^"]*)"\)', source)
    assert fallback is not None and fallback.group(1) == Settings.model_fields["airflow_dag_schedule"].default


# DAG param -> the riskray setting it restates (the DAG cannot import app, so its defaults are written twice)
DAG_PARAM_SETTINGS = {
    "drift_psi_act": "drift_psi_act",
    "drift_window_days": "drift_window_days",
    "accuracy_max_drop": "accuracy_max_drop",
    "accuracy_window_days": "accuracy_window_days",
    "accuracy_min_maturity": "accuracy_min_maturity",
    "label_horizon_days": "label_horizon_days",
    "label_delay_days": "label_delay_days",
    "compare_days": "compare_days",
    "promotion_metric": "promotion_metric",
    "promotion_margin": "promotion_margin",
    "train_days": "train_days",
}


def test_the_dags_param_defaults_are_the_settings_defaults() -> None:
    # Airflow is not installed here: the PARAMS dict is read from the DAG file's syntax, each Param's first argument
    import ast
    from pathlib import Path

    from app.config import Settings

    tree = ast.parse((Path(ray_jobs.__file__).parent.parent / "riskray_retraining.py").read_text())
    params = next(node.value for node in tree.body if isinstance(node, ast.Assign)
                  and any(isinstance(t, ast.Name) and t.id == "PARAMS" for t in node.targets))
    assert isinstance(params, ast.Dict)
    defaults = {ast.literal_eval(key): ast.literal_eval(value.args[0])  # type: ignore[arg-type, attr-defined]
                for key, value in zip(params.keys, params.values, strict=True)}
    assert set(DAG_PARAM_SETTINGS) <= set(defaults)
    for param, setting in DAG_PARAM_SETTINGS.items():
        assert defaults[param] == Settings.model_fields[setting].default, param
