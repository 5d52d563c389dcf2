"""The MLflow tracking server of the local stack: PostgreSQL backend store, artifacts in the state folder,
served through the server (``--artifacts-destination``) so clients need no shared filesystem."""

from __future__ import annotations

from pathlib import Path

import httpx

from app.config import Settings
from app.operations.ray_head import venv_bin
from app.operations.supervisor import Program


def artifacts_dir(settings: Settings) -> Path:
    return settings.state_dir / "mlflow" / "artifacts"


def prepare(settings: Settings) -> None:
    artifacts_dir(settings).mkdir(parents=True, exist_ok=True)


def program(settings: Settings) -> Program:
    return Program(
        name="mlflow",
        command=[
            str(venv_bin() / "mlflow"), "server",
            "--host", settings.mlflow_host,
            "--port", str(settings.mlflow_port),
            "--artifacts-destination", str(artifacts_dir(settings)),
            "--workers", "2",
        ],
        # In the environment rather than the command line, so the password stays out of `ps`.
        environment={
            "MLFLOW_BACKEND_STORE_URI": settings.postgres_url(settings.mlflow_db),
            # The GenAI job runner (a pool of huey consumers, ~1 GB) serves nothing riskray uses.
            "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
        },
    )


def check(settings: Settings) -> None:
    response = httpx.get(f"{settings.mlflow_tracking_uri}/health", timeout=5)
    response.raise_for_status()


def provision(settings: Settings) -> None:
    """MLflow migrates its own schema on start."""
