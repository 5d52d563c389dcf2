"""riskray_retraining: every night, check drift; when the champion has drifted or lost accuracy, train a challenger
as a Ray job, compare it with the champion on the same held-out data, promote it only if it is better, have Serve
reload in place, validate the deployment (rolling back when it fails) and alert on any failure.

Every heavy step is a Ray job running one of riskray's own entry points (`riskray drift`, `riskray
train`, `riskray compare`, `riskray promote`, `riskray rollback`) through the Ray Jobs REST API; this process
imports neither Ray nor riskray. Where things are comes from Airflow connections, which `riskray stack up --with
airflow` renders from riskray's settings:

* ``riskray_ray`` (the Ray dashboard: job submission), ``riskray_serve`` (the prediction API),
  ``riskray_mlflow`` (the registry; extra ``{"registered_model": ...}``);
* ``riskray_slack`` / ``riskray_pagerduty``: alert channels, off while unset.

The periods, all in event time (UTC), from the run's ``as_of`` (default: when the run was due):

* drift: served inputs of ``[as_of - drift_window_days, as_of)``; realised AUC of the champion's prediction cohorts
  (days) of the last ``accuracy_window_days`` whose labels have matured by then (the label maturity curve), and its
  AUC estimated from the calibrated scores of the drift window;
* comparison (held out): ``[as_of - label_delay_days - compare_days, as_of - label_delay_days)``;
* training: the ``train_days`` before the comparison period, so neither model has seen the rows it is judged on.
"""

from __future__ import annotations

import logging
import os
import shlex
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from airflow.sdk import Connection, Param, dag, get_current_context, task
from airflow.sdk.exceptions import AirflowFailException
from riskray_ops import alerts, jobs, kube, ray_jobs, serve_checks

DAG_ID = "riskray_retraining"
SERVE_CONN, MLFLOW_CONN = "riskray_serve", "riskray_mlflow"
RESULT = "riskray-result"  # app.job_results: `riskray-result <kind>: <json>`
TIME = "%Y-%m-%dT%H:%M:%S"

log = logging.getLogger(__name__)
# Read when the DAG file is parsed (default_args cannot come from params): how long a failed task waits before
# its one retry. The tests shorten it; the default leaves a busy Ray head time to recover.
RETRY_DELAY = timedelta(seconds=float(os.environ.get("RISKRAY_DAG_RETRY_DELAY_S", "60")))
# Nightly by default (riskray's setting airflow_dag_schedule); empty for a world whose runs are all triggered (the
# tests', the demo's): a scheduled catch-up run would otherwise judge that world the moment Airflow starts.
SCHEDULE = os.environ.get("RISKRAY_DAG_SCHEDULE", "0 2 * * *") or None
# Jobs run in riskray_ops.jobs.MODE: "ray" (the Ray Jobs REST API) or "kubernetes" (one KubeRay RayJob per job, Serve
# reloaded by patching the RayService: riskray_ops/kube.py).

