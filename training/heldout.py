"""A held-out period's rows from the store with each model's probabilities: what the promotion gate
(``training.compare``) and the backtest (``training.backtest``) score, with the point-in-time inputs of training
and batch scoring."""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pandas as pd

from app.config import Settings
from app.labels import labels_cutoff, matured
from app.point_in_time import history_frame
from app.registry import Registry
from training import data


def score_models(settings: Settings, refs: list[str], since: datetime, until: datetime,
                 labels_at: datetime | None = None, both_classes: bool = True
                 ) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """The period's labelled rows and each model's probabilities for them (by resolved version); labels as known
    at ``labels_at`` (default: once matured, ``labels_cutoff``)."""
    from training.scoring import BlockScorer

    transactions = data.load_from_store(settings, since, until, labels_at or labels_cutoff(settings, until))
    history = history_frame(transactions, settings.label_delay_days, data.load_fraud_reports(settings, since, until))
    keep = data.in_period(transactions["timestamp"], since, until)
    rows = pd.concat([transactions[keep], history[keep]], axis=1)
    if rows.empty:
        raise data.TrainingDataError(f"feature store: no transactions between {since:%Y-%m-%d %H:%M} and "
                                     f"{until:%Y-%m-%d %H:%M} to compare the models on")
    rows["is_fraud"] = matured(rows[data.LABEL].to_numpy())  # as training reads a period's labels
    if both_classes:
        data.require_both_classes(rows["is_fraud"], "comparison period")
    scores = {}
    with Registry(settings) as registry:
        for ref in refs:
            files = registry.download(registry.resolve(ref))
            scores[files.version] = BlockScorer(files)(rows)["fraud_probability"].to_numpy()
    return rows, scores
