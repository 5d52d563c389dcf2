"""Challenger against champion on the same held-out data: the retraining DAG's promotion gate.

Both models score the transactions of one period from the store (by default the latest ``compare_days`` whose
labels have matured: ``[now - label_delay - compare_days, now - label_delay)``), features built by the same
point-in-time code as training and batch scoring. The challenger is promoted only if it beats the champion by
``margin`` on the chosen metric. The comparison is logged as an MLflow run and as a tag on the challenger's
version; `riskray compare` prints it as its result line (``app.job_results``).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel
from sklearn.metrics import average_precision_score, roc_auc_score

from app.config import Settings
from app.labels import labels_cutoff, matured
from app.point_in_time import history_frame
from app.registry import CHALLENGER, CHAMPION, Registry
from training import data
from training.evaluation import card_precision_at_k

Metric = Literal["roc_auc", "average_precision"]


class ModelScore(BaseModel):
    version: str
    roc_auc: float
    average_precision: float
    card_precision_at_100: float | None = None  # with the rows' cards and days (training.evaluation)


class Comparison(BaseModel):
    since: datetime
    until: datetime
    rows: int
    positives: int
    metric: Metric
    margin: float
    challenger: ModelScore
    champion: ModelScore | None  # None: no champion yet, the challenger wins by default
    promote: bool
    reason: str


def score_models(settings: Settings, refs: list[str], since: datetime, until: datetime
                 ) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """The period's labelled rows and each model's probabilities for them (by resolved version)."""
    from training.pipeline import ensure_ray
    from training.scoring import BlockScorer

    data.require_transactions(settings, since, until)
    ensure_ray(settings)
    transactions = data.load_from_store(settings, since, until, labels_cutoff(settings, until))
    history = history_frame(transactions, settings.label_delay_days, data.load_fraud_reports(settings, since, until))
    keep = data.in_period(transactions["timestamp"], since, until)
    rows = pd.concat([transactions[keep], history[keep]], axis=1)
    if rows.empty:
        raise data.TrainingDataError(f"feature store: no transactions between {since:%Y-%m-%d %H:%M} and "
                                     f"{until:%Y-%m-%d %H:%M} to compare the models on")
    rows["is_fraud"] = matured(rows[data.LABEL].to_numpy())  # as training reads a period's labels
    data.require_both_classes(rows["is_fraud"], "comparison period")
    scores = {}
    with Registry(settings) as registry:
        for ref in refs:
            files = registry.download(registry.resolve(ref))
            scores[files.version] = BlockScorer(files)(rows)["fraud_probability"].to_numpy()
    return rows, scores


def decide(labels: np.ndarray, challenger: tuple[str, np.ndarray], champion: tuple[str, np.ndarray] | None,
           metric: Metric, margin: float, since: datetime, until: datetime, rows: pd.DataFrame | None = None
           ) -> Comparison:
    """Pure: the scores of both models on the same rows -> the verdict (``rows``: their cards and days, for card
    precision@100)."""
    def summary(version: str, scores: np.ndarray) -> ModelScore:
        return ModelScore(version=version, roc_auc=float(roc_auc_score(labels, scores)),
                          average_precision=float(average_precision_score(labels, scores)),
                          card_precision_at_100=None if rows is None else card_precision_at_k(rows, scores))

    new = summary(*challenger)
    old = summary(*champion) if champion else None
    if old is None:
        promote, reason = True, "no champion: the challenger is the first model to serve"
    elif new.version == old.version:
        promote, reason = False, f"version {new.version} is already the champion"
    else:
        gain = getattr(new, metric) - getattr(old, metric)
        promote = gain >= margin
        reason = (f"challenger {new.version} {metric} {getattr(new, metric):.4f} vs champion {old.version} "
                  f"{getattr(old, metric):.4f}: {gain:+.4f} {'>=' if promote else '<'} margin {margin:+.4f}")
    return Comparison(since=since, until=until, rows=len(labels), positives=int(labels.sum()), metric=metric,
                      margin=margin, challenger=new, champion=old, promote=promote, reason=reason)


def compare(settings: Settings, since: datetime, until: datetime, metric: Metric, margin: float,
            challenger: str = CHALLENGER, champion: str = CHAMPION,
            say: Callable[[str], None] = print) -> Comparison:
    with Registry(settings) as registry:
        new = registry.resolve(challenger).version
        current = registry.by_alias(CHAMPION) if champion == CHAMPION else registry.resolve(champion)
    refs = [new] + ([current.version] if current and current.version != new else [])
    say(f"compare: challenger {new} vs champion {current.version if current else 'none'} on "
        f"{since:%Y-%m-%d %H:%M} .. {until:%Y-%m-%d %H:%M}")
    rows, scores = score_models(settings, refs, since, until)
    labels = rows["is_fraud"].to_numpy(dtype=np.int64)
    old = (current.version, scores[current.version]) if current and current.version in scores else None
    if current is not None and old is None:  # the challenger is the champion already
        old = (new, scores[new])
    result = decide(labels, (new, scores[new]), old, metric, margin, since, until, rows)
    _log(settings, result)
    say(f"compare: {result.rows:,} rows, {result.positives} frauds; {result.reason}; "
        f"{'promote' if result.promote else 'keep the champion'}")
    return result


def _log(settings: Settings, result: Comparison) -> None:
    """An MLflow run per comparison, and the verdict on the challenger's version (what the registry UI shows)."""
    import mlflow

    from training import tracking

    tracking.connect(settings)
    champion = result.champion.version if result.champion else "none"
    with mlflow.start_run(run_name=f"compare-v{result.challenger.version}-vs-v{champion}"):
        mlflow.log_params({"challenger_version": result.challenger.version, "champion_version": champion,
                           "since": result.since.isoformat(), "until": result.until.isoformat(),
                           "metric": result.metric, "margin": result.margin, "rows": result.rows,
                           "positives": result.positives})
        metrics = {f"challenger_{k}": getattr(result.challenger, k) for k in ("roc_auc", "average_precision")}
        if result.champion:
            metrics |= {f"champion_{k}": getattr(result.champion, k) for k in ("roc_auc", "average_precision")}
        mlflow.log_metrics(metrics)
        mlflow.set_tags({"kind": "comparison", "promote": str(result.promote), "reason": result.reason})
    with Registry(settings) as registry:
        registry.set_version_tag(result.challenger.version, "comparison",
                                 f"{'promote' if result.promote else 'keep champion'}: {result.reason}")