PARAMS = {
    "as_of": Param(None, type=["null", "string"], format="date-time",
                   description="The time the run judges (event time, UTC); default: when the run was due."),
    "force_retrain": Param(False, type="boolean", description="Retrain whatever the drift check says."),
    "drift_psi_act": Param(0.25, type="number", exclusiveMinimum=0,
                           description="Retrain when a model input's PSI is over this."),
    "drift_window_days": Param(7, type="number", exclusiveMinimum=0, description="Served inputs of the last N days."),
    "accuracy_max_drop": Param(0.05, type="number", exclusiveMinimum=0, maximum=1,
                               description="Retrain when the champion's AUC, realised on its mature cohorts or "
                                           "estimated from its calibrated scores of the drift window, falls more "
                                           "than this share under its training AUC."),
    "accuracy_min_maturity": Param(0.8, type="number", exclusiveMinimum=0, maximum=1,
                                   description="A day's predictions count for realised AUC once this share of its "
                                               "frauds is expected known (the label maturity curve)."),
    "accuracy_window_days": Param(30, type="number", exclusiveMinimum=0),
    "label_horizon_days": Param(90, type="number", exclusiveMinimum=0,
                                description="The maturity curve counts fraud reports within N days of the "
                                            "transaction."),
    "label_delay_days": Param(7, type="integer", minimum=0, description="Days until a transaction's label is known."),
    "compare_days": Param(7, type="number", exclusiveMinimum=0, description="The held-out comparison period."),
    "promotion_metric": Param("roc_auc", enum=["roc_auc", "average_precision", "backtest_cost"],
                              description="backtest_cost: promote on the cost a day of each version's outcomes on "
                                          "the held-out period (its thresholds, the lists), lower wins."),
    "promotion_margin": Param(0.005, type="number", minimum=-1, maximum=1,
                              description="The challenger must beat the champion by this much (backtest_cost: a "
                                          "relative saving)."),
    "train_days": Param(30, type="number", exclusiveMinimum=0),
    "train_trials": Param(4, type="integer", minimum=0, description="Tune trials (0: default parameters)."),
    "train_args": Param("", type="string", description="More `riskray train` options, e.g. --cv-gap-days 1."),
    "challenger_version": Param(None, type=["null", "string"],
                                description="Judge this registered version instead of training one (a model trained "
                                            "outside the DAG); it goes through the same comparison and deployment."),
    "deploy_mode": Param("direct", enum=["direct", "canary", "shadow"],
                         description="canary/shadow: serve the challenger beside the champion first."),
    "observe_minutes": Param(5, type="number", minimum=0, description="How long a canary or shadow runs first."),
    "canary_share": Param(0.1, type="number", minimum=0, maximum=1),
    "smoke_requests": Param(5, type="integer", minimum=1),
    "validate_timeout_s": Param(120, type="number", exclusiveMinimum=0),
    "job_timeout_minutes": Param(60, type="number", exclusiveMinimum=0),
}


# --- helpers (run inside tasks) --------------------------------------------------------------------------------
def _as_of(context: Any) -> datetime:
    given = context["params"]["as_of"]
    when = datetime.fromisoformat(given) if given else context["dag_run"].run_after
    return (when if when.tzinfo else when.replace(tzinfo=UTC)).astimezone(UTC)


def _periods(context: Any) -> dict[str, datetime]:
    p = context["params"]
    as_of = _as_of(context)
    compare_end = as_of - timedelta(days=p["label_delay_days"])
    compare_start = compare_end - timedelta(days=p["compare_days"])
    return {"as_of": as_of, "compare_start": compare_start, "compare_end": compare_end,
            "train_start": compare_start - timedelta(days=p["train_days"]), "train_end": compare_start}


def _job_env(context: Any) -> dict[str, str]:
    """The run's thresholds, as the settings of the jobs it submits (RISKRAY_*)."""
    p = context["params"]
    return {"RISKRAY_DRIFT_PSI_ACT": str(p["drift_psi_act"]), "RISKRAY_DRIFT_WINDOW_DAYS": str(p["drift_window_days"]),
            "RISKRAY_ACCURACY_MAX_DROP": str(p["accuracy_max_drop"]),
            "RISKRAY_ACCURACY_WINDOW_DAYS": str(p["accuracy_window_days"]),
            "RISKRAY_ACCURACY_MIN_MATURITY": str(p["accuracy_min_maturity"]),
            "RISKRAY_LABEL_HORIZON_DAYS": str(p["label_horizon_days"]),
            "RISKRAY_LABEL_DELAY_DAYS": str(p["label_delay_days"]),
            "RISKRAY_PROMOTION_METRIC": p["promotion_metric"], "RISKRAY_PROMOTION_MARGIN": str(p["promotion_margin"])}


def _run_job(entrypoint: list[str], context: Any) -> ray_jobs.JobResult:
    """One job for this task, with the run's thresholds as its settings."""
    return jobs.run(entrypoint, context, _job_env(context), context["params"]["job_timeout_minutes"] * 60)


