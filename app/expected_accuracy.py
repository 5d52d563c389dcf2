"""Estimated accuracy before the labels: what a cohort's labels are expected to say, from the model's own calibrated
probabilities (the idea of NannyML's confidence-based performance estimation, CBPE).

If the scores are calibrated, a prediction with probability p is a fraud with probability p. Counting each
prediction as a fraud with weight p and as a legitimate transaction with weight 1 - p gives the expected confusion
matrix at every threshold, hence the expected ROC and precision-recall curves: the estimated AUC and average
precision are the weighted ones, and the expected precision at the review capacity is the mean probability of each
day's highest-scored predictions. Training computes it on its test part too (``test_roc_auc_estimated``): the
monitoring compares an estimate with that, like with like, so the estimator's own bias on this model cancels.

Written here rather than taken from NannyML (0.13.1): the estimator is a dozen lines over scikit-learn's weighted
metrics, while NannyML brings LightGBM, FLAML, plotly, s3fs/gcsfs and a usage tracker (segment-analytics) into every
process that imports monitoring.

What it can see: a shift the model's probabilities stay calibrated through (more of the fraud it knows, the inputs
moving where the relation between inputs and fraud holds). What it cannot: a change in that relation (the
probabilities are then confidently wrong and only the labels, once mature, tell). Measured on simulated worlds by
benchmarks/estimate_error.py (docs/monitoring.md, "Accuracy before and after the labels"): within ~0.03 AUC of the
realised value per day on the same world; blind to most of the drop an amount shift causes in the simulator, which
is such a change of relation.
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score

from app.reports import Accuracy


def precision_at_capacity(days: np.ndarray, scores: np.ndarray, values: np.ndarray, capacity: int) -> float | None:
    """Mean of ``values`` (labels: the realised precision; probabilities: the expected one) over each day's
    ``capacity`` highest-scored rows, pooled over days (a day with fewer rows reviews them all)."""
    if len(scores) == 0:
        return None
    order = np.lexsort((-scores, days))  # by day, highest score first
    day_sorted = days[order]
    starts = np.flatnonzero(np.r_[True, day_sorted[1:] != day_sorted[:-1]])
    rank = np.arange(len(order)) - np.repeat(starts, np.diff(np.r_[starts, len(order)]))
    return float(values[order][rank < capacity].mean())


def expected(scores: np.ndarray, days: np.ndarray, capacity: int, min_frauds: float) -> Accuracy | None:
    """The expected accuracy of calibrated ``scores`` (one per prediction, ``days`` its cohort), or None when they
    expect fewer than ``min_frauds`` frauds (too few to say, as for realised accuracy)."""
    scores = np.asarray(scores, dtype=np.float64)
    frauds = float(scores.sum())
    if len(scores) < 2 or frauds < min_frauds or frauds > len(scores) - min_frauds:
        return None
    labels = np.r_[np.ones(len(scores)), np.zeros(len(scores))]
    doubled = np.r_[scores, scores]
    weights = np.r_[scores, 1.0 - scores]
    return Accuracy(roc_auc=float(roc_auc_score(labels, doubled, sample_weight=weights)),
                    average_precision=float(average_precision_score(labels, doubled, sample_weight=weights)),
                    precision_at_capacity=precision_at_capacity(np.asarray(days), scores, scores, capacity),
                    frauds=frauds)
