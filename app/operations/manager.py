"""`riskray stack up|status|down`: start the local services in order with health waits, report, stop."""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from app import local_paths
from app.config import Settings
from app.cpu_weight import BackgroundGroup
from app.operations import airflow, control_plane, kafka, mlflow_server, postgres, ray_head, stream, supervisor
from app.operations import monitoring as monitoring_services
from app.operations.errors import StackError
from app.operations.java import java_major_version

Echo = Callable[[str], None]


@dataclass(frozen=True)
class Service:
    name: str
    module: Any  # a module or object with prepare(settings), program(settings), check(settings), provision(settings)
    ports: Callable[[Settings], list[int]]
    start_timeout_s: float
    group: str | None = None  # an optional part of the stack, started by `stack up --with <group>`
    stage: int = 1  # started once every wanted service of a lower stage is healthy


    def address(self, settings: Settings) -> str:
        host = {
            "postgres": settings.postgres_host, "kafka": settings.kafka_host,
            "ray": settings.ray_host, "mlflow": settings.mlflow_host,
        }.get(self.name, {airflow.GROUP: settings.airflow_host, control_plane.GROUP: settings.kube_host}.get(
            self.group or "", settings.monitoring_host))
        ports = self.ports(settings) or [settings.airflow_port]  # Airflow's components report through the api-server
        return f"{host}:{ports[0]}"


SERVICES: list[Service] = [
    Service("postgres", postgres, lambda s: [s.postgres_port], 60, stage=0),
    Service("kafka", kafka, lambda s: [s.kafka_port, s.kafka_controller_port], 90),
    Service("ray", ray_head, lambda s: [s.ray_dashboard_port, s.ray_gcs_port, s.ray_client_port], 120),
    Service("mlflow", mlflow_server, lambda s: [s.mlflow_port], 120),
    *(Service(m.name, m, lambda s, m=m: [m.port(s)], 60) for m in monitoring_services.SERVICES),
    # the api-server owns the port; the others report through its health endpoint
    *(Service(c.name, c, lambda s, c=c: [s.airflow_port] if c is airflow.API_SERVER else [], 180, airflow.GROUP)
      for c in airflow.COMPONENTS),
    # the local Kubernetes control plane (`riskray cluster up`): etcd, then the API server, then the rest
    *(Service(c.name, c, c.ports, 120, control_plane.GROUP, stage=c.stage) for c in control_plane.COMPONENTS),
]
GROUPS = sorted({s.group for s in SERVICES if s.group})
START_COMMAND = {control_plane.GROUP: "riskray cluster up"}  # a group with a command of its own


@dataclass(frozen=True)
class ServiceStatus:
    name: str
    address: str
    state: str
    healthy: bool
    detail: str
    log: Path


