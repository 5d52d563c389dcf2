"""Ray jobs through the Ray Jobs REST API (``/api/jobs/``): submit, attach, follow the log, read a result line.

No Ray import: the Airflow environment has none (and needs none). A job's submission id is derived from the DAG
run and task, so an Airflow retry of a task whose job is still running attaches to it instead of submitting a
duplicate; a job that already failed is submitted again under the next attempt's id.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

TERMINAL = {"SUCCEEDED", "FAILED", "STOPPED"}
LIVE = {"PENDING", "RUNNING"}


class RayJobError(RuntimeError):
    """The job failed, stopped, or ran out of time; the message carries the end of its log."""


def submission_id(dag_id: str, run_id: str, task_id: str) -> str:
    """A stable, readable id for one task of one DAG run (Ray accepts [A-Za-z0-9_-])."""
    return re.sub(r"[^A-Za-z0-9_-]+", "_", f"{dag_id}--{run_id}--{task_id}")[:230]


def attempt_id(base_id: str, attempt: int) -> str:
    """The first attempt's job has the base id; a re-submission after a failed job gets its attempt's."""
    return base_id if attempt <= 1 else f"{base_id}--attempt-{attempt}"


@dataclass(frozen=True)
class JobResult:
    submission_id: str
    status: str
    logs: str
    attached: bool  # True when an earlier attempt's job was picked up instead of submitting one

    def result_line(self, prefix: str) -> dict[str, Any]:
        """The JSON after ``prefix`` on the job's last line that has it (how entry points report a result)."""
        for line in reversed(self.logs.splitlines()):
            start = line.find(prefix)
            if start >= 0:
                return json.loads(line[start + len(prefix):])
        raise RayJobError(f"job {self.submission_id} printed no '{prefix.strip()}' line; last log lines:\n"
                          + tail(self.logs))


def tail(logs: str, lines: int = 30) -> str:
    return "\n".join(logs.splitlines()[-lines:])


class RayJobs:
    def __init__(self, address: str, timeout_s: float = 30.0, transport: httpx.BaseTransport | None = None) -> None:
        self.address = address.rstrip("/")
        self._http = httpx.Client(base_url=self.address, timeout=timeout_s, transport=transport)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> RayJobs:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # --- REST ----------------------------------------------------------------------------------------------
    def info(self, job_id: str) -> dict[str, Any] | None:
        response = self._http.get(f"/api/jobs/{job_id}")
        if response.status_code == 404:
            return None
        response.raise_for_status()
        return response.json()

    def logs(self, job_id: str) -> str:
        response = self._http.get(f"/api/jobs/{job_id}/logs")
        response.raise_for_status()
        return response.json().get("logs", "")

    def submit(self, job_id: str, entrypoint: str, env: dict[str, str] | None = None,
               entrypoint_num_cpus: float = 0) -> None:
        body = {"entrypoint": entrypoint, "submission_id": job_id, "runtime_env": {"env_vars": env or {}},
                "entrypoint_num_cpus": entrypoint_num_cpus, "metadata": {"submitted_by": "riskray-airflow"}}
        response = self._http.post("/api/jobs/", json=body)
        if response.status_code >= 400:
            raise RayJobError(f"Ray at {self.address} refused job {job_id}: {response.status_code} "
                              f"{response.text[:500]}")

    def stop(self, job_id: str) -> None:
        self._http.post(f"/api/jobs/{job_id}/stop")

    # --- one task's job --------------------------------------------------------------------------------------
    def start(self, base_id: str, attempt: int, entrypoint: str, env: dict[str, str] | None = None,
              say: Callable[[str], None] = print) -> tuple[str, bool]:
        """Attach to this task's job from an earlier attempt if it is running or succeeded, else submit one.
        Returns (submission id, attached)."""
        for earlier in range(attempt, 0, -1):
            job_id = attempt_id(base_id, earlier)
            found = self.info(job_id)
            if found is None:
                continue
            if found["status"] in LIVE or found["status"] == "SUCCEEDED":
                say(f"attaching to Ray job {job_id} ({found['status']}) from attempt {earlier}")
                return job_id, True
            break  # the latest earlier job failed or stopped: this attempt submits its own
        job_id = attempt_id(base_id, attempt)
        self.submit(job_id, entrypoint, env)
        say(f"submitted Ray job {job_id}: {entrypoint}")
        return job_id, False

    def wait(self, job_id: str, timeout_s: float, say: Callable[[str], None] = print, poll_s: float = 0.5,
             attached: bool = False) -> JobResult:
        """Follow the job's log into ``say`` until it ends; stop it and raise when ``timeout_s`` passes. Polled
        every half second: each task of a run waits for its job, so a 2 s poll cost the run ~1 s per task."""
        deadline = time.monotonic() + timeout_s
        shown = 0
        while True:
            info = self.info(job_id)
            status = info["status"] if info else "UNKNOWN"
            logs = self.logs(job_id)
            for line in logs[shown:].splitlines():
                say(line)
            shown = len(logs)
            if status in TERMINAL:
                break
            if time.monotonic() > deadline:
                self.stop(job_id)
                raise RayJobError(f"Ray job {job_id} still {status} after {timeout_s:.0f} s: stopped it")
            time.sleep(poll_s)
        if status != "SUCCEEDED":
            message = (info or {}).get("message") or ""
            raise RayJobError(f"Ray job {job_id} {status}: {message}\nlast log lines:\n{tail(logs)}")
        return JobResult(job_id, status, logs, attached)

    def run(self, base_id: str, attempt: int, entrypoint: str, timeout_s: float, env: dict[str, str] | None = None,
            say: Callable[[str], None] = print) -> JobResult:
        job_id, attached = self.start(base_id, attempt, entrypoint, env, say)
        return self.wait(job_id, timeout_s, say, attached=attached)
