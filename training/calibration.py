"""Calibration at training time: measured on the validation part, fitted there when the model is off
(``app.calibration`` holds the contract, its Platt map and the measures; why Platt is said there).

Rule: when the raw validation scores' expected calibration error exceeds ``RISKRAY_CALIBRATION_MAX_ECE_SHARE`` of the
validation fraud rate, fit Platt scaling (a one-feature logistic regression on the log-odds) on them; otherwise keep
the scores as they are. Relative, because with a fraud rate under 1 % most scores sit in the lowest bin, where
predicted and observed are both near 0: a model whose scores are 1.7 times the fraud rate measured an ECE of 0.005.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from app.calibration import Calibration, expected_calibration_error, logit, reliability_curve
from training.evaluation import save_figure

RELIABILITY_PLOT = "reliability.png"
UNREGULARISED = 1e6  # LogisticRegression's C: two parameters on thousands of rows need no shrinking


def fit(labels: np.ndarray, raw_probability: np.ndarray, max_ece_share: float) -> Calibration:
    """The calibration of a model from its raw validation scores."""
    from sklearn.linear_model import LogisticRegression

    before = expected_calibration_error(labels, raw_probability)
    if len(labels) == 0 or np.min(labels) == np.max(labels):  # one class: nothing to fit a map on
        return Calibration(method="none", ece_before=before, ece_after=before)
    max_ece = max_ece_share * float(np.mean(labels)) if len(labels) else float("nan")
    if not before > max_ece:  # NaN (no rows) keeps the identity too
        return Calibration(method="none", ece_before=before, ece_after=before)
    regression = LogisticRegression(C=UNREGULARISED, solver="lbfgs", max_iter=1000)
    regression.fit(logit(raw_probability).reshape(-1, 1), np.asarray(labels, dtype=np.int64))
    platt = Calibration(method="platt", slope=float(regression.coef_[0, 0]),
                        intercept=float(regression.intercept_[0]), ece_before=before)
    after = expected_calibration_error(labels, platt.apply(raw_probability))
    # a slope <= 0 would reverse the ranking (a model no better than chance on validation), and a map that does not
    # lower the error is no calibration: keep the raw scores then
    if platt.slope <= 0 or not after < before:
        return Calibration(method="none", ece_before=before, ece_after=before)
    return platt.model_copy(update={"ece_after": after})


def save_reliability_plot(path: Path, labels: np.ndarray, raw: np.ndarray, calibrated: np.ndarray) -> Path:
    """Observed fraud rate against mean predicted probability per bin, raw and calibrated (the test part)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot([0, 1], [0, 1], "--", color="grey", linewidth=0.8, label="perfectly calibrated")
    for name, scores in (("raw", raw), ("calibrated", calibrated)):
        predicted, observed, _ = reliability_curve(labels, scores)
        ece = expected_calibration_error(labels, scores)
        ax.plot(predicted, observed, "o-", label=f"{name} (ECE {ece:.4f})")
    ax.set(xlabel="mean predicted probability", ylabel="observed fraud rate", xlim=(0, 1), ylim=(0, 1),
           title="Reliability (test)")
    ax.legend(loc="upper left")
    return save_figure(fig, path)
