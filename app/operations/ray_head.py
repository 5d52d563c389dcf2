"""The Ray head of the local stack: GCS, dashboard with the job-submission API, and room for Serve.

Token authentication is off locally (RAY_AUTH_MODE=disabled): with it on, Ray 2.60 makes the job REST API answer
``Unauthorized`` as soon as ~/.ray/auth_token exists. Everything binds to loopback.
"""

from __future__ import annotations

import hashlib
import shutil
import sys
from pathlib import Path

import httpx

from app.config import Settings
from app.local_paths import ray_temp_dir, runtime_dir
from app.operations import haproxy_loopback
from app.operations.supervisor import Program, program_path
from app.ray_client import client_environment

MIB = 1024 * 1024


def venv_bin() -> Path:
    return Path(sys.executable).parent


def environment(settings: Settings) -> dict[str, str]:
    env = {
        "RAY_AUTH_MODE": "disabled",
        "RAY_USAGE_STATS_ENABLED": "0",
        # Jobs run `python ...`: it must be this virtualenv's interpreter.
        "PATH": program_path(settings),
        # Custom metrics (predictions_total, ...) reach the node's export within 2 s instead of 10.
        "RAY_metrics_report_interval_ms": "2000",
    }
    # `ray start --node-ip-address=127.0.0.1` alone still makes the node's IP the machine's own (Ray replaces a
    # loopback address with a "remotely reachable" one), and Ray's gRPC servers (GCS, raylet, every worker) then
    # listen on all interfaces (tests/integration/test_stack_lifecycle.py checks every port).
    env.update(client_environment(settings))
    if settings.serve_high_throughput:
        env.update(serve_high_throughput_environment(settings))
    # Ray Train's controller notices a finished fit at its next poll of the workers: with Ray's 2 s a 1 s fit
    # ended ~3 s after its workers had (measured: a 12k-row fit 13.8 -> 10.3 s)
    env["RAY_TRAIN_HEALTH_CHECK_INTERVAL_S"] = f"{settings.train_health_check_s:g}"
    if settings.serve_drain_s is not None:
        env["RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S"] = f"{settings.serve_drain_s:g}"
    return env


# HAProxy replays a request on another replica when its replica closed the connection without answering (SIGKILLed,
# OOM-killed), not only when it could not connect (Ray's default): every route is safe to replay, since an answer is
# a function of the request and the store, and a label event is stored once per label_id. The cost: a replica killed
# after spooling a prediction row but before answering leaves that row beside the replay's (docs/serving.md).
SERVE_RETRY_ON_ENV, SERVE_RETRY_ON = "RAY_SERVE_HAPROXY_RETRY_ON", "conn-failure empty-response"


def serve_high_throughput_environment(settings: Settings) -> dict[str, str]:
    """Ray Serve's HAProxy ingress and throughput-optimized mode (~6x the requests/s of the default proxy on
    2 cores). HAProxy's files and sockets stay in the state folder (the sockets reached through a short symlink);
    its stats and metrics ports come from settings and listen on ``ray_host`` only: Ray's template binds them on
    all interfaces, so HAProxy runs through the launcher of ``app.operations.haproxy_loopback``.
    :func:`prepare_haproxy` makes the launcher and the link."""
    haproxy = haproxy_dir(settings)
    sockets = haproxy_socket_dir(settings)
    return {
        "RAY_SERVE_HAPROXY_BINARY_PATH": str(launcher_path(settings)),
        haproxy_loopback.REAL_BINARY_ENV: haproxy_loopback.real_binary(),
        haproxy_loopback.BIND_HOST_ENV: settings.ray_host,
        "RAY_SERVE_ENABLE_HA_PROXY": "1",
        "RAY_SERVE_THROUGHPUT_OPTIMIZED": "1",
        "RAY_SERVE_HAPROXY_CONFIG_FILE_LOC": str(haproxy / "haproxy.cfg"),
        "RAY_SERVE_HAPROXY_SOCKET_PATH": str(sockets / "admin.sock"),
        "RAY_SERVE_HAPROXY_METRICS_SOCKET_PATH": str(sockets / "metrics.sock"),
        "RAY_SERVE_HAPROXY_SERVER_STATE_BASE": str(haproxy),
        "RAY_SERVE_HAPROXY_SERVER_STATE_FILE": str(haproxy / "server-state"),
        "RAY_SERVE_HAPROXY_STATS_PORT": str(settings.serve_haproxy_stats_port),
        "RAY_SERVE_HAPROXY_METRICS_PORT": str(settings.serve_haproxy_metrics_port),
        # Serve's per-request HTTP metrics come from the replicas instead of HAProxy's log socket, whose Python
        # collector cut throughput by ~40 % on 2 cores; the metrics themselves (serve_num_http_requests...) stay.
        "RAY_SERVE_HAPROXY_METRICS_ENABLED": "0",
        "RAY_SERVE_HAPROXY_NBTHREAD": str(settings.serve_haproxy_threads),
        SERVE_RETRY_ON_ENV: SERVE_RETRY_ON,
    }


def haproxy_dir(settings: Settings) -> Path:
    """HAProxy's config, launcher and server state (its command line names this folder)."""
    return runtime_dir(settings) / "haproxy"


def launcher_path(settings: Settings) -> Path:
    return haproxy_dir(settings) / "haproxy-loopback"


def prepare_haproxy(settings: Settings) -> None:
    """What :func:`serve_high_throughput_environment` points at: the launcher and the sockets' short link."""
    haproxy_dir(settings).mkdir(parents=True, exist_ok=True)
    haproxy_loopback.write_launcher(launcher_path(settings))
    link_socket_dir(settings)


def haproxy_socket_dir(settings: Settings) -> Path:
    """The path Ray is given for HAProxy's Unix sockets: a 15-character symlink in /tmp, named after the state
    folder, to :func:`haproxy_socket_home`. Ray nests the sockets under the 56-character node id and HAProxy adds
    a temp suffix, so a path spelled inside the state folder overflows AF_UNIX's 107 bytes; the limit counts the
    path as given, not where a symlink leads."""
    digest = hashlib.sha1(str(settings.state_dir.resolve()).encode()).hexdigest()[:8]
    return Path("/tmp") / f"rrh-{digest}"


def haproxy_socket_home(settings: Settings) -> Path:
    """Where HAProxy's sockets and their spawn logs really live: inside the state folder."""
    return haproxy_dir(settings) / "sockets"


def link_socket_dir(settings: Settings) -> Path:
    """Make :func:`haproxy_socket_dir` a symlink to :func:`haproxy_socket_home` (replacing anything else there,
    e.g. a real folder from before the sockets moved into the state folder); returns the link."""
    home = haproxy_socket_home(settings)
    home.mkdir(mode=0o700, parents=True, exist_ok=True)
    link = haproxy_socket_dir(settings)
    if link.is_symlink() and link.readlink() == home:
        return link
    _remove_path(link)
    link.symlink_to(home, target_is_directory=True)
    return link


def _remove_path(path: Path) -> None:
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.is_dir():
        shutil.rmtree(path)


def prepare(settings: Settings) -> None:
    ray_temp_dir(settings).mkdir(parents=True, exist_ok=True)
    if settings.serve_high_throughput:
        prepare_haproxy(settings)


def remove_sockets(settings: Settings) -> None:
    """Remove HAProxy's sockets, their spawn logs and the /tmp link to them, once stopped."""
    _remove_path(haproxy_socket_dir(settings))
    shutil.rmtree(haproxy_socket_home(settings), ignore_errors=True)


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
        f"--temp-dir={ray_temp_dir(settings)}",
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
