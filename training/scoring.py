"""Batch scoring: a period's transactions from a file, with a registered model, features built from the file's
earlier transactions by the same point-in-time code as training (so no label of a scored transaction, nor any
label younger than the label delay, is used). Large files are scored in parallel blocks by Ray Data."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd

from app.config import Settings
from app.model_inputs import HISTORY_COLUMNS, model_inputs
from app.point_in_time import history_frame
from app.preprocessing import Preprocessor
from app.registry import ModelFiles, Registry
from training import data

PARALLEL_ABOVE_ROWS = 500_000  # below this, Ray Data's start-up costs more than it saves


@dataclass
class ScoreResult:
    rows: int
    flagged: int
    version: str


def load_model(files: ModelFiles) -> tuple[object, Preprocessor]:
    import xgboost as xgb

    booster = xgb.Booster()
    booster.load_model(bytearray(files.booster))
    return booster, Preprocessor.model_validate_json(files.preprocessor)


def _score_block(block: pd.DataFrame, files: ModelFiles, threshold: float) -> pd.DataFrame:
    booster, preprocessor = load_model(files)
    inputs = model_inputs(data.raw_fields(block), {name: block[name].to_numpy() for name in HISTORY_COLUMNS})
    probability = booster.inplace_predict(preprocessor.transform(inputs), validate_features=False)  # type: ignore[attr-defined]
    return pd.DataFrame({
        "transaction_id": block["transaction_id"].to_numpy(), "customer_id": block["customer_id"].to_numpy(),
        "timestamp": block["timestamp"].to_numpy(), "fraud_probability": probability.astype(np.float64),
        "is_fraud_pred": (probability >= threshold).astype(np.int64), "model_version": files.version,
    })


def score_file(settings: Settings, source: Path, out: Path, since: datetime | None, until: datetime | None,
               model: str, say: Callable[[str], None]) -> ScoreResult:
    transactions = data.read_file(source)  # errors here, before any model download or Ray work
    with Registry(settings) as registry:
        version = registry.resolve(model)
        files = registry.download(version)
        threshold = version.threshold
    say(f"model version {version.version} (threshold {threshold:.3f}); "
        f"features for {len(transactions):,} rows")
    history = history_frame(transactions, settings.label_delay_days)
    keep = data.in_period(transactions["timestamp"], since, until)
    if not keep.any():
        raise data.TrainingDataError(f"{source}: no transactions in the period to score")
    rows = pd.concat([transactions[keep], history[keep]], axis=1)
    if len(rows) > PARALLEL_ABOVE_ROWS:
        import ray.data

        from training.pipeline import ensure_ray

        ensure_ray(settings)
        scored = ray.data.from_pandas(rows).map_batches(
            _score_block, batch_format="pandas", fn_kwargs={"files": files, "threshold": threshold},
        ).to_pandas()
    else:
        scored = _score_block(rows, files, threshold)
    scored = scored.sort_values("timestamp", kind="stable")
    if out.suffix == ".csv":
        scored.to_csv(out, index=False)
    else:
        scored.to_parquet(out, index=False)
    return ScoreResult(len(scored), int(scored["is_fraud_pred"].sum()), version.version)
