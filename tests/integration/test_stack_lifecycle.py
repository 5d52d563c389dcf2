"""`riskray stack up|status|down` as an operator runs them. The teardown test stops the stack, so it runs last."""

from __future__ import annotations

import pytest

from app.config import Settings
from app.operations import manager, ray_head
from tests import scratch
from tests.helpers import riskray

from .served_world import World

pytestmark = pytest.mark.integration


def _always_started() -> list[manager.Service]:
    """Every service but the optional groups' (`stack up --with airflow`)."""
    return [s for s in manager.SERVICES if s.group is None]


def test_status_shows_every_service_healthy_after_up(stack: Settings) -> None:
    result = riskray("stack", "status")
    assert result.returncode == 0, result.stdout + result.stderr
    for name in ("postgres", "kafka", "ray", "mlflow"):
        assert name in result.stdout
    assert result.stdout.count("healthy") == len(_always_started())
    assert str(stack.logs_dir) in result.stdout


def test_up_again_is_harmless(stack: Settings) -> None:
    result = riskray("stack", "up")
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("already running") == len(_always_started())
    assert all(item.healthy for item in manager.status(stack))


@pytest.mark.stack_teardown
def test_down_leaves_no_listening_port_or_process_behind(stack: Settings) -> None:
    scratch.remove(stack)  # the session's scratch world goes while the stack can still remove it
    result = riskray("stack", "down")
    assert result.returncode == 0, result.stderr
    assert manager.listening_ports(stack) == []
    assert manager.stray_processes(stack) == []
    link = ray_head.haproxy_socket_dir(stack)  # the one path outside the state folder
    assert not link.exists() and not link.is_symlink()
    from app.operations import supervisor

    assert not supervisor.is_running(stack)
    assert riskray("stack", "status").returncode == 1


def test_every_port_the_stack_opens_listens_on_loopback_only(served_world: World, stack: Settings) -> None:
    """With Serve running (the served world: replicas, proxy, HAProxy), every listening socket of every process
    of the stack, children included (Ray's workers), is on a loopback address."""
    import psutil

    processes = {p.pid: p for p in manager.stray_processes(stack)}  # every process carrying our paths
    for proc in list(processes.values()):
        try:
            processes.update({child.pid: child for child in proc.children(recursive=True)})
        except psutil.NoSuchProcess:
            continue
    loopback = {"127.0.0.1", "::1", "::ffff:127.0.0.1"}
    # The two ports no setting of ours reaches: a Serve replica's inter-deployment gRPC server (bound to "[::]:0" in
    # ray/serve/_private/replica.py) and, in HAProxy mode, its direct-ingress HTTP server (Ray forces it to all
    # interfaces so HAProxy on other nodes reaches it, ray/serve/_private/constants.py). docs/limits.md.
    unreachable_by_settings = ("ray::ServeReplica",)
    listening = [(c.laddr.ip, c.laddr.port, c.pid) for c in psutil.net_connections(kind="inet")
                 if c.status == psutil.CONN_LISTEN and c.pid in processes]
    assert len(listening) > 20, listening  # PostgreSQL, Kafka, MLflow, Prometheus, Ray and its workers, Serve
    exposed = [(ip, port, name) for ip, port, pid in listening
               if ip not in loopback and not (name := " ".join(processes[pid].cmdline())).startswith(
                   unreachable_by_settings)]
    assert not exposed, exposed
    assert stack.serve_port in {port for _, port, _ in listening}
