"""The background CPU group, on a stand-in for cgroup v1's cpu controller (a folder): its shares are set, each
process is moved once, and a machine without a writable controller keeps running with a reason instead."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from app.config import Settings
from app.cpu_weight import GROUP, BackgroundGroup


def _controller(root: Path) -> Path:
    (root / "cpu.shares").write_text("1024\n")  # what marks cgroup v1's cpu controller
    return root


def test_the_group_gets_its_shares_and_each_process_is_moved_once(tmp_path: Path) -> None:
    _controller(tmp_path)
    group = BackgroundGroup(Settings(cpu_cgroup_root=tmp_path, background_cpu_shares=2))
    assert group.place(4242)
    procs = tmp_path / GROUP / "cgroup.procs"
    assert (tmp_path / GROUP / "cpu.shares").read_text() == "2\n" and procs.read_text() == "4242\n"
    procs.write_text("")
    assert group.place(4242) and procs.read_text() == ""  # already moved: not written again
    assert group.enter() and procs.read_text() == f"{os.getpid()}\n"
    assert group.unavailable is None


def test_without_a_writable_controller_nothing_moves_and_the_reason_is_logged_once(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    _controller(tmp_path)
    (tmp_path / "riskray").write_text("not a folder")  # where the group would go
    group = BackgroundGroup(Settings(cpu_cgroup_root=tmp_path, background_cpu_shares=2))
    with caplog.at_level(logging.WARNING):
        assert not group.place(1) and not group.place(2)
    assert group.unavailable is not None and "no CPU group" in group.unavailable
    assert len(caplog.records) == 1 and "keeps its priority only" in caplog.text


def test_a_folder_that_is_not_the_v1_cpu_controller_gets_no_group(tmp_path: Path) -> None:
    group = BackgroundGroup(Settings(cpu_cgroup_root=tmp_path / "cpu", background_cpu_shares=2))
    assert not group.enter() and not (tmp_path / "cpu").exists()  # on a cgroup v2 machine: no stray groups made
    assert group.unavailable == f"no cgroup v1 cpu controller at {tmp_path / 'cpu'}"


def test_zero_shares_means_no_group(tmp_path: Path) -> None:
    group = BackgroundGroup(Settings(cpu_cgroup_root=tmp_path, background_cpu_shares=0))
    assert not group.enter() and not (tmp_path / GROUP).exists()
    assert group.unavailable == "RISKRAY_BACKGROUND_CPU_SHARES is 0"
