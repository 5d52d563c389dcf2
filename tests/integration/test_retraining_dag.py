"""The retraining DAG on a real Airflow (`riskray stack up --with airflow`: api-server, scheduler, dag-processor,
triggerer, metadata in the stack's PostgreSQL), submitting real Ray jobs on the stack's head, against the real
MLflow registry and the Serve app of the pinned served world (tests/integration/served_world.py: its champion
serves; the week after DRIFT_AT is drifted).

Scenarios run with ``dag.test()`` in Airflow's own environment (tasks in that process, every job real); one runs
through the scheduler, triggered over Airflow's REST API.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from app.cli.demo.airflow_runs import AirflowRuns
from app.config import Settings
from app.operations import airflow
from app.registry import CHAMPION, Registry

from .model_copies import copy_version
from .served_world import DRIFT_AT, WORLD_END, World, cli_time

pytestmark = pytest.mark.integration

RUNNER = Path(__file__).with_name("dag_test_runner.py")
NIGHTLY = Settings.model_fields["airflow_dag_schedule"].default  # the scratch world's Airflow runs only triggered runs
RESULT = "riskray-dag-test: "
FAST = {"train_trials": 0, "smoke_requests": 3, "job_timeout_minutes": 15}
# After the drifted week has matured (label delay 7 d): the drift window spans both served weeks, the comparison
# the last 3 drifted days, training the 14 days before them (so 4 drifted days and 10 of the same world).
DRIFTED = {**FAST, "as_of": cli_time(WORLD_END + timedelta(days=7)), "drift_window_days": 14, "compare_days": 3,
           "train_days": 14, "train_args": "--cv-gap-days 1", "promotion_margin": 0.0}


class Webhook:
    """A local stand-in for Slack's incoming webhook: records every POSTed body."""

    def __init__(self) -> None:
        received: list[dict[str, Any]] = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                received.append(json.loads(body or b"{}"))
                self.send_response(200)
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: object) -> None:
                pass

        self.received = received
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/services/T0/B0/riskray-test"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _dag_test(settings: Settings, conf: dict[str, Any], **env: str) -> tuple[dict[str, Any], str]:
    """One ``dag.test()`` run; (final states, the whole log). The DAG is paused in the running Airflow first:
    dag.test() writes its run into the same metadata database, and the live scheduler would otherwise pick the
    run's tasks up too and run them in its own environment (without this test's connections)."""
    _set_paused(settings, True)
    environment = {**os.environ, **airflow.environment(settings), "RISKRAY_DAG_RETRY_DELAY_S": "1", **env}
    result = subprocess.run([str(settings.airflow_venv / "bin" / "python"), str(RUNNER), json.dumps(conf),
                             str(airflow.DAGS_DIR)], env=environment, capture_output=True, text=True, timeout=1200)
    logs = result.stdout + result.stderr
    lines = [line for line in logs.splitlines() if line.startswith(RESULT)]
    assert result.returncode == 0 and lines, logs[-5000:]
    return json.loads(lines[-1][len(RESULT):]), logs


def _champion(settings: Settings) -> str:
    with Registry(settings) as registry:
        found = registry.by_alias(CHAMPION)
    assert found is not None
    return found.version


def _served_version(world: World) -> str:
    health = world.api.get("/health").json()
    answer = world.api.post("/predict", json={"amount": 12.0, "merchant_id": 7, "customer_id": 11})
    assert answer.status_code == 200, answer.text
    assert health["model_version"] == answer.json()["model_version"], (health, answer.json())
    return str(health["model_version"])


