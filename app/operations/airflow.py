"""Airflow 3 on the local stack (`riskray stack up --with airflow`): api-server, scheduler, dag-processor and
triggerer under the stack's supervisor, LocalExecutor, metadata in the ``airflow_db`` database of the stack's
PostgreSQL, ``dags/`` as the DAG folder, loopback only.

Airflow runs from its own environment (``settings.airflow_venv``, from cluster/local/airflow/uv.lock): airflow-core
pins fastapi below Ray Serve's window. Each program starts as ``python -m app.operations.airflow <component>``, which
builds Airflow's configuration from riskray's settings (environment variables: the metadata URL and secrets stay
off command lines and out of the supervisor config) and then becomes the Airflow process (exec).

What the DAG needs to find is handed to it as Airflow connections, rendered from the same settings:
``riskray_ray`` (job submission), ``riskray_serve`` (the prediction API), ``riskray_mlflow`` (the registry), and
``riskray_slack`` / ``riskray_pagerduty`` only when their URL or key is set.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import httpx

from app.config import PROJECT_ROOT, Settings
from app.operations.errors import StackError
from app.operations.supervisor import Program

DAGS_DIR = PROJECT_ROOT / "dags"
GROUP = "airflow"  # `riskray stack up --with airflow`


def _write_private(path: Path, text: str) -> None:
    """``text`` into ``path``, readable by its owner only."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600)
    path.write_text(text)


def _passwords_file(settings: Settings) -> Path:
    return settings.airflow_home / "passwords.json"


def _secret(settings: Settings, name: str) -> str:
    """A secret generated once into AIRFLOW_HOME (mode 0600), the same for every component and restart."""
    path = settings.airflow_home / name
    if not path.exists():
        _write_private(path, secrets.token_urlsafe(32))
    return path.read_text().strip()


def admin_password(settings: Settings) -> str:
    if settings.airflow_admin_password is not None:
        return settings.airflow_admin_password.get_secret_value()
    return _secret(settings, "admin-password")


def admin_password_source(settings: Settings) -> str:
    return "RISKRAY_AIRFLOW_ADMIN_PASSWORD" if settings.airflow_admin_password else str(
        settings.airflow_home / "admin-password")


def connections(settings: Settings) -> dict[str, dict[str, object]]:
    """The DAG's connections (Airflow's JSON connection format)."""
    found: dict[str, dict[str, object]] = {
        "riskray_ray": {"conn_type": "http", "host": settings.ray_host, "port": settings.ray_dashboard_port},
        "riskray_serve": {"conn_type": "http", "host": settings.ray_host, "port": settings.serve_port},
        "riskray_mlflow": {"conn_type": "http", "host": settings.mlflow_host, "port": settings.mlflow_port,
                           "extra": {"registered_model": settings.registered_model_name}},
    }
    if settings.alert_slack_webhook_url:
        found["riskray_slack"] = {"conn_type": "slackwebhook",
                                  "password": settings.alert_slack_webhook_url.get_secret_value()}
    if settings.alert_pagerduty_routing_key:
        found["riskray_pagerduty"] = {"conn_type": "pagerduty_events",
                                      "password": settings.alert_pagerduty_routing_key.get_secret_value()}
    return found


def environment(settings: Settings) -> dict[str, str]:
    """Airflow's whole configuration, as AIRFLOW__SECTION__KEY variables (nothing in airflow.cfg)."""
    home = settings.airflow_home
    env = {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS_DIR),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__PARALLELISM": "4",  # two cores: a few tasks at once, each waiting on a Ray job
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{settings.airflow_url}/execution/",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{settings.airflow_admin_user}:admin",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(_passwords_file(settings)),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": settings.postgres_url(settings.airflow_db),
        "AIRFLOW__API__HOST": settings.airflow_host,
        "AIRFLOW__API__PORT": str(settings.airflow_port),
        "AIRFLOW__API__WORKERS": "1",
        "AIRFLOW__API_AUTH__JWT_SECRET": _secret(settings, "jwt-secret"),
        "AIRFLOW__API__SECRET_KEY": _secret(settings, "api-secret-key"),
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "30",  # a new DAG file shows up within half a minute
        "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "True",
        "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(home / "logs"),
        # the DAG's helpers (dags/riskray_ops) import as top-level modules, in every component and in dag.test()
        "PYTHONPATH": str(DAGS_DIR),
        "RISKRAY_DAG_SCHEDULE": settings.airflow_dag_schedule,  # read when the DAG file is parsed
        "PATH": f"{settings.airflow_venv / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    for conn_id, conn in connections(settings).items():
        env[f"AIRFLOW_CONN_{conn_id.upper()}"] = json.dumps(conn)
    return env


