"""Where this machine's local stack keeps what more than one layer reads: the short runtime folder for sockets,
Ray's temp folder (its sessions, logs and metrics discovery file) and the unpacked monitoring binaries.

The local stack (``app.operations``) creates them; the monitoring launchers and the benchmarks read them."""

from __future__ import annotations

import hashlib
from pathlib import Path

from app.config import Settings

# AF_UNIX paths are limited to 107 bytes, and Ray nests its sockets ~75 bytes deep under its temp dir
# (ray/session_<date>_<pid>/sockets/dash_MetricsHead), so the runtime dir itself must stay short.
MAX_SOCKET_DIR = 30


def runtime_dir(settings: Settings) -> Path:
    """Where sockets live: ``<state>/run`` unless that path is too long for a Unix socket."""
    preferred = settings.state_dir / "run"
    if len(str(preferred)) <= MAX_SOCKET_DIR:
        return preferred
    digest = hashlib.sha1(str(settings.state_dir).encode()).hexdigest()[:10]
    return Path("/tmp") / f"riskray-{digest}"


def ray_temp_dir(settings: Settings) -> Path:
    """Ray keeps Unix sockets under its temp dir, so it shares the short runtime directory."""
    return runtime_dir(settings) / "ray"


def monitoring_tool(settings: Settings, name: str) -> Path:
    """The unpacked Debian binary of a monitoring service (Alertmanager's is named prometheus-alertmanager there)."""
    return settings.prometheus_bin_dir / {"alertmanager": "prometheus-alertmanager"}.get(name, name)
