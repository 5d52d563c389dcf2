"""riskray_store_maintenance: every night, the store's day partitions (``riskray db maintain`` as a job, like the
retraining DAG's steps): the days ahead made, rows that waited in a DEFAULT partition moved into their day, the days
past retention dropped (``RISKRAY_STORE_*_RETENTION_DAYS`` of the job's environment; a retention under what riskray
reads back is refused and the task fails, dropping nothing)."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from typing import Any

from airflow.sdk import dag, get_current_context, task
from riskray_ops import alerts, jobs

# Nightly before the retraining DAG (02:00); a world whose runs are all triggered (RISKRAY_DAG_SCHEDULE empty: the
# tests', the demo's) schedules neither.
SCHEDULE = "30 1 * * *" if os.environ.get("RISKRAY_DAG_SCHEDULE", "0 2 * * *") else None
TIMEOUT_S = 30 * 60


@dag(
    dag_id="riskray_store_maintenance",
    schedule=SCHEDULE,
    start_date=datetime(2026, 12, 1, tzinfo=UTC),
    catchup=False,
    max_active_runs=1,
    default_args={"retries": 1, "retry_delay": timedelta(minutes=5),
                  "on_failure_callback": [alerts.TaskFailureNotifier()]},  # a failed night is alerted
    tags=["riskray", "store"],
    doc_md=__doc__,
)
def riskray_store_maintenance() -> None:
    @task
    def maintain() -> None:
        context: Any = get_current_context()
        jobs.run(["riskray", "db", "maintain"], context, {}, TIMEOUT_S)

    maintain()


riskray_store_maintenance()