def airflow_bin(settings: Settings) -> Path:
    return settings.airflow_venv / "bin" / "airflow"


def write_passwords(settings: Settings) -> None:
    _write_private(_passwords_file(settings), json.dumps({settings.airflow_admin_user: admin_password(settings)}))


def migrate(settings: Settings) -> None:
    """The metadata database created and migrated (idempotent; Airflow's own migrations)."""
    from app.operations import postgres

    postgres.create_database(settings, settings.airflow_db)
    result = subprocess.run([str(airflow_bin(settings)), "db", "migrate"], env=environment(settings),
                            capture_output=True, text=True, timeout=600)
    if result.returncode != 0:
        raise StackError("airflow db migrate failed: " + (result.stderr or result.stdout).strip()[-1500:])


def health(settings: Settings) -> dict[str, dict[str, object]]:
    response = httpx.get(f"{settings.airflow_url}/api/v2/monitor/health", timeout=5)
    response.raise_for_status()
    return response.json()


@dataclass(frozen=True)
class AirflowComponent:
    """The service interface of ``app.operations.manager`` for one Airflow component."""

    name: str  # the supervisor program
    command: str  # `airflow <command>`
    health_key: str | None  # its entry in /api/v2/monitor/health (None: the api-server itself)
    group: str = GROUP

    def prepare(self, settings: Settings) -> None:
        if not airflow_bin(settings).exists():
            raise StackError(f"{airflow_bin(settings)} is missing: run the bootstrap (make bootstrap), which makes "
                             "Airflow's environment from cluster/local/airflow/uv.lock")
        if self.health_key is None:  # the first to start: database and login first
            write_passwords(settings)
            migrate(settings)

    def program(self, settings: Settings) -> Program:
        # AIRFLOW_HOME on the command line marks the process as this stack's (manager.stray_processes)
        return Program(name=self.name, command=[sys.executable, "-m", "app.operations.airflow", self.command,
                                                str(settings.airflow_home)], stopwaitsecs=30)

    def check(self, settings: Settings) -> None:
        status = health(settings)
        if self.health_key is not None:
            state = (status.get(self.health_key) or {}).get("status")
            if state != "healthy":
                raise StackError(f"{self.health_key} is {state or 'not reporting'}")

    def provision(self, settings: Settings) -> None:
        """Nothing: the database is migrated before the api-server starts, the DAGs are parsed from dags/."""


API_SERVER = AirflowComponent("airflow-api", "api-server", None)
SCHEDULER = AirflowComponent("airflow-scheduler", "scheduler", "scheduler")
DAG_PROCESSOR = AirflowComponent("airflow-dags", "dag-processor", "dag_processor")
TRIGGERER = AirflowComponent("airflow-triggerer", "triggerer", "triggerer")
COMPONENTS = (API_SERVER, SCHEDULER, DAG_PROCESSOR, TRIGGERER)


def main(argv: list[str]) -> None:
    """``python -m app.operations.airflow <component> <AIRFLOW_HOME>``: become ``airflow <component>``."""
    from app.config import get_settings

    command = argv[0]
    settings = get_settings()
    env = {**os.environ, **environment(settings)}
    binary = str(airflow_bin(settings))
    os.execve(binary, [binary, command], env)


if __name__ == "__main__":
    main(sys.argv[1:])
