"""Data drift of the model's inputs: a reference frozen at training, compared with the inputs actually served.

Choices, from what goes wrong with the usual recipes (../shared/FACTS.md):

* **Bins are frozen at training**, on the training data's quantiles, with open outer bins and a bin of their own
  for missing values (NaN: "no history"), so a window's edges never move with the window and a heavy tail keeps
  its own bins. Categorical inputs keep their category shares (unseen categories in one "other" bin).
* **PSI** on those bins, empty bins smoothed (a share of 0 would make PSI infinite), and for numeric inputs the
  **KS statistic** against the reference's quantiles — the statistic, not its p-value, which is always tiny at
  10^5 rows.
* **Like with like.** An input built from a d-day window is compared only over served rows whose window the store
  had filled, against training rows whose window was full (``app.drift_reference``); if training had none, the
  input is left out of the verdict, saying so. Calendar inputs (hour, night, weekend) are judged only over a window
  of whole weeks: part of a week against a reference of whole weeks differs with nothing changed.
* **A sample-size floor per threshold.** PSI of two samples of one distribution is about (1/n + 1/m) χ²(B − 1),
  so a fixed threshold misfires on a small window. A threshold is judged only from the size at which the 99th
  percentile of that noise stays under half of it: below the warn threshold's floor a result cannot say "warn"
  (status "not enough data", the PSI shown), below the action threshold's (smaller) floor it says nothing. So a
  day of traffic too small to tell a 0.1 from noise can still tell a 0.4 (the next morning's check of a shift).

The reference itself (bins, shares, quantiles) is built at training by ``app.drift_reference``.
Pure: arrays in, pydantic results out; reading the served inputs and writing reports live in ``monitoring.run``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Literal

import numpy as np
from pydantic import BaseModel, Field

from app.drift_reference import (
    OTHER,
    CategoricalReference,
    DriftReference,
    NumericReference,
    bin_counts,
    window_full,
)
from app.model_inputs import CALENDAR_INPUTS
from app.reports import LEFT_OUT, NOT_ENOUGH, FeatureDrift, Status

SMOOTHING = 1e-4  # the share an empty bin is given (on both sides), so PSI stays finite

class Thresholds(BaseModel):
    warn: float = Field(default=0.1, gt=0)
    act: float = Field(default=0.25, gt=0)


# --- comparison -------------------------------------------------------------------------------------------
def psi(expected_shares: np.ndarray, actual_counts: np.ndarray) -> float:
    """Population stability index of current counts against reference shares, empty bins smoothed."""
    expected = np.maximum(np.asarray(expected_shares, dtype=np.float64), SMOOTHING)
    actual = np.maximum(actual_counts / max(actual_counts.sum(), 1.0), SMOOTHING)
    expected, actual = expected / expected.sum(), actual / actual.sum()
    return float(np.sum((actual - expected) * np.log(actual / expected)))


def ks_statistic(reference_quantiles: np.ndarray, values: np.ndarray) -> float | None:
    """sup |F_ref − F_current| over the non-missing values, F_ref interpolated from the reference's quantiles."""
    present = np.sort(values[~np.isnan(values)])
    if present.size == 0 or len(reference_quantiles) == 0:
        return None
    grid = np.linspace(0, 1, len(reference_quantiles))
    points = np.unique(np.concatenate([present, reference_quantiles]))
    f_ref = np.interp(points, reference_quantiles, grid, left=0.0, right=1.0)
    f_cur = np.searchsorted(present, points, side="right") / present.size
    return float(np.max(np.abs(f_ref - f_cur)))


def min_rows(bins: int, reference_rows: int, thresholds: Thresholds) -> int:
    """Fewest current rows at which same-distribution noise stays under half the warn threshold (99th percentile
    of (1/n + 1/m) χ²(bins − 1)); below it a PSI is not trusted."""
    from scipy.stats import chi2

    noise = chi2.ppf(0.99, max(bins - 1, 1))
    room = thresholds.warn / 2 - noise / max(reference_rows, 1)
    return int(np.ceil(noise / room)) if room > 0 else np.iinfo(np.int32).max


def _status(value: float, thresholds: Thresholds) -> Status:
    return "act" if value > thresholds.act else "warn" if value > thresholds.warn else "ok"


