"""A model's probability calibration: the map from its raw scores to probabilities that mean what they say, and
the measures of how far scores are from that (expected calibration error, reliability curve).

A booster's raw scores need not mean what they say: one trained with ``scale_pos_weight`` overstates the fraud odds
by about that weight (riskray's were, until measurement chose no reweighting: ``training.model.POSITIVE_WEIGHT``),
and boosting can be over- or under-confident on its own. Decisions only need the ranking, but anything that reads a
score as a probability (an expected confusion matrix, a mean score against the fraud rate) needs it calibrated.

Platt scaling on the log-odds, not isotonic regression: two parameters fit well on a validation part with few
frauds, where isotonic's step function would overfit them; and with a positive slope the map is strictly monotone,
so it makes no ties and changes no ranking (ROC AUC and average precision stay as they were, and decisions at a
threshold equal the raw model's at the threshold mapped back).

Training fits it (``training.calibration``) and saves it beside the model as :data:`FILE`;
:class:`app.model_artifact.ScoringModel` applies it to every score, so serving, batch scoring, evaluation and the
challenger comparison all read the same calibrated probabilities. Pure numpy and pydantic: monitoring measures
served scores with the same functions.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict

FILE = "calibration.json"
# Keeps the log-odds finite. Far below float32's steps near 0 and 1 (XGBoost's scores are float32, whose two values
# nearest 1 are 1 - 6e-8 and 1): a wider clip (1e-7) would tie them and so change the ranking at the very top.
EPSILON = 1e-15
BINS = 10


def logit(probability: np.ndarray) -> np.ndarray:
    """The log-odds of probabilities, clipped away from 0 and 1 (the feature Platt scaling is fitted on)."""
    p = np.clip(np.asarray(probability, dtype=np.float64), EPSILON, 1 - EPSILON)
    return np.log(p) - np.log1p(-p)


def sigmoid(log_odds: np.ndarray) -> np.ndarray:
    # -logaddexp(0, -z) = log(sigmoid(z)), without overflow for large |z|
    return np.exp(-np.logaddexp(0.0, -np.asarray(log_odds, dtype=np.float64)))


class Calibration(BaseModel):
    """How raw scores become probabilities: ``none`` (they already are) or ``platt``
    (sigmoid(slope * logit(p) + intercept)); ECE on validation before and after, for the record."""

    model_config = ConfigDict(frozen=True)

    method: Literal["none", "platt"] = "none"
    slope: float = 1.0
    intercept: float = 0.0
    ece_before: float | None = None
    ece_after: float | None = None

    def apply(self, probability: np.ndarray) -> np.ndarray:
        if self.method == "none":
            return np.asarray(probability, dtype=np.float64)
        return sigmoid(self.slope * logit(probability) + self.intercept)


def reliability_curve(labels: np.ndarray, probability: np.ndarray, bins: int = BINS
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(mean predicted probability, observed positive rate, count) of each non-empty bin of ``bins`` equal-width
    bins over [0, 1]."""
    p = np.asarray(probability, dtype=np.float64)
    y = np.asarray(labels, dtype=np.float64)
    index = np.clip((p * bins).astype(np.int64), 0, bins - 1)  # a score of exactly 1 belongs to the last bin
    count = np.bincount(index, minlength=bins)
    kept = count > 0
    predicted = np.bincount(index, weights=p, minlength=bins)[kept] / count[kept]
    observed = np.bincount(index, weights=y, minlength=bins)[kept] / count[kept]
    return predicted, observed, count[kept]


def expected_calibration_error(labels: np.ndarray, probability: np.ndarray, bins: int = BINS) -> float:
    """Mean |predicted - observed| over equal-width bins, weighted by their counts (NaN without rows)."""
    predicted, observed, count = reliability_curve(labels, probability, bins)
    if count.sum() == 0:
        return float("nan")
    return float(np.sum(count * np.abs(predicted - observed)) / count.sum())
