"""Realised accuracy: AUC and average precision of served predictions whose labels have matured, with a
bootstrap interval, or "not enough data" when the window cannot say (one class, too few frauds).

Pure: labels and scores in, ``app.reports.VersionAccuracy`` out; reading the joined rows lives in
``monitoring.run``."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score

from app.reports import NOT_ENOUGH, VersionAccuracy

BOOTSTRAP_SEED = 20261202  # pinned: the same rows give the same interval


def realised(version: str, variant: str, labels: np.ndarray, scores: np.ndarray, baseline_auc: float | None,
             min_positives: int, max_drop: float, resamples: int) -> VersionAccuracy:
    labels = np.asarray(labels, dtype=np.int64)
    scores = np.asarray(scores, dtype=np.float64)
    positives = int(labels.sum())
    common = {"model_version": version, "variant": variant, "rows": len(labels), "positives": positives,
              "baseline_auc": baseline_auc}
    if positives == 0 or positives == len(labels):
        return VersionAccuracy(**common, roc_auc=None, average_precision=None, status=NOT_ENOUGH,
                               reason=f"{len(labels)} matured predictions, all of one class")
    if positives < min_positives:
        return VersionAccuracy(**common, roc_auc=None, average_precision=None, status=NOT_ENOUGH,
                               reason=f"{positives} labelled frauds, fewer than {min_positives}")
    auc = float(roc_auc_score(labels, scores))
    low, high = bootstrap_interval(labels, scores, resamples)
    dropped = baseline_auc is not None and auc < (1 - max_drop) * baseline_auc
    reason = (f"AUC {auc:.4f} is more than {max_drop:.0%} under the training AUC {baseline_auc:.4f}" if dropped
              else "")
    return VersionAccuracy(**common, roc_auc=auc, average_precision=float(average_precision_score(labels, scores)),
                           auc_low=low, auc_high=high, status="drop" if dropped else "ok", reason=reason)


def bootstrap_interval(labels: np.ndarray, scores: np.ndarray, resamples: int) -> tuple[float | None, float | None]:
    """95 % percentile interval of the AUC over resamples of the rows (resamples with one class are skipped)."""
    if resamples <= 0:
        return None, None
    rng = np.random.default_rng(BOOTSTRAP_SEED)
    values = []
    for _ in range(resamples):
        rows = rng.integers(0, len(labels), len(labels))
        sample = labels[rows]
        if 0 < sample.sum() < len(sample):
            values.append(roc_auc_score(sample, scores[rows]))
    if not values:
        return None, None
    low, high = np.percentile(values, [2.5, 97.5])
    return float(low), float(high)
