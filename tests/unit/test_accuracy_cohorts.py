"""Accuracy per prediction cohort, pure: the label maturity curve, "not mature" instead of a number that reads low,
matured cohorts pooled for the retraining check, and the estimate from calibrated scores (right where the relation
between inputs and fraud holds, blind where it does not)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from app import expected_accuracy as estimate
from app.config import Settings
from app.reports import FeatureDrift, MonitoringReport
from monitoring import accuracy, maturity
from monitoring.run import _verdict

SEED = 20261206
AS_OF = datetime(2026, 11, 30, tzinfo=UTC)
RULES = accuracy.Rules(min_positives=10, min_maturity=0.8, max_drop=0.05, resamples=50, capacity=20)


def _calibrated(n: int, seed: int = SEED) -> tuple[np.ndarray, np.ndarray]:
    """Scores that are probabilities (labels drawn from them): a calibrated model's world."""
    rng = np.random.default_rng(seed)
    scores = 1 / (1 + np.exp(-(rng.normal(-4.0, 1.6, n))))
    return (rng.random(n) < scores).astype(np.int64), scores


def _times(days_before: list[int], per_day: int) -> np.ndarray:
    """``per_day`` event times at noon of each day ``days_before`` AS_OF's day."""
    start = np.datetime64(AS_OF.replace(tzinfo=None), "us")
    return np.concatenate([np.full(per_day, start - np.timedelta64(d, "D") + np.timedelta64(12, "h"))
                           for d in days_before])


def test_the_maturity_curve_is_the_share_of_first_reports_within_each_age_up_to_the_horizon() -> None:
    delays = np.array([0.1, 0.5, 1.0, 2.0, 5.0, 10.0, 10.0, 20.0, 40.0, 200.0] * 2)  # 200: past the horizon
    curve = maturity.from_delays(delays, horizon_days=90, min_frauds=10, rule_days=7)
    assert curve.source == "label events" and curve.frauds == 18
    assert curve.at(0) == 0.0 and curve.at(90) == 1.0 and curve.at(1000) == 1.0
    assert curve.at(2.25) == pytest.approx(8 / 18, abs=1e-9)  # 0.1, 0.5, 1, 2 twice: a grid point at 2.25
    assert curve.days_to(0.5) is not None and curve.days_to(0.5) <= 10.0
    assert all(b >= a for a, b in zip(curve.share, curve.share[1:], strict=False))


def test_too_few_label_events_fall_back_to_the_maturity_rule() -> None:
    curve = maturity.from_delays(np.array([1.0, 2.0]), horizon_days=90, min_frauds=10, rule_days=7)
    assert curve.source == "rule" and curve.frauds == 0
    assert curve.at(6.99) == 0.0 and curve.at(7.0) == 1.0 and curve.days_to(0.95) == 7.0
    assert maturity.rule(0, 90).at(0.0) == 1.0


def test_a_young_cohort_is_not_mature_and_gives_no_number_while_an_old_one_gives_sklearns() -> None:
    labels, scores = _calibrated(4000)
    times = _times([20, 1], 2000)  # a day 20 days old and yesterday
    curve = maturity.rule(7, 90)
    rows = accuracy.cohorts("3", "champion", labels, scores, times, AS_OF, curve, RULES)
    old, young = sorted(rows, key=lambda c: c.day)
    assert young.status == "not mature" and young.realised is None and young.maturity == 0.0
    assert "under 80%" in young.reason and young.estimated is not None  # estimated, never realised
    assert old.status == "ok" and old.maturity == 1.0
    assert old.realised.roc_auc == roc_auc_score(labels[:2000], scores[:2000])  # type: ignore[union-attr]
    assert old.realised.auc_low < old.realised.roc_auc < old.realised.auc_high  # type: ignore[union-attr,operator]


def test_the_retraining_check_pools_only_the_mature_cohorts() -> None:
    labels, scores = _calibrated(6000)
    labels[4000:] = 0  # the two young days: their frauds not reported yet, read as legitimate
    times = _times([30, 10, 2, 1], 1500)
    pooled = accuracy.matured("3", "champion", labels, scores, times, AS_OF, maturity.rule(7, 90), 0.9, RULES)
    assert pooled.rows == 3000 and pooled.cohorts == 2 and pooled.maturity == 1.0
    assert pooled.roc_auc == roc_auc_score(labels[:3000], scores[:3000])
    none = accuracy.matured("3", "champion", labels[4000:], scores[4000:], times[4000:], AS_OF,
                            maturity.rule(7, 90), 0.9, RULES)
    assert none.status == "not enough data" and none.roc_auc is None and "no mature cohort" in none.reason