def _serve_beside(challenger: str, context: Any) -> None:
    """The challenger served beside the champion (canary or shadow)."""
    p = context["params"]
    if jobs.MODE == "kubernetes":
        with kube.Kube.in_cluster(jobs.NAMESPACE) as cluster:
            cluster.reload_serve({"challenger": challenger, "ab_mode": p["deploy_mode"],
                                  "canary_share": p["canary_share"]}, log.info)
        return
    _run_job(["riskray", "serve", "deploy", "--challenger", challenger, "--ab-mode", p["deploy_mode"],
              "--canary-share", str(p["canary_share"])], context)


def _move_champion(command: list[str], version: str, context: Any) -> None:
    """The champion alias moves (`riskray promote` / `rollback`); Serve follows in place: locally the command
    reloads it, on Kubernetes the RayService's user_config is patched (the operator owns the Serve app)."""
    _run_job(command, context)
    if jobs.MODE == "kubernetes":
        with kube.Kube.in_cluster(jobs.NAMESPACE) as cluster:
            cluster.reload_serve({"champion": version, "challenger": None, "ab_mode": "off"}, log.info)
    elif context["params"]["deploy_mode"] != "direct":
        _run_job(["riskray", "serve", "deploy"], context)  # the new champion alone again


def _alias(alias: str) -> str | None:
    conn = Connection.get(MLFLOW_CONN)
    name = conn.extra_dejson["registered_model"]
    response = httpx.get(f"{jobs.url(MLFLOW_CONN)}/api/2.0/mlflow/registered-models/alias",
                         params={"name": name, "alias": alias}, timeout=30)
    if response.status_code == 404 or "RESOURCE_DOES_NOT_EXIST" in response.text:
        return None
    response.raise_for_status()
    return str(response.json()["model_version"]["version"])


