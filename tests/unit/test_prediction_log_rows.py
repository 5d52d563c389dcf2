"""What the prediction log writes per row (the model inputs for drift included) and what /metrics renders from a
Ray node's export: riskray's families summed over replicas, counters that were never incremented at 0."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime

import numpy as np
from prometheus_client.parser import text_string_to_metric_families

from app.model_inputs import CATEGORICAL_FEATURES, FEATURE_SET, NUMERIC_FEATURES
from app.reports import Gauges
from serve_deployments.metrics import gauge_lines, merge, review_lines
from serve_deployments.prediction_log import COLUMNS, BatchInputs, LoggedPrediction


def _inputs(rows: int) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {name: np.arange(rows, dtype=np.float64) + 0.5 for name in NUMERIC_FEATURES}
    out["cust_mean_amount_7d"] = np.full(rows, np.nan)  # no history
    out["country"] = np.array(["DE"] * rows, dtype=object)
    out["device_type"] = np.array(["mobile"] * rows, dtype=object)
    out["currency"] = np.array([""] * rows, dtype=object)  # a request without one
    return out


def test_a_logged_row_carries_event_time_feature_set_and_the_inputs_as_postgres_arrays() -> None:
    batch = BatchInputs.of(_inputs(2), FEATURE_SET)
    when = datetime(2026, 11, 20, 12, tzinfo=UTC)
    row = LoggedPrediction("00000000-0000-4000-8000-000000000001", 1, 2, "3", "champion", 0.25, 0, 1.5, False,
                           when, when, batch, 1, "review")
    (fields,) = list(csv.reader(io.StringIO(row.csv_line())))
    record = dict(zip(COLUMNS, fields, strict=True))
    assert record["event_time"] == when.isoformat() and record["feature_set"] == FEATURE_SET
    numbers = record["numeric_inputs"].strip("{}").split(",")
    assert len(numbers) == len(NUMERIC_FEATURES)
    assert numbers[NUMERIC_FEATURES.index("amount")] == "1.5"
    assert numbers[NUMERIC_FEATURES.index("cust_mean_amount_7d")] == "NaN"
    assert record["categorical_inputs"] == '{"DE","mobile",""}' and len(CATEGORICAL_FEATURES) == 3
    assert record["outcome"] == "review"


def test_a_row_without_inputs_leaves_the_columns_empty() -> None:
    when = datetime(2026, 11, 20, tzinfo=UTC)
    (fields,) = list(csv.reader(io.StringIO(LoggedPrediction(None, 1, 2, "3", "shadow", 0.5, 1, 1.0, True, when
                                                             ).csv_line())))
    assert fields[-4:] == ["", "", "", ""]  # inputs, and an outcome from before outcomes: NULL


EXPORT = """# HELP ray_predictions_total Predictions answered
# TYPE ray_predictions_total counter
ray_predictions_total{model_version="3",result="legit",WorkerId="a",Component="core_worker"} 5.0
ray_predictions_total{model_version="3",result="legit",WorkerId="b",Component="core_worker"} 7.0
# HELP ray_decisions_total Answers by outcome
# TYPE ray_decisions_total counter
ray_decisions_total{model_version="3",outcome="review",WorkerId="a"} 1.0
ray_decisions_total{model_version="3",outcome="review",WorkerId="b"} 2.0
# HELP ray_prediction_log_dropped_total Predictions not written
# TYPE ray_prediction_log_dropped_total counter
ray_prediction_log_dropped_total{reason="overflow",WorkerId="a"} 2.0
# HELP ray_node_cpu_count cpus
# TYPE ray_node_cpu_count gauge
ray_node_cpu_count 2.0
"""


def _samples(text: str) -> dict[tuple[str, tuple], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_metrics_sum_over_replicas_and_show_uncounted_counters_at_zero() -> None:
    samples = _samples(merge(EXPORT, gauge_lines({"champion": "3"}, Gauges())))
    assert samples[("predictions_total", (("model_version", "3"), ("result", "legit")))] == 12.0
    assert samples[("decisions_total", (("model_version", "3"), ("outcome", "review")))] == 3.0
    assert samples[("prediction_log_dropped_total", (("reason", "overflow"),))] == 2.0
    assert samples[("prediction_log_dropped_total", (("reason", "write_failed"),))] == 0.0
    assert samples[("features_degraded_total", ())] == 0.0
    assert not any(name.startswith("ray_node") for name, _ in samples)
    assert not any(name in ("data_drift_score", "model_accuracy") for name, _ in samples)  # no report: no value


def test_reviews_against_capacity_are_a_share_and_no_value_when_the_database_did_not_answer() -> None:
    samples = _samples("\n".join(review_lines(150, 100)) + "\n")
    assert samples[("review_capacity_share", ())] == 1.5 and samples[("reviews_last_day", ())] == 150
    unknown = _samples("\n".join(review_lines(None, 100)) + "\n")
    assert unknown == {("review_capacity_per_day", ()): 100}
    assert ("review_capacity_share", ()) not in _samples("\n".join(review_lines(3, 0)) + "\n")
