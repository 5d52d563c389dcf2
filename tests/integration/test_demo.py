"""`riskray demo` as a newcomer runs it, after the suite's own stack is down: the quick variant of the whole loop,
which starts the stack itself and stops it at the end, and Ctrl-C in the middle of a demo."""

from __future__ import annotations

import contextlib
import json
import os
import queue
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

from app.config import Settings
from app.operations import manager, supervisor
from tests.helpers import RISKRAY, riskray

pytestmark = pytest.mark.integration

PHASES = ["stack", "history", "champion", "live", "drift", "retraining", "after"]  # the report writes itself in the 8th
# The demo's timeline ends before its day, and the simulator's daily counts follow the weekday: a pinned day pins the
# world (measured with it: the challenger's AP 2x the champion's on the held-out day, promoted)
DAY = "2026-12-04"


def _quick_runs(settings: Settings) -> set[Path]:
    return set((settings.state_dir / "demo").glob("*-quick"))


def _newest_run(settings: Settings, before: set[Path]) -> Path:
    runs = sorted(_quick_runs(settings) - before)
    assert len(runs) == 1, runs
    return runs[0]


@pytest.mark.after_stack_down
@pytest.mark.timeout(1800)
def test_the_quick_demo_runs_the_whole_loop_loses_nothing_serves_the_retrained_champion_and_stops_its_stack(
        settings: Settings) -> None:
    # from a stopped stack, as on a fresh machine: the demo starts the stack with its own settings (its watermark
    # and label delay) and stops everything it started at the end
    assert not supervisor.is_running(settings)
    before = _quick_runs(settings)
    result = riskray("demo", "--quick", "--today", DAY, timeout=1800)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-3000:]
    run = _newest_run(settings, before)
    report = json.loads((run / "report.json").read_text())
    print("\n".join(f"{p['name']:<11} {p['seconds']:>5.0f} s  {p['figure']}" for p in report["phases"]))

    assert [p["name"] for p in report["phases"]] == PHASES
    assert [c for c in report["checks"] if not c["ok"]] == []
    c = report["counts"]
    assert c["produced"] == c["in_kafka"] == c["transactions"] == c["transactions_distinct"] > 0
    assert c["in_dlq"] == 0 and c["late"] == 0 and c["tiled"] == c["transactions"]
    assert c["served"] == c["logged"] == c["produced_live"] > 0 and c["failed"] == 0
    # the live traffic carried no label; its labels came as events during the replay, each stored once
    assert c["labels_sent"] == c["labels_in_kafka"] == c["labels_stored"] == c["label_rows"] > 0
    assert c["labels_in_dlq"] == 0 and c["labels_unmatched"] == 0
    days = report["labels"]["days"]
    assert len(days) >= 3 and all(0 <= d["known"] <= d["frauds"] for d in days)
    assert sum(d["known"] for d in days) > 0
    tasks = {t["task_id"]: t["state"] for t in report["airflow_run"]["tasks"]}
    assert [tasks[t] for t in ("check_drift", "retrain", "evaluate", "deploy", "validate")] == ["success"] * 5
    assert report["champion_after"] != report["champion_before"]["version"]
    assert report["comparison"]["promote"] is True
    assert any(a["model_version"] == report["champion_after"] and a["rows"] > 0 for a in report["realised_auc"])
    assert report["drift"] and report["drift"][0]["psi"] > 0.25
    # a nightly check after every live day before the run: the same world's quiet, the drift's caught the morning
    # after (both among the checks above); every live day's accuracy, estimated, and realised once mature
    plan = report["plan"]
    assert len(report["daily"]) == plan["same_days"] + plan["drifted_days"]
    assert any(c["realised_auc"] is not None for c in report["cohorts"])
    assert any(c["estimated_auc"] is not None for c in report["cohorts"])
    for name in ("report.md", "drift.png", "live_traffic.png", "accuracy.png"):
        assert (run / name).stat().st_size > 0, name
    assert "## Counts at every stage" in (written := (run / "report.md").read_text())
    assert "## Labels: late, as events" in written
    assert "## The nightly checks" in written and "## Accuracy per day, before and after the labels" in written

    # it stopped what it started: the whole stack, Airflow and Serve with it
    assert not supervisor.is_running(settings)
    assert manager.listening_ports(settings) == []
    assert manager.stray_processes(settings) == []


def _lines(process: subprocess.Popen[str]) -> queue.Queue[str]:
    lines: queue.Queue[str] = queue.Queue()

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.put(line)

    threading.Thread(target=read, daemon=True).start()
    return lines


@pytest.mark.after_stack_down
@pytest.mark.timeout(1200)
def test_ctrl_c_in_the_middle_of_the_demo_stops_every_service_it_started(settings: Settings) -> None:
    assert not supervisor.is_running(settings)  # the teardown test stopped the suite's stack
    before = _quick_runs(settings)
    process = subprocess.Popen([str(RISKRAY), "demo", "--quick", "--today", DAY], stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    lines, said = _lines(process), []
    deadline = time.monotonic() + 900

    def airflow_starting() -> bool:
        if not _quick_runs(settings) - before:  # the demo has not made its run folder yet
            return False
        log = _newest_run(settings, before) / "logs" / "stack.log"
        return log.exists() and "airflow-api starting" in log.read_text()

    try:
        # interrupt while the demo starts Airflow: the core stack is up and Airflow's programs are half-started,
        # the hardest moment to leave nothing behind
        while not airflow_starting():
            assert time.monotonic() < deadline and process.poll() is None, "".join(said)[-4000:]
            with contextlib.suppress(queue.Empty):
                said.append(lines.get(timeout=0.2))
        assert supervisor.is_running(settings) and manager.listening_ports(settings)
        process.send_signal(signal.SIGINT)
        code = process.wait(timeout=300)
    finally:
        if process.poll() is None:
            process.kill()
    while not lines.empty():
        said.append(lines.get())
    assert code == 130, "".join(said)[-4000:]
    assert "interrupted" in "".join(said)
    assert manager.listening_ports(settings) == []
    assert manager.stray_processes(settings) == []
    assert not supervisor.is_running(settings)
