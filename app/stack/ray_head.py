"""The Ray head of the local stack: GCS, dashboard with the job-submission API, and room for Serve.

Token authentication is off locally (RAY_AUTH_MODE=disabled): with it on, Ray 2.60 makes the job REST API answer
``Unauthorized`` as soon as ~/.ray/auth_token exists. Everything binds to loopback.
"""

from __future__ import annotations

import sys
from pathlib import Path

import httpx

from app.config import Settings
from app.stack.supervisor import Program, program_path, runtime_dir

MIB = 1024 * 1024


def venv_bin() -> Path:
    return Path(sys.executable).parent


def temp_dir(settings: Settings) -> Path:
    """Ray keeps Unix sockets under its temp dir, so it shares the short runtime directory."""
    return runtime_dir(settings) / "ray"


def environment(settings: Settings) -> dict[str, str]:
    return {
        "RAY_AUTH_MODE": "disabled",
        "RAY_USAGE_STATS_ENABLED": "0",
        # Jobs run `python ...`: it must be this virtualenv's interpreter.
        "PATH": program_path(settings),
    }


def prepare(settings: Settings) -> None:
    temp_dir(settings).mkdir(parents=True, exist_ok=True)


def program(settings: Settings) -> Program:
    command = [
        str(venv_bin() / "ray"), "start", "--head", "--block",
        f"--node-ip-address={settings.ray_host}",
        f"--port={settings.ray_gcs_port}",
        "--include-dashboard=true",
        f"--dashboard-host={settings.ray_host}",
        f"--dashboard-port={settings.ray_dashboard_port}",
        f"--dashboard-agent-listen-port={settings.ray_dashboard_agent_port}",
        f"--ray-client-server-port={settings.ray_client_port}",
        f"--metrics-export-port={settings.ray_metrics_export_port}",
        f"--object-store-memory={settings.ray_object_store_mb * MIB}",
        f"--temp-dir={temp_dir(settings)}",
        "--disable-usage-stats",
    ]
    if settings.ray_num_cpus:
        command.append(f"--num-cpus={settings.ray_num_cpus}")
    # SIGINT to `ray start --block` alone: it stops its own processes in ~3 s; SIGTERM to the whole group takes
    # ~30 s while every Ray process shuts down on its own.
    return Program(name="ray", command=command, environment=environment(settings), stopsignal="INT",
                   signal_group=False, stopwaitsecs=60)


def check(settings: Settings) -> None:
    """The GCS answers and the job API is up (the dashboard starts it last)."""
    with httpx.Client(base_url=settings.ray_dashboard_url, timeout=5) as client:
        client.get("/api/gcs_healthz").raise_for_status()
        client.get("/api/jobs/").raise_for_status()


def provision(settings: Settings) -> None:
    """Nothing to create: Serve and jobs are deployed by their own commands."""
