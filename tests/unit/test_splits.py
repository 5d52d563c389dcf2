"""Time-forward CV folds (training/splits.py): each fold trains only on rows older than its validation rows by the
gap, validations tile the later part in order, and a period too short for them is one clear error."""

from __future__ import annotations

import numpy as np
import pytest

from training.data import TrainingDataError
from training.splits import fitting_gap, split_rows, time_forward_folds

SEED = 20261202
DAY_US = 86_400_000_000


def _rows(days: float, n: int = 6000) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(SEED)
    times = np.sort(rng.integers(0, int(days * DAY_US), n)).astype("datetime64[us]")
    return times, (rng.random(n) < 0.05).astype(int)


def test_every_fold_trains_on_rows_older_than_its_validation_by_the_gap() -> None:
    times, labels = _rows(days=30)
    folds = time_forward_folds(times, labels, folds=5, gap_days=2)
    assert len(folds) == 5
    previous_end = None
    for train, valid in folds:
        gap = (times[valid].min() - times[train].max()).astype(np.int64) / DAY_US
        assert gap >= 2, f"seed {SEED}: a fold trains {gap:.2f} days before its validation rows"
        if previous_end is not None:  # validations are consecutive blocks, in time order
            assert valid[0] == previous_end + 1
        previous_end = valid[-1]
    assert folds[-1][1][-1] == len(times) - 1
    sizes = [len(train) for train, _ in folds]
    assert sizes == sorted(sizes)  # an expanding window


def test_a_period_too_short_for_the_gap_is_one_clear_error() -> None:
    times, labels = _rows(days=3)
    with pytest.raises(TrainingDataError, match=r"fold 1 of 5 has no training rows 7 days before.*--cv stratified"):
        time_forward_folds(times, labels, folds=5, gap_days=7)


def test_the_default_gap_is_the_label_delay_when_fold_one_keeps_half_its_block() -> None:
    times, _ = _rows(days=90)  # a first block of 15 days: fold 1 trains on the 8 days before the gap
    assert fitting_gap(times, folds=5, label_delay_days=7) == (7.0, "the label delay")


def test_a_one_week_period_gets_a_shorter_gap_that_leaves_every_fold_training_rows() -> None:
    times, labels = _rows(days=7)
    gap, why = fitting_gap(times, folds=5, label_delay_days=7)
    assert 0 < gap < 7 and "would leave fold 1 of a 7.0-day period with 5 folds under half its block" in why
    folds = time_forward_folds(times, labels, folds=5, gap_days=gap)
    assert all(len(train) > 0 for train, _ in folds)


def test_the_time_split_tests_on_the_latest_rows_and_validates_on_the_latest_of_the_rest() -> None:
    _, labels = _rows(days=10)
    fit, valid, test = split_rows(labels, "time", test_fraction=0.2, valid_fraction=0.15, seed=SEED)
    assert fit.max() < valid.min() and valid.max() < test.min() and len(test) == 1200
    *_, test_s = split_rows(labels, "stratified", 0.2, 0.15, seed=SEED)
    assert len(test_s) == 1200 and abs(labels[test_s].mean() - labels.mean()) < 0.005  # stratified
