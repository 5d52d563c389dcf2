"""The Spark streaming job as a supervised program of the local stack (started by `riskray stream start`,
not by `riskray stack up`)."""

from __future__ import annotations

import sys

from app.config import PROJECT_ROOT, Settings
from app.stack.supervisor import Program, program_path

NAME = "stream"


def program(settings: Settings) -> Program:
    return Program(
        name=NAME,
        command=[sys.executable, "-m", "streaming.spark_job"],
        environment={
            "PYSPARK_PYTHON": sys.executable,
            "SPARK_LOCAL_IP": "127.0.0.1",
            "PYTHONPATH": str(PROJECT_ROOT),
            "PATH": program_path(settings),
        },
        stopwaitsecs=60,  # queries stop at a batch boundary on SIGTERM
    )
