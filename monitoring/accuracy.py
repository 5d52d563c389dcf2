"""Accuracy of served predictions, per prediction cohort (a model version's predictions of one day):

* realised: AUC, average precision and precision at the review capacity on the labels known at the report, with a
  bootstrap interval, for a cohort mature enough (the label maturity curve at its age, ``monitoring.maturity``)
  and with enough known frauds; otherwise "not mature" or "not enough data", never a number that reads too low;
* estimated: the same from the calibrated scores alone (``app.expected_accuracy``), for every cohort;
* per version: the realised numbers of its mature cohorts pooled (what the retraining check reads), and the
  estimate over the recent cohorts (the drift window).

Answers scored on default features (the feature store over its budget) are left out of every number and counted
beside it: they are a serving fault, not the model's answer, and retraining cannot fix them (as the drift comparison
leaves them out). Counted in, a slow store reads as a worse model: the demo's nightly checks on an unchanged world
asked for retraining on runs whose store fell behind.

Pure: labels, scores and event times in, ``app.reports`` models out; reading the joined rows lives in
``monitoring.run``."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score

from app import expected_accuracy as estimate
from app.reports import NOT_ENOUGH, Accuracy, CohortAccuracy, MaturityCurve, VersionAccuracy, VersionEstimate

BOOTSTRAP_SEED = 20261202  # pinned: the same rows give the same interval
_DAY = np.timedelta64(1, "D")


@dataclass(frozen=True)
class Rules:
    """The settings accuracy is judged by (``app.config``: accuracy_*, review_capacity_per_day)."""

    min_positives: int
    min_maturity: float
    max_drop: float
    resamples: int
    capacity: int


def realised(version: str, variant: str, labels: np.ndarray, scores: np.ndarray, baseline_auc: float | None,
             min_positives: int, max_drop: float, resamples: int, days: np.ndarray | None = None,
             capacity: int | None = None) -> VersionAccuracy:
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
    # a drop is what the interval says, not the point: a few dozen frauds move an AUC by more than the allowed share
    line = None if baseline_auc is None else (1 - max_drop) * baseline_auc
    dropped = line is not None and (high if high is not None else auc) < line
    reason = "" if not dropped else (
        f"AUC {auc:.4f} is more than {max_drop:.0%} under the training AUC {baseline_auc:.4f}"
        + ("" if high is None else f" (its 95 % interval {low:.4f} .. {high:.4f} is all under {line:.4f})"))
    at_capacity = (None if days is None or capacity is None
                   else estimate.precision_at_capacity(days, scores, labels.astype(np.float64), capacity))
    return VersionAccuracy(**common, roc_auc=auc, average_precision=float(average_precision_score(labels, scores)),
                           auc_low=low, auc_high=high, status="drop" if dropped else "ok", reason=reason,
                           precision_at_capacity=at_capacity)


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


def ages_days(times: np.ndarray, as_of: datetime) -> np.ndarray:
    """Each row's cohort age at ``as_of``: days from the end of its day (a day not over yet is 0 days old)."""
    end = np.datetime64(as_of.astimezone(UTC).replace(tzinfo=None), "us")
    day_end = times.astype("datetime64[D]") + _DAY
    return np.maximum((end - day_end) / _DAY, 0.0)


def row_ages_days(times: np.ndarray, as_of: datetime) -> np.ndarray:
    """Each row's own age at ``as_of`` in days (the maturity of a window of predictions, not of whole days)."""
    end = np.datetime64(as_of.astimezone(UTC).replace(tzinfo=None), "us")
    return np.maximum((end - times) / _DAY, 0.0)


def _faulty(degraded: np.ndarray | None, rows: int) -> np.ndarray:
    """The rows scored on default features (none when not given)."""
    return np.zeros(rows, dtype=bool) if degraded is None else np.asarray(degraded, dtype=bool)


