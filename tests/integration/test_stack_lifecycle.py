"""`riskray stack up|status|down` as an operator runs them. The teardown test stops the stack, so it runs last."""

from __future__ import annotations

import pytest

from app.config import Settings
from app.stack import manager, ray_head
from tests import scratch
from tests.helpers import riskray

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
    from app.stack import supervisor

    assert not supervisor.is_running(stack)
    assert riskray("stack", "status").returncode == 1
