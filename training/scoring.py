"""Batch scoring: a period's transactions from a file, with a registered model, features built from the file's
earlier transactions by the same point-in-time code as training (so no label of a scored transaction, nor any
label younger than the label delay, is used). Large files are scored in parallel blocks by Ray Data."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pandas as pd

from app.config import Settings
from app.model_artifact import ModelFiles, ScoringModel
from app.model_inputs import HISTORY_COLUMNS, model_inputs, raw_columns
from app.point_in_time import history_frame
from app.registry import Registry
from training import data

SCORING_ACTORS = 2


@dataclass
class ScoreResult:
    rows: int
    flagged: int
    version: str


class BlockScorer:
    """Scores blocks of rows (raw fields + history columns) with one model, loaded once: in this process, or once
    per actor of a Ray Data actor pool (never once per block)."""

    def __init__(self, files: ModelFiles) -> None:
        self.model = ScoringModel.from_files(files)

    def __call__(self, block: pd.DataFrame) -> pd.DataFrame:
        inputs = model_inputs(raw_columns(block), {name: block[name].to_numpy() for name in HISTORY_COLUMNS})
        _, probability = self.model.score(inputs)
        return pd.DataFrame({
            "transaction_id": block["transaction_id"].to_numpy(), "customer_id": block["customer_id"].to_numpy(),
            "timestamp": block["timestamp"].to_numpy(), "fraud_probability": probability,
            "is_fraud_pred": self.model.decide(probability), "model_version": self.model.version,
        })


def score_file(settings: Settings, source: Path, out: Path, since: datetime | None, until: datetime | None,
               model: str, say: Callable[[str], None]) -> ScoreResult:
    transactions = data.read_file(source)  # errors here, before any model download or Ray work
    with Registry(settings) as registry:
        files = registry.download(registry.resolve(model))
    say(f"model version {files.version} (threshold {files.threshold:.3f}); features for {len(transactions):,} rows")
    history = history_frame(transactions, settings.label_delay_days)
    keep = data.in_period(transactions["timestamp"], since, until)
    if not keep.any():
        raise data.TrainingDataError(f"{source}: no transactions in the period to score")
    rows = pd.concat([transactions[keep], history[keep]], axis=1)
    if len(rows) > settings.score_parallel_above_rows:
        import ray.data

        from training.pipeline import ensure_ray

        ensure_ray(settings)
        scored = ray.data.from_pandas(rows).map_batches(
            BlockScorer, batch_format="pandas", fn_constructor_kwargs={"files": files},
            # half a CPU each, from one actor up: scoring starts even while Serve replicas hold some of the CPUs
            compute=ray.data.ActorPoolStrategy(min_size=1, max_size=SCORING_ACTORS), num_cpus=0.5,
        ).to_pandas()
        # Ray Data hands back Arrow-backed columns: the same dtypes as the in-process path, whichever ran
        scored = scored.astype({"transaction_id": object, "customer_id": "int64", "fraud_probability": "float64",
                                "is_fraud_pred": "int64", "model_version": object})
        scored["timestamp"] = scored["timestamp"].astype("datetime64[us, UTC]")
    else:
        scored = BlockScorer(files)(rows)
    scored = scored.sort_values("timestamp", kind="stable")
    if out.suffix == ".csv":
        scored.to_csv(out, index=False)
    else:
        scored.to_parquet(out, index=False)
    return ScoreResult(len(scored), int(scored["is_fraud_pred"].sum()), files.version)
