"""The drift reference of a model: its training data's inputs and scores, frozen when it is trained.

Saved with the model (MLflow artifact ``reference/drift_reference.json``) by training, read by the drift job
(``monitoring.drift``), so both sides bin a value the same way. Bins are the training data's quantiles with open
outer bins and a bin of their own for missing values (NaN: "no history"); categorical inputs keep their category
shares, unseen categories later falling into one "other" bin.

An input built from a day-span window (``app.model_inputs.WINDOW_DAYS_OF``) is described only by the training rows
whose window the history filled: a 30-day count of a transaction with 10 days of history before it is a different
quantity from the same count with 30, and serving, on a store that has run for a while, sees the full kind. Where no
training row had a full window, the input's reference is empty and the drift check leaves it out, saying why.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta

import numpy as np
from pydantic import AwareDatetime, BaseModel, Field

from app.model_inputs import CATEGORICAL_FEATURES, NUMERIC_FEATURES, WINDOW_DAYS_OF

BINS = 10
QUANTILES = 101  # the reference's quantile grid, for the KS statistic
OTHER = "__other__"
ARTIFACT_DIR = "reference"
FILE = "drift_reference.json"


class NumericReference(BaseModel):
    name: str
    edges: list[float] = Field(description="interior bin edges (quantiles of the training values); outer bins open")
    shares: list[float] = Field(description="share of training values per bin, then the missing-value share")
    quantiles: list[float] = Field(description=f"{QUANTILES} quantiles of the non-missing training values")
    rows: int
    window_days: int | None = Field(default=None, description="the day-span window the input reads: only rows "
                                                              "whose window the history filled are described")


class CategoricalReference(BaseModel):
    name: str
    shares: dict[str, float] = Field(description=f"share per category seen in training; '{OTHER}' for the rest")
    rows: int


class DriftReference(BaseModel):
    """Saved with the model (MLflow artifact ``reference/drift_reference.json``)."""

    feature_set: str
    history_start: AwareDatetime | None = Field(
        default=None, description="the first transaction of the training history: a row's d-day window is full "
                                  "from this time + d days on (the store serving the model is taken to hold it too)")
    numeric: list[NumericReference]
    categorical: list[CategoricalReference]
    score: NumericReference = Field(description="the model's scores on the training data")
    importance: dict[str, float] = Field(
        default_factory=dict, description="each input's share of the model's total gain (a categorical input's "
                                          "one-hot columns summed): how much a drifted input matters to the model")


# --- building --------------------------------------------------------------------------------------------
def bin_counts(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Counts per bin (len(edges) + 1 open-ended bins), then the count of missing values."""
    missing = np.isnan(values)
    counts = np.bincount(np.searchsorted(edges, values[~missing], side="right"), minlength=len(edges) + 1)
    return np.append(counts, missing.sum()).astype(np.float64)


def window_full(times: np.ndarray, history_start: datetime | None, days: int | None) -> np.ndarray:
    """Mask of the rows (event times, datetime64 UTC) whose ``days``-day window lies within a history that begins
    at ``history_start``; every row when either is unknown."""
    times = np.asarray(times).astype("datetime64[us]")
    if history_start is None or days is None:
        return np.ones(len(times), dtype=bool)
    start = np.datetime64(history_start.replace(tzinfo=None) - (history_start.utcoffset() or timedelta(0)), "us")
    return times >= start + np.timedelta64(days * 86_400_000_000, "us")


def numeric_reference(name: str, values: np.ndarray, bins: int = BINS) -> NumericReference:
    values = np.asarray(values, dtype=np.float64)
    present = values[~np.isnan(values)]
    if present.size:
        edges = np.unique(np.quantile(present, np.linspace(0, 1, bins + 1)[1:-1]))
        quantiles = np.quantile(present, np.linspace(0, 1, QUANTILES))
    else:
        edges, quantiles = np.zeros(0), np.zeros(0)
    counts = bin_counts(values, edges)
    return NumericReference(name=name, edges=edges.tolist(), shares=(counts / max(len(values), 1)).tolist(),
                            quantiles=quantiles.tolist(), rows=len(values))


def categorical_reference(name: str, values: np.ndarray) -> CategoricalReference:
    labels, counts = np.unique(np.asarray(values, dtype=str), return_counts=True)
    shares = {str(k): float(c) / len(values) for k, c in zip(labels, counts, strict=True)}
    shares.setdefault(OTHER, 0.0)
    return CategoricalReference(name=name, shares=shares, rows=len(values))


def build_reference(inputs: Mapping[str, np.ndarray], scores: np.ndarray, feature_set: str,
                    times: np.ndarray | None = None, history_start: datetime | None = None,
                    importance: Mapping[str, float] | None = None) -> DriftReference:
    """The reference of every model input (``app.model_inputs``) and of the scores, from the training data; with
    the rows' event ``times`` and the ``history_start``, a window's input from the rows whose window was full."""

    def numeric(name: str) -> NumericReference:
        days = WINDOW_DAYS_OF.get(name)
        values = np.asarray(inputs[name], dtype=np.float64)
        if times is not None and history_start is not None and days is not None:
            values = values[window_full(times, history_start, days)]
        return numeric_reference(name, values).model_copy(update={"window_days": days})

    return DriftReference(
        feature_set=feature_set,
        history_start=history_start if times is not None else None,
        numeric=[numeric(name) for name in NUMERIC_FEATURES],
        categorical=[categorical_reference(name, inputs[name]) for name in CATEGORICAL_FEATURES],
        score=numeric_reference("score", scores),
        importance=dict(importance or {}),
    )
