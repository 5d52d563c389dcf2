"""The Spark streaming job as a supervised program of the local stack (started by `riskray stream start`,
not by `riskray stack up`)."""

from __future__ import annotations

import sys

from app.config import PROJECT_ROOT, Settings
from app.operations.supervisor import Program, program_path

NAME = "stream"


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