# --- the DAG -----------------------------------------------------------------------------------------------------
@dag(
    dag_id=DAG_ID,
    schedule=SCHEDULE,
    start_date=datetime(2026, 12, 1, tzinfo=UTC),
    catchup=False,
    max_active_runs=1,  # two runs would race for the champion alias
    params=PARAMS,
    default_args={"retries": 1, "retry_delay": RETRY_DELAY,
                  "on_failure_callback": [alerts.TaskFailureNotifier()]},
    tags=["riskray", "retraining"],
    doc_md=__doc__,
)
def riskray_retraining() -> None:
    @task.branch
    def check_drift() -> str:
        context = get_current_context()
        p, when = context["params"], _periods(context)
        job = _run_job(["riskray", "drift", "--as-of", when["as_of"].strftime(TIME)], context)
        report = job.result_line(f"{RESULT} report: ")
        context["ti"].xcom_push(key="report", value={k: report.get(k) for k in (
            "status", "retrain", "reasons", "model_version", "predictions", "triggers")})
        if report["retrain"] or p["force_retrain"]:
            why = "forced (force_retrain)" if not report["retrain"] else "; ".join(report["reasons"])
            # which signals decided (drift, matured accuracy, estimated accuracy): the alert names them first
            on = (", ".join(report.get("triggers") or []) if report["retrain"] else "force_retrain") or "the reasons"
            log.info("retraining on %s: %s", on, why)
            # news, not an incident: Slack only (a PagerDuty event opens an incident whatever its severity)
            alerts.post(f":arrows_counterclockwise: riskray: retraining champion {report['model_version']} on {on}: "
                        f"{why[:800]}", severity="info", page=False)
            return "retrain"
        log.info("no retraining: drift check says %s: %s", report["status"], "; ".join(report["reasons"]))
        return "skip_retraining"

    @task
    def skip_retraining() -> None:
        report = get_current_context()["ti"].xcom_pull(task_ids="check_drift", key="report")
        log.info("champion %s stays: %s", report["model_version"], "; ".join(report["reasons"]))

    @task
    def retrain() -> str:
        context = get_current_context()
        p, when = context["params"], _periods(context)
        if p["challenger_version"]:
            log.info("challenger: version %s, given (challenger_version): no training", p["challenger_version"])
            return str(p["challenger_version"])
        job = _run_job(["riskray", "train", "--since", when["train_start"].strftime(TIME),
                        "--until", when["train_end"].strftime(TIME), "--trials", str(p["train_trials"]),
                        *shlex.split(p["train_args"])], context)
        version = str(job.result_line(f"{RESULT} model: ")["version"])
        registered = _alias("challenger")
        if registered != version:
            raise RuntimeError(f"the training job reported version {version}, the registry's challenger is "
                               f"{registered}")
        log.info("challenger: version %s (trained on %s .. %s)", version, when["train_start"], when["train_end"])
        return version

    @task.branch
    def evaluate(challenger: str) -> str:
        context = get_current_context()
        when = _periods(context)
        job = _run_job(["riskray", "compare", "--challenger", challenger,
                        "--since", when["compare_start"].strftime(TIME),
                        "--until", when["compare_end"].strftime(TIME)], context)
        comparison = job.result_line(f"{RESULT} comparison: ")
        context["ti"].xcom_push(key="comparison", value=comparison)
        log.info("%s -> %s", comparison["reason"], "promote" if comparison["promote"] else "keep the champion")
        return "deploy" if comparison["promote"] else "keep_champion"

    @task
    def keep_champion(challenger: str) -> None:
        comparison = get_current_context()["ti"].xcom_pull(task_ids="evaluate", key="comparison")
        log.info("challenger %s not promoted: %s", challenger, comparison["reason"])

    @task
    def deploy(challenger: str) -> str:
        context = get_current_context()
        p = context["params"]
        previous = _alias("champion")
        if p["deploy_mode"] != "direct":
            _serve_beside(challenger, context)
            log.info("%s of version %s beside champion %s for %s min", p["deploy_mode"], challenger, previous,
                     p["observe_minutes"])
            time.sleep(p["observe_minutes"] * 60)
            serve_checks.healthy(jobs.url(SERVE_CONN), p["validate_timeout_s"], log.info)
        # the alias moves, then Serve reloads in place (user_config -> reconfigure): no restart, no failed request
        _move_champion(["riskray", "promote", challenger], challenger, context)
        log.info("champion: %s -> %s", previous, challenger)
        return str(previous)

    @task
    def validate(challenger: str, previous: str) -> None:
        context = get_current_context()
        p = context["params"]
        try:
            serve_checks.validate(jobs.url(SERVE_CONN), challenger, p["smoke_requests"], p["validate_timeout_s"],
                                  log.info)
        except serve_checks.ValidationError as error:
            log.error("%s; rolling back to %s", error, previous)
            _move_champion(["riskray", "rollback"], previous, context)
            alerts.post(f":leftwards_arrow_with_hook: riskray: version {challenger} failed validation and was rolled "
                        f"back to {previous}: {error}")
            raise

    @task(trigger_rule="one_failed", retries=0, on_failure_callback=[])
    def alert() -> None:
        """Once per failed run, whichever task failed (each failed task has also notified on its own)."""
        dag_run = get_current_context()["dag_run"]
        channels = alerts.post(f":rotating_light: riskray retraining run {dag_run.run_id} failed: see the failed "
                               "task's log")
        log.info("alert posted to %s", ", ".join(channels) or "no channel (none configured)")
        # the run ends failed, as it should: this task is its only end, and would otherwise end it 'success'
        raise AirflowFailException(f"run {dag_run.run_id} failed; alert posted to {', '.join(channels) or 'none'}")

    drift = check_drift()
    challenger = retrain()
    decision = evaluate(challenger)
    previous = deploy(challenger)
    skipped, kept = skip_retraining(), keep_champion(challenger)
    drift >> [challenger, skipped]
    decision >> [previous, kept]
    # Downstream of the three ends only: a branch skips every direct downstream it does not choose, and a failure
    # anywhere reaches an end as failed or upstream_failed, which one_failed counts.
    [skipped, kept, validate(challenger, previous)] >> alert()


riskray_retraining()
