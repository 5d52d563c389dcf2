"""The Spark streaming job as a supervised program of the local stack (started by `riskray stream start`,
not by `riskray stack up`)."""

from __future__ import annotations

import os
import sys

from app.config import PROJECT_ROOT, Settings
from app.stack.ray_head import venv_bin
from app.stack.supervisor import Program

NAME = "stream"


def program(settings: Settings) -> Program:
    return Program(
        name=NAME,
        command=[sys.executable, "-m", "streaming.spark_job"],
        environment={
            "PYSPARK_PYTHON": sys.executable,
            "SPARK_LOCAL_IP": "127.0.0.1",
            "PYTHONPATH": str(PROJECT_ROOT),
            "PATH": f"{venv_bin()}{os.pathsep}{os.environ.get('PATH', '/usr/bin:/bin')}",
        },
        stopwaitsecs=60,  # queries stop at a batch boundary on SIGTERM
    )