def test_the_dag_imports_with_its_schedule_and_task_graph(stack: Settings) -> None:
    script = """
import json, sys
from airflow.dag_processing.dagbag import DagBag
bag = DagBag(dag_folder=sys.argv[1])
dag = bag.dags["riskray_retraining"]
print(json.dumps({"errors": {k: str(v) for k, v in bag.import_errors.items()}, "schedule": dag.timetable.expression,
                  "catchup": dag.catchup, "params": sorted(dag.params.keys()),
                  "graph": {t.task_id: sorted(t.downstream_task_ids) for t in dag.tasks},
                  "rules": {t.task_id: getattr(t.trigger_rule, "value", t.trigger_rule) for t in dag.tasks},
                  "maintenance": {"schedule": bag.dags["riskray_store_maintenance"].timetable.expression,
                                  "tasks": [t.task_id for t in bag.dags["riskray_store_maintenance"].tasks]}}))
"""
    result = subprocess.run([str(stack.airflow_venv / "bin" / "python"), "-c", script,
                             str(airflow.DAGS_DIR)],
                            env={**os.environ, **airflow.environment(stack), "RISKRAY_DAG_SCHEDULE": NIGHTLY},
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    found = json.loads(result.stdout.strip().splitlines()[-1])
    assert found["errors"] == {} and found["schedule"] == NIGHTLY and found["catchup"] is False
    assert {"force_retrain", "drift_psi_act", "accuracy_max_drop", "promotion_margin"} <= set(found["params"])
    assert found["graph"] == {
        "check_drift": ["retrain", "skip_retraining"],
        "retrain": ["deploy", "evaluate", "keep_champion", "validate"],
        "evaluate": ["deploy", "keep_champion"],
        "deploy": ["validate"],
        "validate": ["alert"], "skip_retraining": ["alert"], "keep_champion": ["alert"], "alert": [],
    }
    assert found["rules"]["alert"] == "one_failed"
    # the store's nightly upkeep (riskray db maintain), before the retraining run
    assert found["maintenance"] == {"schedule": "30 1 * * *", "tasks": ["maintain"]}


def _set_paused(settings: Settings, paused: bool) -> None:
    with AirflowRuns(settings) as runs:
        runs.wait_for_dag(120)
        runs.set_paused(paused)


def test_without_drift_the_scheduler_runs_a_triggered_run_that_skips_retraining_and_keeps_the_champion(
        airflow_stack: Settings, served_world: World) -> None:
    """Through the running Airflow: triggered over its REST API, scheduled, run by the LocalExecutor."""
    before = _champion(airflow_stack)
    with AirflowRuns(airflow_stack) as runs:
        runs.wait_for_dag(120)
        run_id = runs.trigger({**FAST, "as_of": cli_time(DRIFT_AT)})  # the same-world week: no drift
        state = runs.follow(run_id, 600, lambda task: None)
        states = {t.task_id: t.state for t in runs.tasks(run_id)}
    assert state == "success", states
    assert states["check_drift"] == "success" and states["skip_retraining"] == "success"
    assert states["retrain"] == "skipped" and states["alert"] == "skipped"
    assert _champion(airflow_stack) == before == _served_version(served_world)


def test_the_store_maintenance_dag_runs_riskray_db_maintain_as_a_job_and_makes_the_days_ahead(
        airflow_stack: Settings) -> None:
    """Triggered through the running Airflow; its one task runs `riskray db maintain` as a Ray job on the world's
    store, which then holds today's partition and the days ahead."""
    from datetime import UTC, datetime

    from app import db

    # the days are the clock's: the last day ahead as of before the run was made, whenever the job ran after it
    last_ahead = datetime.now(UTC) + timedelta(days=airflow_stack.store_partitions_ahead_days)
    with AirflowRuns(airflow_stack, dag_id="riskray_store_maintenance") as runs:
        runs.wait_for_dag(120)
        run_id = runs.trigger({})
        state = runs.follow(run_id, 300, lambda task: None)
        states = {t.task_id: t.state for t in runs.tasks(run_id)}
    assert state == "success" and states == {"maintain": "success"}, states
    with db.connection(airflow_stack) as conn, conn.cursor() as cur:
        for table in ("transactions", "predictions"):
            cur.execute("SELECT to_regclass(%s)", (f"{table}_{last_ahead:%Y%m%d}",))
            assert cur.fetchone()[0] is not None, table


def test_a_failing_training_job_alerts_the_webhook_and_keeps_the_old_model_serving(
        airflow_stack: Settings, served_world: World) -> None:
    before = _champion(airflow_stack)
    webhook = Webhook()
    try:
        slack = json.dumps({"conn_type": "slackwebhook", "password": webhook.url})
        # --folds 1 is refused by `riskray train`: the Ray job fails, on both tries
        run, logs = _dag_test(airflow_stack, {**FAST, "as_of": cli_time(DRIFT_AT), "force_retrain": True,
                                              "train_args": "--folds 1"}, AIRFLOW_CONN_RISKRAY_SLACK=slack)
    finally:
        webhook.close()
    assert run["state"] == "failed" and run["tasks"]["retrain"] == "failed", run
    assert run["tasks"]["deploy"] == "upstream_failed" and run["tasks"]["alert"] == "failed"  # the alert ran
    texts = [body["text"] for body in webhook.received]
    said = "\n".join(line for line in logs.splitlines() if "riskray_ops.alerts" in line or "alert posted" in line)
    assert any("retraining run" in t and "failed" in t for t in texts), (texts, said)  # the run's alert task
    assert any("task retrain failed" in t for t in texts), (texts, said)  # and the failed task's own notifier
    assert _champion(airflow_stack) == before == _served_version(served_world)


def test_a_challenger_no_cheaper_than_the_champion_by_the_margin_on_backtested_cost_is_not_promoted(
        airflow_stack: Settings, served_world: World) -> None:
    before = _champion(airflow_stack)
    # the champion's own model as a new version (its thresholds too): the same outcomes on the drifted held-out
    # days, so the same cost; promoted on backtested cost (the DAG param), a saving of 0 is under the margin
    twin = copy_version(airflow_stack, before)
    run, logs = _dag_test(airflow_stack, {**DRIFTED, "challenger_version": twin, "promotion_margin": 0.005,
                                          "promotion_metric": "backtest_cost"})
    assert run["state"] == "success", logs[-8000:]
    assert run["tasks"]["check_drift"] == "success" and run["tasks"]["retrain"] == "success"  # drifted: retrain
    assert run["tasks"]["evaluate"] == "success" and run["tasks"]["keep_champion"] == "success"
    assert run["tasks"]["deploy"] == "skipped" and run["tasks"]["validate"] == "skipped"
    assert f"challenger {twin} not promoted" in logs and "saves +0.0% < margin +0.5%" in logs, logs[-4000:]
    assert _champion(airflow_stack) == before == _served_version(served_world)