def _port_open(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def _failure(service: Service, settings: Settings) -> str | None:
    """None when healthy, else a short reason."""
    try:
        service.module.check(settings)
    except Exception as error:
        return f"{type(error).__name__}: {error}".splitlines()[0][:200]
    return None


def _starting_problem(service: Service, settings: Settings, started: float) -> str | None:
    """None once the service started at ``started`` (monotonic) is healthy; its reason while it may still become
    so; StackError once it exited or ran out of time."""
    reason = _failure(service, settings)
    if reason is None:
        return None
    log = supervisor.log_path(settings, service.name)
    state = supervisor.process_state(settings, service.name)
    if state in {"FATAL", "EXITED", "BACKOFF", "STOPPED"}:
        raise StackError(f"{service.name} exited while starting ({state}); see {log}")
    if time.monotonic() > started + service.start_timeout_s:
        raise StackError(f"{service.name} not healthy after {service.start_timeout_s:.0f} s ({reason}); see {log}")
    return reason


def _wait_healthy(service: Service, settings: Settings) -> float:
    started = time.monotonic()
    while _starting_problem(service, settings, started) is not None:
        time.sleep(0.5)
    return time.monotonic() - started


def wait_healthy(settings: Settings, name: str) -> float:
    """Wait until the named service (started by other means: a restart) is healthy; seconds waited."""
    return _wait_healthy(next(s for s in SERVICES if s.name == name), settings)


def programs(settings: Settings) -> list[supervisor.Program]:
    """Every supervised program: the services `up` starts, then the jobs started by their own commands."""
    return [service.module.program(settings) for service in SERVICES] + [stream.program(settings)]


def check_groups(groups: tuple[str, ...]) -> None:
    unknown = set(groups) - set(GROUPS)
    if unknown:
        raise StackError(f"no optional service group {', '.join(sorted(unknown))}; there is {', '.join(GROUPS)}")


def _stop_running(settings: Settings, names: list[str], echo: Echo) -> None:
    """Stop those of ``names`` that run, in the order given."""
    for name in names:
        if supervisor.process_state(settings, name) in {"RUNNING", "STARTING"}:
            echo(f"{name:<9} stopping ...")
            supervisor.stop(settings, name)


def up(settings: Settings, echo: Echo = print, groups: tuple[str, ...] = (), core: bool = True) -> None:
    """Start every service (the optional ones of ``groups`` too; with ``core`` False only those) and wait until each
    is healthy. Running it again is harmless.

    PostgreSQL comes first (the schema is migrated, MLflow's and Airflow's databases live there); the others depend
    on nothing but it and each other's health checks, so they start together and each is reported as it turns
    healthy: their start-ups (a JVM, Ray's head, MLflow's workers, Airflow's components) overlap on two cores instead
    of queueing. A group may order its own start in stages (the control plane: etcd, the API server, the rest)."""
    check_groups(groups)
    wanted = [s for s in SERVICES if (core and not s.group) or s.group in groups]
    if any(not s.group for s in wanted):
        java_major_version(settings.java_bin)
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    supervisor.ensure_running(settings, programs(settings))
    for stage in sorted({s.stage for s in wanted}):
        _wait_started(settings, _start(settings, [s for s in wanted if s.stage == stage], echo), echo)
        if stage == 0 and core:
            from app import migrate  # Alembic/SQLAlchemy only when the database is there to migrate

            migrate.upgrade(settings)
            echo(f"{'schema':<9} at revision {migrate.current_revision(settings)}")


def _start(settings: Settings, services: list[Service], echo: Echo) -> list[tuple[Service, float]]:
    """Start those of ``services`` not running and healthy, without waiting (one already healthy is provisioned);
    (service, monotonic start time) of each started."""
    started: list[tuple[Service, float]] = []
    for service in services:
        state = supervisor.process_state(settings, service.name)
        if state == "RUNNING" and _failure(service, settings) is None:
            echo(f"{service.name:<9} already running  {service.address(settings)}")
            service.module.provision(settings)
            continue
        if state != "RUNNING":
            for port in service.ports(settings):
                if _port_open("127.0.0.1", port):
                    raise StackError(f"port {port} needed by {service.name} is already in use by another process")
        service.module.prepare(settings)
        echo(f"{service.name:<9} starting ...")
        supervisor.start(settings, service.name, wait=False)
        started.append((service, time.monotonic()))
    return started


def _wait_started(settings: Settings, started: list[tuple[Service, float]], echo: Echo) -> None:
    """Each started service reported as it turns healthy (in whatever order), then provisioned."""
    pending = list(started)
    while pending:
        for service, began in list(pending):
            if _starting_problem(service, settings, began) is None:
                echo(f"{service.name:<9} healthy after {time.monotonic() - began:.1f} s  {service.address(settings)}")
                service.module.provision(settings)
                pending.remove((service, began))
        if pending:
            time.sleep(0.5)


def status(settings: Settings) -> list[ServiceStatus]:
    running = supervisor.is_running(settings)
    report = []
    for service in SERVICES:
        state = supervisor.process_state(settings, service.name) if running else "DOWN"
        if service.group and state in {"STOPPED", "DOWN", "UNKNOWN"}:  # optional and not started: not a problem
            start = START_COMMAND.get(service.group, f"stack up --with {service.group}")
            report.append(ServiceStatus(name=service.name, address=service.address(settings), state="OFF",
                                        healthy=True, detail=f"off ({start})",
                                        log=supervisor.log_path(settings, service.name)))
            continue
        reason = _failure(service, settings) if state == "RUNNING" else "not running"
        if reason is None:
            reason = _extra_problems(service, settings)
        report.append(
            ServiceStatus(
                name=service.name, address=service.address(settings), state=state, healthy=reason is None,
                detail=reason or "ok", log=supervisor.log_path(settings, service.name),
            )
        )
    return report


def _extra_problems(service: Service, settings: Settings) -> str | None:
    """What 'healthy' means beyond answering: the schema is migrated, the topics exist."""
    try:
        if service.name == "postgres":
            from app import migrate

            current, head = migrate.current_revision(settings), migrate.head_revision(settings)
            return None if current == head else f"schema at {current}, expected {head}"
        if service.name == "kafka":
            missing = kafka.missing_topics(settings)
            return f"missing topics: {', '.join(missing)}" if missing else None
    except Exception as error:
        return f"{type(error).__name__}: {error}".splitlines()[0][:200]
    return None


def down(settings: Settings, echo: Echo = print) -> None:
    """Stop every service in reverse order, then supervisord; leave no process of ours behind."""
    if supervisor.is_running(settings):
        _stop_running(settings, [stream.NAME] + [s.name for s in reversed(SERVICES)], echo)
        supervisor.shutdown(settings)
    leftovers = stray_processes(settings)
    for proc in leftovers:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.kill()
    psutil.wait_procs(leftovers, timeout=10)
    ray_head.remove_sockets(settings)
    BackgroundGroup(settings).remove()
    echo("stack     down")


def stray_processes(settings: Settings) -> list[psutil.Process]:
    """Service processes that outlived their supervisor (a Ray worker whose raylet died first, say).

    Matched by paths only our services put on their command lines, so a user's `tail -f` of a log survives.
    """
    markers = (
        str(local_paths.ray_temp_dir(settings)),
        str(ray_head.haproxy_dir(settings)),  # an HAProxy outliving Serve's proxy actor
        str(kafka.config_file(settings)),
        str(postgres.data_dir(settings)),
        str(mlflow_server.artifacts_dir(settings)),
        str(supervisor.config_path(settings)),
        str(settings.monitoring_dir),  # on the command line of every monitoring program
        str(settings.airflow_home),  # ... and of every Airflow program
        str(control_plane.home(settings)),  # ... and of every control-plane program
    )
    me = psutil.Process().pid
    found = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        cmdline = " ".join(proc.info["cmdline"] or [])
        if proc.pid != me and any(marker in cmdline for marker in markers):
            found.append(proc)
    return found


def stop_group(settings: Settings, group: str, echo: Echo = print) -> None:
    """Stop the running services of an optional group, the rest of the stack untouched."""
    check_groups((group,))
    if supervisor.is_running(settings):
        _stop_running(settings, [s.name for s in reversed(SERVICES) if s.group == group], echo)


def listening_ports(settings: Settings) -> list[int]:
    return [port for service in SERVICES for port in service.ports(settings) if _port_open("127.0.0.1", port)]
