"""Airflow's REST API (v2) as the demo and the DAG tests use it: pause or trigger a DAG (the retraining DAG unless
told), follow the run, read its tasks."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

import httpx
from pydantic import BaseModel

from app.config import Settings
from app.errors import UserError

DAG_ID = "riskray_retraining"
FINAL = {"success", "failed"}


class AirflowError(UserError, RuntimeError):
    pass


class TaskRun(BaseModel):
    task_id: str
    state: str | None
    start_date: datetime | None
    end_date: datetime | None
    duration: float | None
    try_number: int | None = None


class AirflowRuns:
    def __init__(self, settings: Settings, dag_id: str = DAG_ID) -> None:
        from app.operations import airflow

        self.dag_id = dag_id
        self.base = f"{settings.airflow_url}/api/v2/dags/{dag_id}"
        token = httpx.post(f"{settings.airflow_url}/auth/token", timeout=30,
                           json={"username": settings.airflow_admin_user, "password": airflow.admin_password(settings)})
        if token.status_code not in (200, 201):
            raise AirflowError(f"Airflow refused the admin login: HTTP {token.status_code} {token.text[:200]}")
        self.client = httpx.Client(headers={"Authorization": f"Bearer {token.json()['access_token']}"}, timeout=30)

    def close(self) -> None:
        self.client.close()

    def __enter__(self) -> AirflowRuns:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.client.request(method, f"{self.base}{path}", **kwargs)
        if response.status_code >= 400:
            raise AirflowError(f"Airflow: {method} {path or '/'}: HTTP {response.status_code} {response.text[:300]}")
        return response.json()

    def wait_for_dag(self, timeout_s: float = 180) -> None:
        """Until the dag-processor has parsed the DAG file."""
        deadline = time.monotonic() + timeout_s
        while self.client.get(self.base).status_code != 200:
            if time.monotonic() > deadline:
                raise AirflowError(f"the DAG {self.dag_id} did not appear in Airflow within {timeout_s:.0f} s")
            time.sleep(2)

    def set_paused(self, paused: bool) -> None:
        if self._json("PATCH", "", json={"is_paused": paused})["is_paused"] is not paused:
            raise AirflowError(f"Airflow did not {'pause' if paused else 'unpause'} {self.dag_id}")

    def trigger(self, conf: dict[str, Any]) -> str:
        """A run with ``conf`` (the DAG unpaused first: a paused DAG's runs are queued, never scheduled)."""
        self.set_paused(False)
        return str(self._json("POST", "/dagRuns", json={"logical_date": None, "conf": conf})["dag_run_id"])

    def state(self, run_id: str) -> str:
        return str(self._json("GET", f"/dagRuns/{run_id}")["state"])

    def tasks(self, run_id: str) -> list[TaskRun]:
        items = self._json("GET", f"/dagRuns/{run_id}/taskInstances")["task_instances"]
        runs = [TaskRun.model_validate(item) for item in items]
        return sorted(runs, key=lambda t: (t.start_date is None, t.start_date or datetime.max, t.task_id))

    def xcom(self, run_id: str, task_id: str, key: str) -> Any:
        value = self._json("GET", f"/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries/{key}")["value"]
        if isinstance(value, str):
            try:
                return json.loads(value)
            except ValueError:
                return value
        return value

    def follow(self, run_id: str, timeout_s: float, say: Callable[[TaskRun], None]) -> str:
        """Poll until the run ends; ``say`` each task the first time it reaches a final state."""
        deadline, told = time.monotonic() + timeout_s, set()
        while True:
            state = self.state(run_id)
            for task in self.tasks(run_id):
                if task.state in {"success", "failed", "skipped", "upstream_failed"} and task.task_id not in told:
                    told.add(task.task_id)
                    say(task)
            if state in FINAL:
                return state
            if time.monotonic() > deadline:
                raise AirflowError(f"run {run_id} still {state} after {timeout_s:.0f} s")
            time.sleep(3)