def test_answers_scored_on_default_features_are_counted_but_not_judged_as_the_models() -> None:
    """A store over its budget answers with default features: a serving fault, which must not read as a worse
    model and ask for retraining (the drift comparison and the estimate leave those answers out too)."""
    labels, scores = _calibrated(6000)
    times = _times([30, 20], 3000)
    degraded = np.zeros(6000, dtype=bool)
    degraded[3000:4200] = True  # 40 % of the second day's answers
    flat = scores.copy()
    flat[degraded] = 0.01  # what a card without history scores: no ranking left in them
    curve = maturity.rule(7, 90)
    whole = accuracy.matured("3", "champion", labels, flat, times, AS_OF, curve, 0.9, RULES)
    own = accuracy.matured("3", "champion", labels, flat, times, AS_OF, curve, 0.9, RULES, degraded=degraded)
    assert own.rows == 4800 and own.degraded == 1200 and whole.degraded == 0
    assert own.roc_auc == roc_auc_score(labels[~degraded], scores[~degraded])
    assert whole.roc_auc is not None and own.roc_auc > whole.roc_auc  # counted in, the fault lowers the model's AUC
    day = {c.day: c for c in accuracy.cohorts("3", "champion", labels, flat, times, AS_OF, curve, RULES,
                                               degraded=degraded)}
    second = day[max(day)]
    assert second.rows == 1800 and second.degraded == 1200
    assert second.realised.roc_auc == roc_auc_score(labels[4200:], scores[4200:])  # type: ignore[union-attr]
    faulty = accuracy.matured("3", "champion", labels[3000:4200], flat[3000:4200], times[3000:4200], AS_OF, curve,
                              0.9, RULES, degraded=degraded[3000:4200])
    assert faulty.roc_auc is None and "default features" in faulty.reason and faulty.degraded == 1200


def test_the_estimate_from_calibrated_scores_matches_the_realised_accuracy() -> None:
    labels, scores = _calibrated(40_000)
    days = _times([3, 2], 20_000).astype("datetime64[D]")
    expected = estimate.expected(scores, days, capacity=200, min_frauds=10)
    assert expected is not None
    assert expected.roc_auc == pytest.approx(roc_auc_score(labels, scores), abs=0.01)
    realised_at_capacity = estimate.precision_at_capacity(days, scores, labels.astype(float), 200)
    assert expected.precision_at_capacity == pytest.approx(realised_at_capacity, abs=0.05)
    assert expected.frauds == pytest.approx(labels.sum(), rel=0.05)


def test_the_estimate_cannot_see_a_change_in_what_fraud_looks_like() -> None:
    _, scores = _calibrated(40_000)
    rng = np.random.default_rng(SEED + 1)
    labels = (rng.random(len(scores)) < scores.mean()).astype(np.int64)  # fraud no longer follows the inputs
    expected = estimate.expected(scores, np.zeros(len(scores), dtype="datetime64[D]"), 200, 10)
    assert expected is not None and expected.roc_auc > 0.8  # the estimate still believes the model
    assert roc_auc_score(labels, scores) == pytest.approx(0.5, abs=0.03)  # the labels, once known, do not


def test_scores_expecting_too_few_frauds_give_no_estimate() -> None:
    assert estimate.expected(np.full(100, 0.01), np.zeros(100, dtype="datetime64[D]"), 20, 10) is None


def test_precision_at_capacity_takes_each_days_highest_scores() -> None:
    days = np.array(["2026-11-01"] * 4 + ["2026-11-02"] * 3, dtype="datetime64[D]")
    scores = np.array([0.9, 0.1, 0.8, 0.2, 0.3, 0.7, 0.6])
    labels = np.array([1.0, 1.0, 0.0, 0.0, 1.0, 1.0, 0.0])
    # day 1: 0.9 (fraud), 0.8 (legit); day 2: 0.7 (fraud), 0.6 (legit)
    assert estimate.precision_at_capacity(days, scores, labels, 2) == 0.5


def _report(estimates: list) -> MonitoringReport:  # type: ignore[type-arg]
    drift = [FeatureDrift(name="amount", kind="numeric", rows=1000, psi=0.02, status="ok", min_rows=400)]
    return _verdict(Settings(), AS_OF, AS_OF - timedelta(days=7), AS_OF, AS_OF, "3", None, 1000, drift, [],
                    estimates)


def test_an_estimate_more_than_the_allowed_share_under_training_means_retrain_and_says_so() -> None:
    _, scores = _calibrated(20_000)
    times = _times([3, 2, 1], 20_000 // 3 + 1)[:20_000]
    steady = accuracy.estimated("3", "champion", scores, times, AS_OF, maturity.rule(7, 90), 0.8, RULES)
    assert steady.status == "ok" and steady.maturity == 0.0
    assert not _report([steady]).retrain
    dropped = accuracy.estimated("3", "champion", scores, times, AS_OF, maturity.rule(7, 90), 0.99, RULES)
    report = _report([dropped])
    assert dropped.status == "drop" and report.retrain
    assert any(r.startswith("estimated AUC") and "training test part 0.9900" in r and "0% known" in r
               for r in report.reasons)
    gauges = report.gauges()
    assert gauges.estimated == {"3": dropped.estimated.roc_auc}  # type: ignore[union-attr]
    assert gauges.maturity == {("3", "estimated"): 0.0} and gauges.training_auc_estimated == {"3": 0.99}


def test_an_estimates_maturity_is_its_rows_own_not_their_whole_days() -> None:
    _, scores = _calibrated(2_000)
    # the last day, half of it 13 h old and half 1 h old: the curve says 12 h brings every report
    times = np.array([np.datetime64(AS_OF.replace(tzinfo=None), "us") - np.timedelta64(h, "h")
                      for h in (13, 1) for _ in range(1_000)])
    curve = maturity.rule(0.5, 90)
    window = accuracy.estimated("3", "champion", scores, times, AS_OF, curve, None, RULES)
    assert window.maturity == pytest.approx(scores[:1_000].sum() / scores.sum())
    day = accuracy.cohorts("3", "champion", np.zeros(2_000, dtype=int), scores, times, AS_OF, curve, RULES)
    assert [c.maturity for c in day] == [0.0]  # the day is not over: as a cohort it is 0 days old
