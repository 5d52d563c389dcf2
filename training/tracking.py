"""MLflow: one run per training, the model registered as a new version of ``riskray-fraud`` with alias
``challenger`` (aliases, not the deprecated stages)."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from app.config import PROJECT_ROOT, Settings
from app.model_artifact import MODEL_DIR, MODEL_FORMAT, THRESHOLD_TAG
from app.registry import CHALLENGER


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=PROJECT_ROOT, capture_output=True, text=True,
                             timeout=10, check=True)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=PROJECT_ROOT,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return out.stdout.strip() + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def connect(settings: Settings) -> None:
    import mlflow

    mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
    mlflow.set_experiment(settings.mlflow_experiment)


def log_model(booster: Any, input_example: pd.DataFrame, registered_name: str, threshold: float,
              tags: dict[str, str] | None = None) -> str:
    """Log the booster with signature and input example and register it, its version's ``tags`` (the decision)
    set before the challenger alias, so no version is promotable without them; returns the new version."""
    import mlflow
    import mlflow.xgboost
    from mlflow.models import infer_signature

    example = input_example.head(5)
    signature = infer_signature(example, booster.inplace_predict(example.to_numpy(dtype=np.float32)))
    # The flavour's own requirements (xgboost at this version), stated rather than inferred: inference loads the
    # model in a subprocess to see what it imports, ~7 s of every training run, for the same answer
    info = mlflow.xgboost.log_model(
        booster, name=MODEL_DIR, signature=signature, input_example=example, model_format=MODEL_FORMAT,
        registered_model_name=registered_name, pip_requirements=mlflow.xgboost.get_default_pip_requirements(),
    )
    version = str(info.registered_model_version)
    client = mlflow.MlflowClient()
    client.set_model_version_tag(registered_name, version, THRESHOLD_TAG, f"{threshold:.6f}")
    for key, value in (tags or {}).items():
        client.set_model_version_tag(registered_name, version, key, value)
    client.set_registered_model_alias(registered_name, CHALLENGER, version)
    return version


def log_artifacts(paths: list[Path], artifact_path: str | None = None) -> None:
    import mlflow

    for path in paths:
        mlflow.log_artifact(str(path), artifact_path=artifact_path)
