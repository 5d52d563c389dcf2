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
from app.lists import ListView
from app.registry import CHALLENGER, CHAMPION, ModelVersion, Registry
from training import backtest
from training.evaluation import card_precision_at_k
from training.heldout import score_models

Metric = Literal["roc_auc", "average_precision", "backtest_cost"]


class ModelScore(BaseModel):
    version: str
    roc_auc: float
    average_precision: float
    card_precision_at_100: float | None = None  # with the rows' cards and days (training.evaluation)
    backtest_cost_per_day: float | None = None  # metric backtest_cost: its outcomes' cost a day (training.backtest)


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


def decide(labels: np.ndarray, challenger: tuple[str, np.ndarray], champion: tuple[str, np.ndarray] | None,
           metric: Metric, margin: float, since: datetime, until: datetime, rows: pd.DataFrame | None = None,
           costs: dict[str, float] | None = None) -> Comparison:
    """Pure: the scores of both models on the same rows -> the verdict (``rows``: their cards and days, for card
    precision@100; ``costs``: each version's backtested cost a day, for metric backtest_cost: lower wins, the
    margin a relative saving)."""
    def summary(version: str, scores: np.ndarray) -> ModelScore:
        return ModelScore(version=version, roc_auc=float(roc_auc_score(labels, scores)),
                          average_precision=float(average_precision_score(labels, scores)),
                          card_precision_at_100=None if rows is None else card_precision_at_k(rows, scores),
                          backtest_cost_per_day=(costs or {}).get(version))

    new = summary(*challenger)
    old = summary(*champion) if champion else None
    if old is None:
        promote, reason = True, "no champion: the challenger is the first model to serve"
    elif new.version == old.version:
        promote, reason = False, f"version {new.version} is already the champion"
    elif metric == "backtest_cost":
        if new.backtest_cost_per_day is None or old.backtest_cost_per_day is None:
            raise ValueError("metric backtest_cost needs both versions' backtested costs")
        saving = ((old.backtest_cost_per_day - new.backtest_cost_per_day) / old.backtest_cost_per_day
                  if old.backtest_cost_per_day > 0 else (0.0 if new.backtest_cost_per_day == 0 else -np.inf))
        promote = saving >= margin
        reason = (f"challenger {new.version} backtested cost {new.backtest_cost_per_day:,.0f} a day vs champion "
                  f"{old.version} {old.backtest_cost_per_day:,.0f}: saves {saving:+.1%} "
                  f"{'>=' if promote else '<'} margin {margin:+.1%}")
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
        resolved = registry.resolve(challenger)
        new = resolved.version
        current = registry.by_alias(CHAMPION) if champion == CHAMPION else registry.resolve(champion)
    refs = [new] + ([current.version] if current and current.version != new else [])
    say(f"compare: challenger {new} vs champion {current.version if current else 'none'} on "
        f"{since:%Y-%m-%d %H:%M} .. {until:%Y-%m-%d %H:%M}")
    rows, scores = score_models(settings, refs, since, until)
    labels = rows["is_fraud"].to_numpy(dtype=np.int64)
    old = (current.version, scores[current.version]) if current and current.version in scores else None
    if current is not None and old is None:  # the challenger is the champion already
        old = (new, scores[new])
    costs = (_costs(settings, rows, scores, [resolved, *([current] if current else [])], since, until)
             if metric == "backtest_cost" else None)
    result = decide(labels, (new, scores[new]), old, metric, margin, since, until, rows, costs)
    _log(settings, result)
    say(f"compare: {result.rows:,} rows, {result.positives} frauds; {result.reason}; "
        f"{'promote' if result.promote else 'keep the champion'}")
    return result


def _costs(settings: Settings, rows: pd.DataFrame, scores: dict[str, np.ndarray], versions: list[ModelVersion],
           since: datetime, until: datetime) -> dict[str, float]:
    """Each version's outcomes on the held-out rows by its own thresholds and the lists as they applied
    (``training.backtest``), as cost a day."""
    from app import lists
    from app.decision import CostModel

    view = ListView(lists.during(settings, since, until))
    cost_model = CostModel.from_settings(settings)
    days = max((until - since).total_seconds() / 86_400, 1e-9)
    fraud = rows["is_fraud"].to_numpy().astype(bool)
    amount = rows["amount"].to_numpy(dtype=np.float64)
    out = {}
    for version in versions:
        review_at, decline_at = backtest.thresholds_of(version)
        codes, _ = backtest.outcomes(scores[version.version], review_at, decline_at, rows, view)
        out[version.version] = float(backtest.per_row(codes, fraud, amount, cost_model)["cost"].sum() / days)
    return out


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
