"""The DVC pipeline (dvc.yaml + params.yaml) for real: `dvc repro` runs extract -> train -> evaluate with the
project's code, DVC records the snapshot's hash, `dvc push` stores data and model in a local remote, and an
unchanged snapshot skips retraining."""

from __future__ import annotations

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


def _run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
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
    params["train"].update(source_file=str(tmp_path / "transactions.parquet"), trials=1, folds=2,
                           register_model=False)
    (repo / "params.yaml").write_text(yaml.safe_dump(params))
    for command in (["git", "init", "-q"], ["dvc", "init", "-q"],
                    ["dvc", "remote", "add", "-d", "local", str(tmp_path / "remote")]):
        assert _run(*command, cwd=repo).returncode == 0, command

    first = _run("dvc", "repro", cwd=repo)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    work = repo / ".riskray" / "training"
    for path in ("snapshot.parquet", "model/model.ubj", "model/preprocessor.json", "report/metrics.json",
                 "report/roc_curve.png", "report/pr_curve.png", "report/confusion_matrix.png"):
        assert (work / path).exists(), path
    lock = yaml.safe_load((repo / "dvc.lock").read_text())
    snapshot_out = next(o for o in lock["stages"]["extract"]["outs"] if o["path"].endswith("snapshot.parquet"))
    assert len(snapshot_out["md5"]) == 32

    pushed = _run("dvc", "push", cwd=repo)
    assert pushed.returncode == 0, pushed.stderr
    stored = {p.name for p in (tmp_path / "remote").rglob("*") if p.is_file()}
    assert snapshot_out["md5"][2:] in stored  # content-addressed: the MLflow tag data_md5 finds it here

    again = _run("dvc", "repro", cwd=repo)
    assert again.returncode == 0, again.stderr
    assert "Stage 'train' didn't change, skipping" in again.stdout
