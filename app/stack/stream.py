"""The Spark streaming job as a supervised program of the local stack (started by `riskray stream start`,
not by `riskray stack up`)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from app.config import PROJECT_ROOT, Settings
from app.stack.supervisor import Program, program_path

NAME = "stream"


def progress_log_path(settings: Settings) -> Path:
    """One JSON line per micro-batch of each query (written by the job, read by its status and the exporter)."""
    return settings.state_dir / "stream" / f"{settings.stream_query_prefix}-progress.jsonl"


def late_rows_dropped(settings: Settings) -> int:
    """Rows Spark's window aggregation dropped behind the watermark, summed over the progress log."""
    path = progress_log_path(settings)
    if not path.exists():
        return 0
    total = 0
    with path.open() as lines:
        for line in lines:
            total += json.loads(line).get("late_rows_dropped", 0)
    return total


def priority_command(settings: Settings) -> list[str]:
    """The prefix that runs the stream job below the API's CPU priority (inherited by the JVM's threads and its
    Python workers)."""
    if settings.stream_priority == "idle":
        return ["chrt", "--idle", "0"]
    if settings.stream_priority == "nice":
        return ["nice", "-n", "10"]
    return []


def program(settings: Settings) -> Program:
    return Program(
        name=NAME,
        # On a machine shared with Serve, Spark's micro-batch (both cores for a few hundred ms every trigger)
        # otherwise sets /predict's tail latency; below the API's priority it still gets every idle cycle
        # (benchmarks/soak.py measures both)
        command=[*priority_command(settings), sys.executable, "-m", "streaming.spark_job"],
        environment={
            "PYSPARK_PYTHON": sys.executable,
            "SPARK_LOCAL_IP": "127.0.0.1",
            "PYTHONPATH": str(PROJECT_ROOT),
            "PATH": program_path(settings),
        },
        stopwaitsecs=60,  # queries stop at a batch boundary on SIGTERM
    )
