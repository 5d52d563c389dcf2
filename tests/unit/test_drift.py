"""Drift core (monitoring/drift.py): frozen bins, PSI with smoothing, KS, the sample-size floor."""

from __future__ import annotations

import numpy as np

from app.drift_reference import OTHER, categorical_reference, numeric_reference
from monitoring.drift import Thresholds, ks_statistic, min_rows, psi
from monitoring.drift import _categorical as categorical_drift
from monitoring.drift import _numeric as numeric_drift

SEED = 20261202


def _amounts(rng: np.random.Generator, n: int, factor: float = 1.0, missing: float = 0.1) -> np.ndarray:
    values = np.exp(rng.normal(np.log(40), 0.6, n)) * factor
    values[rng.random(n) < missing] = np.nan  # no history
    return values


def test_two_samples_of_one_distribution_stay_well_under_the_warn_threshold() -> None:
    rng = np.random.default_rng(SEED)
    reference = numeric_reference("amount", _amounts(rng, 50_000))
    result = numeric_drift(reference, _amounts(rng, 5_000), Thresholds(), "numeric")
    assert result.status == "ok" and result.psi < 0.02 and result.ks < 0.03, f"seed {SEED}: {result}"


def test_amounts_forty_percent_higher_are_over_the_action_threshold() -> None:
    rng = np.random.default_rng(SEED)
    reference = numeric_reference("amount", _amounts(rng, 50_000))
    result = numeric_drift(reference, _amounts(rng, 5_000, factor=1.4), Thresholds(), "numeric")
    assert result.status == "act" and result.psi > 0.25 and result.ks > 0.15, f"seed {SEED}: {result}"


def test_a_change_in_the_share_of_missing_values_is_drift_of_its_own() -> None:
    rng = np.random.default_rng(SEED)
    reference = numeric_reference("cust_mean_amount_7d", _amounts(rng, 50_000, missing=0.05))
    result = numeric_drift(reference, _amounts(rng, 5_000, missing=0.5), Thresholds(), "numeric")
    assert result.psi > 0.25, f"seed {SEED}: {result}"


def test_values_beyond_the_training_range_land_in_the_open_outer_bins() -> None:
    reference = numeric_reference("x", np.arange(1000.0))
    assert len(reference.edges) == 9 and reference.shares[-1] == 0  # 10 bins, no missing values
    huge = np.full(2000, 1e9)
    result = numeric_drift(reference, huge, Thresholds(), "numeric")
    assert np.isfinite(result.psi) and result.status == "act"  # all in the top bin: finite, large


def test_a_window_below_the_sample_size_floors_says_only_what_its_size_can_tell() -> None:
    rng = np.random.default_rng(SEED)
    reference = numeric_reference("amount", _amounts(rng, 50_000))
    floor = min_rows(11, 50_000, Thresholds())
    act_floor = min_rows(11, 50_000, Thresholds(warn=0.25))
    assert 300 < floor < 700 and act_floor < floor / 2  # 99th percentile of chi2(10) / (half a threshold - ...)
    # under the warn floor a large shift still says act, with its PSI; a same-distribution sample says nothing
    shifted = numeric_drift(reference, _amounts(rng, floor - 1, factor=3), Thresholds(), "numeric")
    assert shifted.status == "act" and shifted.psi > 0.25 and shifted.min_rows == floor and "action" in shifted.reason
    same = numeric_drift(reference, _amounts(rng, floor - 1), Thresholds(), "numeric")
    assert same.status == "not enough data" and same.psi is not None and same.psi < 0.25
    few = numeric_drift(reference, _amounts(rng, act_floor - 1, factor=3), Thresholds(), "numeric")
    assert few.status == "not enough data" and few.psi is None and few.ks is None


def test_categories_unseen_in_training_count_as_other() -> None:
    reference = categorical_reference("device_type", np.array(["web"] * 600 + ["pos"] * 400))
    assert reference.shares == {"pos": 0.4, "web": 0.6, OTHER: 0.0}
    same = categorical_drift(reference, np.array(["web"] * 600 + ["pos"] * 400), Thresholds())
    new = categorical_drift(reference, np.array(["web"] * 300 + ["pos"] * 200 + ["kiosk"] * 500), Thresholds())
    assert same.psi < 1e-9 and new.status == "act"


def test_psi_is_zero_for_equal_shares_and_finite_with_empty_bins() -> None:
    assert psi(np.array([0.5, 0.5, 0.0]), np.array([50.0, 50.0, 0.0])) < 1e-12
    assert np.isfinite(psi(np.array([1.0, 0.0]), np.array([0.0, 10.0])))
    assert ks_statistic(np.linspace(0, 1, 101), np.linspace(0, 1, 1001)) < 0.01