def _judged(reference: NumericReference | CategoricalReference, kind: Literal["numeric", "categorical", "score"],
            rows: int, bins: int, thresholds: Thresholds, measure: Callable[[], tuple[float, float | None]]
            ) -> FeatureDrift:
    """The result of ``rows`` current values, by the floors of ``bins`` bins: ``measure`` gives (PSI, KS)."""
    floor = min_rows(bins, reference.rows, thresholds)
    act_floor = min_rows(bins, reference.rows, Thresholds(warn=thresholds.act, act=thresholds.act))
    common = {"name": reference.name, "kind": kind, "rows": rows, "min_rows": floor}
    if rows < min(floor, act_floor):
        return FeatureDrift(**common, psi=None, status=NOT_ENOUGH)
    value, ks = measure()
    if rows < floor:  # enough rows to tell an action-level shift from noise, not a warn-level one
        status: Status = "act" if value > thresholds.act else NOT_ENOUGH
        return FeatureDrift(**common, psi=value, ks=ks, status=status, reason=(
            f"{rows:,} rows judge the action threshold (from {act_floor:,}), not the warn threshold (from "
            f"{floor:,})"))
    return FeatureDrift(**common, psi=value, ks=ks, status=_status(value, thresholds))


def _numeric(reference: NumericReference, values: np.ndarray, thresholds: Thresholds,
             kind: Literal["numeric", "score"]) -> FeatureDrift:
    values = np.asarray(values, dtype=np.float64)
    bins = len(reference.shares) - (0 if reference.shares[-1] > 0 else 1)  # the missing bin counts when used
    return _judged(reference, kind, len(values), bins, thresholds, lambda: (
        psi(np.asarray(reference.shares), bin_counts(values, np.asarray(reference.edges))),
        ks_statistic(np.asarray(reference.quantiles), values)))


def _categorical(reference: CategoricalReference, values: np.ndarray, thresholds: Thresholds) -> FeatureDrift:
    known = list(reference.shares)
    index = {k: i for i, k in enumerate(known)}
    other = index[OTHER]
    codes = np.fromiter((index.get(str(v), other) for v in values), dtype=np.int64, count=len(values))
    return _judged(reference, "categorical", len(values), len(known), thresholds, lambda: (
        psi(np.array([reference.shares[k] for k in known]),
            np.bincount(codes, minlength=len(known)).astype(np.float64)), None))


def whole_weeks(window_days: float | None) -> bool:
    return window_days is not None and window_days >= 7 and float(window_days) % 7 == 0


def _left_out(reference: NumericReference, window_days: float | None,
              history_start: datetime | None) -> str | None:
    """Why an input is not judged over this window, or None."""
    if reference.name in CALENDAR_INPUTS and not whole_weeks(window_days):
        return (f"a calendar input is judged over whole weeks only, and the window is "
                f"{'unknown' if window_days is None else f'{window_days:g} days'}")
    if reference.window_days is not None and reference.rows == 0:
        since = f"from {history_start:%Y-%m-%d %H:%M}" if history_start else "of unknown start"
        return (f"no training row had a full {reference.window_days}-day window (the training history ran "
                f"{since}): nothing like what serving sees to compare with")
    return None


def compare(reference: DriftReference, inputs: Mapping[str, np.ndarray], scores: np.ndarray | None,
            thresholds: Thresholds | None = None, times: np.ndarray | None = None,
            window_days: float | None = None) -> list[FeatureDrift]:
    """Drift of every model input (and of the scores, when given) against the reference. ``times``: the served
    rows' event times (datetime64 UTC), so a window's input is judged only where its window was full;
    ``window_days``: the window's length, so calendar inputs are judged only over whole weeks."""
    thresholds = thresholds or Thresholds()
    out = []
    for r in reference.numeric:
        values = np.asarray(inputs[r.name], dtype=np.float64)
        why = _left_out(r, window_days, reference.history_start)
        if why is not None:
            out.append(FeatureDrift(name=r.name, kind="numeric", rows=len(values), psi=None, status=LEFT_OUT,
                                    min_rows=0, reason=why))
            continue
        if times is not None:
            values = values[window_full(times, reference.history_start, r.window_days)]
        out.append(_numeric(r, values, thresholds, "numeric"))
    out += [_categorical(r, inputs[r.name], thresholds) for r in reference.categorical]
    if scores is not None:
        out.append(_numeric(reference.score, scores, thresholds, "score"))
    return [r.model_copy(update={"importance": reference.importance.get(r.name)}) for r in out]
