"""How labelled rows are split: the held-out test part, the validation slice, and the folds of cross-validation.

Fraud data is ordered in time and a model is always used on days after those it learned from, so the default
folds are **time-forward** (prequential): the rows are cut into ``folds + 1`` consecutive blocks of equal size;
fold *i* validates on block *i* and trains on the rows before it, less the last ``gap`` days — a model trained
on day *d* knows the labels only of transactions older than the label delay. Random stratified folds stay
available (``cv="stratified"``); on time-ordered data they score a fold with a model that has seen its future,
which reads optimistic against the held-out later test part.
"""

from __future__ import annotations

import numpy as np

from training.data import TrainingDataError

Folds = list[tuple[np.ndarray, np.ndarray]]


def _both_classes(labels: np.ndarray) -> bool:
    return 0 < int(labels.sum()) < len(labels)


def time_forward_folds(times: np.ndarray, labels: np.ndarray, folds: int, gap_days: float) -> Folds:
    """(train rows, validation rows) per fold, for rows sorted by event time (``times`` datetime64)."""
    times = np.asarray(times, dtype="datetime64[us]")
    if len(times) > 1 and (np.diff(times.astype(np.int64)) < 0).any():
        raise ValueError("time-forward folds need rows sorted by event time")
    gap = np.timedelta64(int(gap_days * 86_400_000_000), "us")
    edges = np.linspace(0, len(times), folds + 2).astype(int)
    out: Folds = []
    for i in range(1, folds + 1):
        valid = np.arange(edges[i], edges[i + 1])
        train = np.flatnonzero(times[: edges[i]] < times[edges[i]] - gap)
        problem = None
        if len(train) == 0:
            problem = f"no training rows {gap_days:g} days before its validation period"
        elif not _both_classes(labels[train]) or not _both_classes(labels[valid]):
            problem = "a part without both classes"
        if problem:
            raise TrainingDataError(
                f"time-forward CV fold {i} of {folds} has {problem}: use a longer period, fewer --folds, a smaller "
                f"--cv-gap-days (now {gap_days:g}) or --cv stratified")
        out.append((train, valid))
    return out


def fitting_gap(times: np.ndarray, folds: int, label_delay_days: float) -> tuple[float, str]:
    """The default gap of time folds: the label delay when fold 1 keeps at least half of the first block to train on,
    otherwise half the span of that block (a week with 5 folds: 0.58 days); (gap in days, why, for the output)."""
    times = np.asarray(times, dtype="datetime64[us]")
    edges = np.linspace(0, len(times), folds + 2).astype(int)
    if len(times) < folds + 2:
        return float(label_delay_days), "the label delay"
    first_block = float((times[edges[1]] - times[0]).astype(np.int64)) / 86_400_000_000
    if first_block >= 2 * label_delay_days:  # fold 1 keeps at least half its block to train on, as below
        return float(label_delay_days), "the label delay"
    gap = first_block / 2
    return gap, (f"the label delay of {label_delay_days:g} days would leave fold 1 of a {_span_days(times):.1f}-day "
                 f"period with {folds} folds under half its block: half that block instead")


def _span_days(times: np.ndarray) -> float:
    return float((times[-1] - times[0]).astype(np.int64)) / 86_400_000_000 if len(times) else 0.0


def split_rows(labels: np.ndarray, scheme: str, test_fraction: float, valid_fraction: float, seed: int
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(fit, validation, test) row indices of time-ordered rows: the test part is the latest ``test_fraction``
    (or a stratified random one), validation the latest ``valid_fraction`` of the rest."""
    n = len(labels)
    if scheme == "time":
        cut = int(n * (1 - test_fraction))
        train_rows, test_rows = np.arange(cut), np.arange(cut, n)
    else:
        from sklearn.model_selection import train_test_split

        train_rows, test_rows = train_test_split(np.arange(n), test_size=test_fraction, stratify=labels,
                                                 random_state=seed)
        train_rows, test_rows = np.sort(train_rows), np.sort(test_rows)
    valid_cut = int(len(train_rows) * (1 - valid_fraction))
    return train_rows[:valid_cut], train_rows[valid_cut:], test_rows
