"""The one line a job's entry point prints with its result, for whoever submitted it: ``riskray-result <kind>:
<json>``. The retraining DAG submits `riskray drift`, `train` and `compare` as Ray jobs and reads these lines
back from the job logs (it cannot import this package; tests/unit/test_dag_helpers.py pins both sides)."""

from __future__ import annotations

PREFIX = "riskray-result"
REPORT, MODEL, COMPARISON = "report", "model", "comparison"


def line(kind: str, payload_json: str) -> str:
    return f"{PREFIX} {kind}: {payload_json}"
