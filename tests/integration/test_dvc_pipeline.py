"""The DVC pipeline (dvc.yaml + params.yaml) for real: `dvc repro` runs snapshot -> features -> train -> evaluate
with the project's code, DVC records the snapshot's hash, `dvc push` stores data and model in a local remote, an
unchanged snapshot skips retraining, and a RISKRAY_* setting reaches the stages as it reaches `riskray train` (a changed
one makes DVC re-run them)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest
import yaml

from app.config import PROJECT_ROOT, Settings
from streaming.simulator import Simulator, SimulatorConfig

pytestmark = pytest.mark.integration


def _run(*args: str, cwd: Path, **settings: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}", **settings}
    return subprocess.run(list(args), cwd=cwd, env=env, capture_output=True, text=True, timeout=900)


def test_dvc_repro_runs_the_pipeline_and_pushes_data_and_model(stack: Settings, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    for name in ("app", "training"):  # the stages' code dependencies, as in the project
        (repo / name).symlink_to(PROJECT_ROOT / name)
    shutil.copy(PROJECT_ROOT / "dvc.yaml", repo / "dvc.yaml")
    frame = pd.concat(list(Simulator(SimulatorConfig(seed=5)).backfill(datetime(2026, 3, 1, tzinfo=UTC), 1)))
    frame.drop(columns="scenario").to_parquet(tmp_path / "transactions.parquet")
    params = yaml.safe_load((PROJECT_ROOT / "params.yaml").read_text())
    # trials and folds come from the settings, as `riskray train` reads them; the rest from params.yaml
    params["train"].update(source_file=str(tmp_path / "transactions.parquet"), cv_gap_days=0.1,
                           register_model=False)
    (repo / "params.yaml").write_text(yaml.safe_dump(params))
    for command in (["git", "init", "-q"], ["dvc", "init", "-q"],
                    ["dvc", "remote", "add", "-d", "local", str(tmp_path / "remote")]):
        assert _run(*command, cwd=repo).returncode == 0, command

    # one Ray Train worker: this test is about DVC, and each worker is a process to start (~4 s on two cores)
    one_trial = {"RISKRAY_TUNE_TRIALS": "1", "RISKRAY_CV_FOLDS": "2", "RISKRAY_TRAIN_WORKERS": "1"}
    first = _run("dvc", "repro", cwd=repo, **one_trial)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    work = repo / ".riskray" / "training"
    for path in ("snapshot.parquet", "features.parquet", "model/model.ubj", "model/preprocessor.json",
                 "report/metrics.json", "report/cv_vs_test.json", "report/roc_curve.png",
                 "report/pr_curve.png", "report/confusion_matrix.png"):
        assert (work / path).exists(), path
    lock = yaml.safe_load((repo / "dvc.lock").read_text())
    snapshot_out = next(o for o in lock["stages"]["snapshot"]["outs"] if o["path"].endswith("snapshot.parquet"))
    assert len(snapshot_out["md5"]) == 32

    pushed = _run("dvc", "push", cwd=repo)
    assert pushed.returncode == 0, pushed.stderr
    stored = {p.name for p in (tmp_path / "remote").rglob("*") if p.is_file()}
    assert snapshot_out["md5"][2:] in stored  # content-addressed: the MLflow tag data_md5 finds it here

    assert json.loads((work / "model" / "training.json").read_text())["trials"] == 1

    again = _run("dvc", "repro", cwd=repo, **one_trial)
    assert again.returncode == 0, again.stderr
    assert "Stage 'train' didn't change, skipping" in again.stdout

    # A changed setting invalidates the stages after the snapshot: the snapshot stage (which DVC always runs) writes
    # the effective options, and DVC then sees train's dependency changed. (The first run showed train taking its
    # trials from there: the setting said 1, params.yaml nothing.)
    no_search = _run("dvc", "repro", "--single-item", "snapshot", cwd=repo, **{**one_trial, "RISKRAY_TUNE_TRIALS": "0"})
    assert no_search.returncode == 0, no_search.stdout[-3000:] + no_search.stderr[-3000:]
    assert json.loads((work / "options.json").read_text())["trials"] == 0
    status = _run("dvc", "status", "train", cwd=repo)
    assert status.returncode == 0 and "changed deps" in status.stdout and "options.json" in status.stdout, status.stdout
