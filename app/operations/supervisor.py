"""supervisord as the local process manager: config rendering, start, and its XML-RPC control socket."""

from __future__ import annotations

import configparser
import contextlib
import io
import os
import shlex
import shutil
import subprocess
import sys
import time
import xmlrpc.client
from dataclasses import dataclass, field
from pathlib import Path

from supervisor.xmlrpc import SupervisorTransport

from app.config import ENV_PREFIX, PROJECT_ROOT, Settings
from app.local_paths import runtime_dir
from app.operations.errors import StackError


@dataclass(frozen=True)
class Program:
    """One supervised process."""

    name: str
    command: list[str]
    environment: dict[str, str] = field(default_factory=dict)
    user: str | None = None
    stopsignal: str = "TERM"
    stopwaitsecs: int = 30
    signal_group: bool = True  # send stopsignal to the whole process group; SIGKILL on timeout always does


def program_path(settings: Settings) -> str:
    """PATH for supervised programs: this virtualenv first (Ray jobs run `python`), then Java, then the system.

    Fixed rather than inherited, so `stack up` from any shell renders the same config."""
    java = shutil.which(settings.java_bin)
    parts = [str(Path(sys.executable).parent)]
    if java:
        parts.append(str(Path(java).resolve().parent))
    parts += ["/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"]
    return os.pathsep.join(dict.fromkeys(parts))


def socket_path(settings: Settings) -> Path:
    return runtime_dir(settings) / "supervisor.sock"


def config_path(settings: Settings) -> Path:
    return settings.state_dir / "supervisor" / "supervisord.conf"


def log_path(settings: Settings, program: str) -> Path:
    return settings.logs_dir / f"{program}.log"


def _escape(value: str) -> str:
    return value.replace("%", "%%")  # supervisord expands %(name)s in values


def render_config(settings: Settings, programs: list[Program]) -> str:
    sock = socket_path(settings)
    parser = configparser.RawConfigParser()
    parser["unix_http_server"] = {"file": str(sock), "chmod": "0700"}
    parser["supervisord"] = {
        "logfile": str(log_path(settings, "supervisord")),
        "pidfile": str(settings.state_dir / "supervisor" / "supervisord.pid"),
        "childlogdir": str(settings.logs_dir),
        "directory": str(PROJECT_ROOT),
        "minfds": "10000",
    }
    # Every program gets the RISKRAY_* settings the stack was started with, written down here: a stack started
    # for the tests' scratch world (tests/scratch.env) and one started for real work then render different
    # configs, so neither can be mistaken for the other ("running with other settings").
    fields = {f"{ENV_PREFIX}{name.upper()}" for name in Settings.model_fields}
    settings_env = {k: v for k, v in os.environ.items() if k.upper() in fields}
    if settings_env:
        parser["supervisord"]["environment"] = ",".join(
            f'{key}="{_escape(value)}"' for key, value in sorted(settings_env.items()))
    parser["rpcinterface:supervisor"] = {
        "supervisor.rpcinterface_factory": "supervisor.rpcinterface:make_main_rpcinterface"
    }
    parser["supervisorctl"] = {"serverurl": f"unix://{sock}"}
    for program in programs:
        section = {
            "command": _escape(shlex.join(program.command)),
            "autostart": "false",
            "autorestart": "false",
            "startsecs": "1",
            "startretries": "0",
            "stopsignal": program.stopsignal,
            "stopwaitsecs": str(program.stopwaitsecs),
            "stopasgroup": "true" if program.signal_group else "false",
            "killasgroup": "true",
            "redirect_stderr": "true",
            "stdout_logfile": str(log_path(settings, program.name)),
            "stdout_logfile_maxbytes": "50MB",
            "stdout_logfile_backups": "2",
        }
        if program.user:
            section["user"] = program.user
        if program.environment:
            section["environment"] = ",".join(
                f'{key}="{_escape(value)}"' for key, value in sorted(program.environment.items())
            )
        parser[f"program:{program.name}"] = section
    out = io.StringIO()
    parser.write(out)
    return out.getvalue()


def rpc(settings: Settings) -> xmlrpc.client.ServerProxy:
    transport = SupervisorTransport(None, None, f"unix://{socket_path(settings)}")
    return xmlrpc.client.ServerProxy("http://127.0.0.1", transport=transport)


def is_running(settings: Settings) -> bool:
    if not socket_path(settings).exists():
        return False
    try:
        return rpc(settings).supervisor.getState()["statename"] == "RUNNING"
    except (OSError, xmlrpc.client.Fault, xmlrpc.client.ProtocolError):
        return False


def ensure_running(settings: Settings, programs: list[Program]) -> None:
    """Start supervisord with a freshly rendered config, or check that the running one has the same config."""
    path = config_path(settings)
    rendered = render_config(settings, programs)
    if is_running(settings):
        if path.exists() and path.read_text() == rendered:
            return
        raise StackError(
            "the stack is running with other settings; run `riskray stack down` first, then `riskray stack up`"
        )
    for directory in (path.parent, settings.logs_dir, runtime_dir(settings)):
        directory.mkdir(parents=True, exist_ok=True)
    path.write_text(rendered)
    path.chmod(0o600)  # it holds the database password of MLflow's backend URI
    socket_path(settings).unlink(missing_ok=True)
    result = subprocess.run(
        [sys.executable, "-m", "supervisor.supervisord", "-c", str(path)],
        cwd=PROJECT_ROOT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        reason = (result.stderr or result.stdout).strip().splitlines()
        raise StackError(f"supervisord did not start: {reason[0] if reason else result.returncode}")
    deadline = time.monotonic() + 20
    while not is_running(settings):
        if time.monotonic() > deadline:
            raise StackError(f"supervisord did not start; see {log_path(settings, 'supervisord')}")
        time.sleep(0.2)


def process_state(settings: Settings, name: str) -> str:
    """supervisord's state name (RUNNING, STOPPED, FATAL, EXITED, ...) or DOWN when supervisord is not running."""
    if not is_running(settings):
        return "DOWN"
    try:
        return rpc(settings).supervisor.getProcessInfo(name)["statename"]
    except xmlrpc.client.Fault:
        return "UNKNOWN"


def start(settings: Settings, name: str, wait: bool = True) -> None:
    """``wait``: until supervisord counts the program as started (its ``startsecs``); a caller that waits for a
    health check instead passes False and watches the state itself."""
    try:
        rpc(settings).supervisor.startProcess(name, wait)
    except xmlrpc.client.Fault as fault:
        if "ALREADY_STARTED" not in fault.faultString:
            raise StackError(f"{name} failed to start ({fault.faultString}); see {log_path(settings, name)}") from None


def stop(settings: Settings, name: str) -> None:
    try:
        rpc(settings).supervisor.stopProcess(name, True)
    except xmlrpc.client.Fault as fault:
        if "NOT_RUNNING" not in fault.faultString:
            raise


def shutdown(settings: Settings) -> None:
    """Stop supervisord itself and wait until its process is gone."""
    pidfile = settings.state_dir / "supervisor" / "supervisord.pid"
    pid = int(pidfile.read_text()) if pidfile.exists() else None
    with contextlib.suppress(OSError, xmlrpc.client.Fault, xmlrpc.client.ProtocolError):  # already gone
        rpc(settings).supervisor.shutdown()
    deadline = time.monotonic() + 30
    while pid and _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    socket_path(settings).unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
