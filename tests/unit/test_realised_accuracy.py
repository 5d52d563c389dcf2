"""Realised accuracy and the drift run's verdict, pure: AUC as sklearn computes it with a pinned bootstrap
interval, "not enough data" instead of a number where a window cannot say, and no gauge for what is unknown."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score

from app.config import Settings
from app.reports import FeatureDrift, Gauges, MonitoringReport
from monitoring.accuracy import realised
from monitoring.run import _verdict

SEED = 20261202


def _scored(n: int, positives: int, separation: float = 1.5) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(SEED)
    labels = np.zeros(n, dtype=int)
    labels[:positives] = 1
    scores = 1 / (1 + np.exp(-(rng.normal(0, 1, n) + separation * labels)))
    return labels, scores


def test_realised_auc_and_average_precision_are_sklearns_with_a_reproducible_interval() -> None:
    labels, scores = _scored(2000, 40)
    first = realised("3", "champion", labels, scores, 0.9, 10, 0.05, 200)
    again = realised("3", "champion", labels, scores, 0.9, 10, 0.05, 200)
    assert first.roc_auc == roc_auc_score(labels, scores)
    assert first.average_precision == average_precision_score(labels, scores)
    assert first.auc_low < first.roc_auc < first.auc_high and (first.auc_low, first.auc_high) == (
        again.auc_low, again.auc_high)
    assert first.positives == 40 and first.rows == 2000


def test_one_class_or_too_few_frauds_is_not_enough_data_never_a_number() -> None:
    labels, scores = _scored(500, 0)
    one_class = realised("3", "champion", labels, scores, 0.9, 10, 0.05, 50)
    assert one_class.status == "not enough data" and one_class.roc_auc is None and "one class" in one_class.reason
    labels, scores = _scored(500, 4)
    few = realised("3", "champion", labels, scores, 0.9, 10, 0.05, 50)
    assert few.status == "not enough data" and few.roc_auc is None and "4 labelled frauds" in few.reason


def test_an_auc_more_than_the_allowed_share_under_training_is_a_drop() -> None:
    labels, scores = _scored(2000, 40, separation=0.5)
    result = realised("3", "champion", labels, scores, 0.99, 10, 0.05, 0)
    assert result.status == "drop" and result.roc_auc < 0.95 * 0.99 and result.auc_low is None


def _feature(name: str, psi: float | None, status: str = "ok") -> FeatureDrift:
    return FeatureDrift(name=name, kind="numeric", rows=1000 if psi is not None else 10, psi=psi, status=status,
                        min_rows=400)


def _report(drift: list[FeatureDrift], accuracy: list) -> MonitoringReport:  # type: ignore[type-arg]
    when = datetime(2026, 11, 20, tzinfo=UTC)
    return _verdict(Settings(), when, when, when, when, "3", None, 1000, drift, accuracy)


def test_a_feature_over_its_action_threshold_means_retrain_and_says_which() -> None:
    report = _report([_feature("amount", 0.4, "act"), _feature("hour", 0.01)], [])
    assert report.retrain and report.status == "act" and "amount: PSI 0.400" in report.reasons[0]


def test_a_champion_auc_drop_means_retrain_even_without_drift() -> None:
    labels, scores = _scored(2000, 40, separation=0.5)
    drop = realised("3", "champion", labels, scores, 0.99, 10, 0.05, 0)
    report = _report([_feature("amount", 0.01)], [drop])
    assert report.retrain and report.status == "ok" and any("under the training AUC" in r for r in report.reasons)


def test_too_few_served_rows_is_not_enough_data_and_renders_no_gauge() -> None:
    report = _report([_feature("amount", None, "not enough data")], [])
    assert report.status == "not enough data" and not report.retrain
    assert report.gauges() == Gauges()
    assert any("no predictions with matured labels" in r for r in report.reasons)


def test_gauges_hold_only_computed_values() -> None:
    labels, scores = _scored(2000, 40)
    ok = realised("3", "champion", labels, scores, 0.9, 10, 0.05, 0)
    unknown = realised("4", "challenger", labels[:10], scores[:10], None, 10, 0.05, 0)
    report = _report([_feature("amount", 0.02), _feature("hour", None, "not enough data")], [ok, unknown])
    gauges = report.gauges()
    assert gauges.drift == {"amount": 0.02} and gauges.accuracy == {"3": ok.roc_auc}
    assert gauges.training_auc == {"3": 0.9} and not gauges.estimated and not gauges.label_days
    assert gauges.accuracy_upper == {"3": ok.roc_auc}  # no interval (no resamples): the point


def test_the_verdict_says_how_much_the_moved_inputs_matter_and_whether_accuracy_moved_with_them() -> None:
    labels, scores = _scored(2000, 40, separation=3.0)
    steady = realised("3", "champion", labels, scores, 0.9, 10, 0.05, 0)
    assert steady.status == "ok", steady
    moved = [_feature("hour", 0.3, "act").model_copy(update={"importance": 0.02}),
             _feature("amount", 0.5, "act").model_copy(update={"importance": 0.40})]
    report = _report([*moved, _feature("country_share", 0.01)], [steady])
    assert report.retrain
    assert report.reasons[0].startswith("amount: PSI 0.500") and "40.0% of the model's gain" in report.reasons[0]
    assert "the inputs over the threshold carry 42% of the model's gain" in report.reasons
    assert any("did not move with them" in r for r in report.reasons)


def test_inputs_left_out_are_named_with_their_reason_and_never_decide() -> None:
    left = [FeatureDrift(name=name, kind="numeric", rows=900, psi=None, status="left out", min_rows=0,
                         reason="a calendar input is judged over whole weeks only, and the window is 3 days")
            for name in ("hour", "is_weekend")]
    report = _report([*left, _feature("amount", 0.02)], [])
    assert not report.retrain and report.status == "ok"
    assert ("left out: hour, is_weekend: a calendar input is judged over whole weeks only, and the window is 3 days"
            in report.reasons)
    only_left = _report(left, [])
    assert only_left.status == "not enough data" and not only_left.retrain


def test_a_drop_is_what_the_interval_says_not_the_point() -> None:
    labels, scores = _scored(400, 12, separation=1.5)  # a dozen frauds: a wide interval
    point = realised("3", "champion", labels, scores, 0.99, 10, 0.05, 0)
    judged = realised("3", "champion", labels, scores, 0.99, 10, 0.05, 200)
    assert point.status == "drop" and judged.roc_auc == point.roc_auc < 0.95 * 0.99
    assert judged.auc_high is not None and judged.auc_high >= 0.95 * 0.99
    assert judged.status == "ok", judged


def test_answers_with_default_features_are_counted_apart_and_never_a_reason_to_retrain() -> None:
    when = datetime(2026, 11, 20, tzinfo=UTC)
    report = _verdict(Settings(), when, when, when, when, "3", None, 4100, [_feature("amount", 0.01)], [],
                      degraded=(639, 4746))
    assert not report.retrain
    assert any("639 of 4,746 answers (13.5%) had default features" in r and "retraining cannot fix" in r
               for r in report.reasons)