def cohorts(version: str, variant: str, labels: np.ndarray, scores: np.ndarray, times: np.ndarray, as_of: datetime,
            curve: MaturityCurve, rules: Rules, degraded: np.ndarray | None = None) -> list[CohortAccuracy]:
    """One row per day of ``times`` (datetime64, UTC): its maturity, realised accuracy when mature, estimate; on
    the model's own answers (``degraded``: rows scored on default features, counted, left out)."""
    days = times.astype("datetime64[D]")
    ages = ages_days(times, as_of)
    faulty = _faulty(degraded, len(times))
    out = []
    for day in np.unique(days):
        of_day = days == day
        rows = of_day & ~faulty
        maturity = curve.at(float(ages[of_day][0]))
        known = labels[rows]
        estimated = (estimate.expected(scores[rows], days[rows], rules.capacity, rules.min_positives)
                     if rows.any() else None)
        common = {"day": day.astype(object), "model_version": version, "variant": variant, "rows": int(rows.sum()),
                  "degraded": int((faulty & of_day).sum()), "maturity": maturity, "estimated": estimated}
        if not rows.any():
            out.append(CohortAccuracy(**common, status=NOT_ENOUGH, realised=None,
                                      reason="every answer of the day was scored on default features"))
            continue
        if maturity < rules.min_maturity:
            out.append(CohortAccuracy(**common, status="not mature", realised=None, reason=(
                f"{maturity:.0%} of its frauds expected known, under {rules.min_maturity:.0%}")))
            continue
        positives = int(known.sum())
        if positives < rules.min_positives or positives == len(known):
            out.append(CohortAccuracy(**common, status=NOT_ENOUGH, realised=None, reason=(
                f"{positives} known frauds, fewer than {rules.min_positives}" if positives < rules.min_positives
                else f"all {positives} predictions are known frauds")))
            continue
        low, high = bootstrap_interval(known, scores[rows], rules.resamples)
        out.append(CohortAccuracy(**common, status="ok", realised=Accuracy(
            roc_auc=float(roc_auc_score(known, scores[rows])), auc_low=low, auc_high=high,
            average_precision=float(average_precision_score(known, scores[rows])),
            precision_at_capacity=estimate.precision_at_capacity(days[rows], scores[rows],
                                                                 known.astype(np.float64), rules.capacity),
            frauds=positives)))
    return out


def matured(version: str, variant: str, labels: np.ndarray, scores: np.ndarray, times: np.ndarray, as_of: datetime,
            curve: MaturityCurve, baseline_auc: float | None, rules: Rules, degraded: np.ndarray | None = None
            ) -> VersionAccuracy:
    """Realised accuracy of the version's mature cohorts pooled (younger ones are left out: their unreported frauds
    would read as legitimate), on the model's own answers (``degraded``: rows scored on default features, counted,
    left out)."""
    maturity = curve.at_ages(ages_days(times, as_of))
    faulty = _faulty(degraded, len(times))
    old_enough = maturity >= rules.min_maturity
    left_out = int((faulty & old_enough).sum())
    mature = old_enough & ~faulty
    if not mature.any():
        oldest = f"the oldest is {maturity.max():.0%} known" if len(maturity) else "no predictions"
        return VersionAccuracy(model_version=version, variant=variant, rows=0, positives=0, roc_auc=None,
                               average_precision=None, baseline_auc=baseline_auc, status=NOT_ENOUGH, degraded=left_out,
                               reason=(f"no mature cohort ({oldest}, under {rules.min_maturity:.0%})" if not left_out
                                       else f"all {left_out:,} mature answers were scored on default features"))
    result = realised(version, variant, labels[mature], scores[mature], baseline_auc, rules.min_positives,
                      rules.max_drop, rules.resamples, days=times[mature].astype("datetime64[D]"),
                      capacity=rules.capacity)
    return result.model_copy(update={"cohorts": len(np.unique(times[mature].astype("datetime64[D]"))),
                                     "maturity": float(maturity[mature].min()), "degraded": left_out})


def estimated(version: str, variant: str, scores: np.ndarray, times: np.ndarray, as_of: datetime,
              curve: MaturityCurve, baseline_auc: float | None, rules: Rules) -> VersionEstimate:
    """The version's estimated accuracy over the given (recent) predictions, with the expected share of their
    frauds already known (probability-weighted maturity)."""
    expected = estimate.expected(scores, times.astype("datetime64[D]"), rules.capacity, rules.min_positives)
    maturity = curve.at_ages(row_ages_days(times, as_of))  # of these rows, not of their whole days
    known = float((scores * maturity).sum() / scores.sum()) if scores.sum() > 0 else 0.0
    common = {"model_version": version, "variant": variant, "rows": len(scores), "maturity": known,
              "estimated": expected, "baseline_auc": baseline_auc}
    if expected is None or expected.roc_auc is None:
        return VersionEstimate(**common, status=NOT_ENOUGH, reason=(
            f"the scores expect {scores.sum():.1f} frauds in {len(scores):,} predictions, fewer than "
            f"{rules.min_positives}"))
    if baseline_auc is not None and expected.roc_auc < (1 - rules.max_drop) * baseline_auc:
        return VersionEstimate(**common, status="drop", reason=(
            f"estimated AUC {expected.roc_auc:.4f} is more than {rules.max_drop:.0%} under its estimate on the "
            f"training test part {baseline_auc:.4f}"))
    return VersionEstimate(**common, status="ok")
