"""The command line as a user meets it: a subprocess, its exit code and what it prints."""

from __future__ import annotations

from pathlib import Path

from app.operations import manager
from tests.helpers import riskray as run


def test_help_lists_every_command() -> None:
    result = run("--help")
    assert result.returncode == 0
    for command in ("stack", "db", "config"):
        assert command in result.stdout
    stack_help = run("stack", "--help").stdout
    for command in ("up", "status", "down"):
        assert command in stack_help


def test_invalid_setting_is_one_line_naming_the_variable_not_a_traceback() -> None:
    result = run("stack", "status", RISKRAY_POSTGRES_PORT="abc")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("riskray: invalid setting RISKRAY_POSTGRES_PORT='abc'")


def test_missing_java_is_one_line_before_anything_starts(tmp_path: Path) -> None:
    result = run("stack", "up", RISKRAY_JAVA_BIN="/nonexistent/java", RISKRAY_STATE_DIR=str(tmp_path / "state"))
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Java 17+ is required" in lines[0]
    assert not (tmp_path / "state").exists(), "nothing may start without Java"


def test_config_masks_the_password() -> None:
    result = run("config", RISKRAY_POSTGRES_PASSWORD="hunter2")
    assert result.returncode == 0
    assert "RISKRAY_POSTGRES_PASSWORD" in result.stdout and "hunter2" not in result.stdout


def test_status_of_a_stack_that_was_never_started_exits_non_zero(tmp_path: Path) -> None:
    result = run("stack", "status", RISKRAY_STATE_DIR=str(tmp_path), RISKRAY_POSTGRES_PORT="1",
                 RISKRAY_KAFKA_PORT="2", RISKRAY_RAY_DASHBOARD_PORT="3", RISKRAY_MLFLOW_PORT="4")
    assert result.returncode == 1
    assert result.stdout.count("DOWN") == len([s for s in manager.SERVICES if s.group is None])
    assert result.stdout.count("OFF") == len([s for s in manager.SERVICES if s.group])  # optional: not a failure
