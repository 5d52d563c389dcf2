"""Prediction metrics (the contract of ../shared/ARCHITECTURE.md), counted right with any number of replicas.

Each replica records into Ray's metrics API (``ray.util.metrics``); every Ray node's metrics agent merges the
processes of its node and exports them (prefixed ``ray_``) on the node's metrics port, which Prometheus
scrapes on a cluster. ``GET /metrics`` reads the local node's export, keeps riskray's metrics, drops the
per-process labels and sums over replicas, so one scrape of one replica shows the node's totals under the
contract's names. (On a multi-node cluster, scrape every node's metrics port; /metrics shows one node.)
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict

import httpx
from prometheus_client.parser import text_string_to_metric_families
from ray.util import metrics

from app import db, reports
from app.config import Settings
from app.prediction_service import REVIEWS_LAST_DAY_SQL

logger = logging.getLogger("ray.serve")

BATCH_SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64)
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)
RAY_PREFIX = "ray_"
# labels Ray adds per process / node; summing over them merges the replicas
PROCESS_LABELS = {"Component", "NodeAddress", "SessionName", "WorkerId", "JobId", "Version", "replica",
                  "ReplicaId", "deployment", "application", "route", "instance", "otel_scope_name",
                  "otel_scope_schema_url", "otel_scope_version"}


class PredictionMetrics:
    def __init__(self) -> None:
        self.predictions = metrics.Counter(
            "predictions_total", "Predictions answered, by model version and result (fraud | legit | error)",
            tag_keys=("model_version", "result"))
        self.decisions = metrics.Counter(
            "decisions_total", "Answers by model version and outcome (approve | review | decline)",
            tag_keys=("model_version", "outcome"))
        self.latency = metrics.Histogram(
            "prediction_latency_seconds", "Time to answer one prediction request", boundaries=list(LATENCY_BUCKETS),
            tag_keys=("endpoint",))
        self.batch_size = metrics.Histogram(
            "prediction_batch_size", "Concurrent /predict requests scored together",
            boundaries=list(BATCH_SIZE_BUCKETS))
        self.degraded = metrics.Counter("features_degraded_total",
                                        "Predictions answered without the feature store (slow or down)")
        self.log_dropped = metrics.Counter("prediction_log_dropped_total",
                                           "Predictions not written to the predictions table",
                                           tag_keys=("reason",))
        self.reload_failures = metrics.Counter("model_reload_failures_total",
                                               "Model reloads that failed (the old model kept serving)")

    NAMES = ("predictions_total", "decisions_total", "prediction_latency_seconds", "prediction_batch_size",
             "features_degraded_total", "prediction_log_dropped_total", "model_reload_failures_total")


class LatestReport:
    """The newest monitoring report (``app.reports``), read at most every ``serve_report_cache_s``: the gauges of
    /metrics. No report, or no database: no gauge values (never a misleading 0)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.ttl_s = settings.serve_report_cache_s
        self._read_at = float("-inf")
        self._gauges = reports.Gauges()

    def gauges(self) -> reports.Gauges:
        now = time.monotonic()
        if now - self._read_at >= self.ttl_s:
            self._read_at = now
            try:
                report = reports.latest(self.settings)
                self._gauges = report.gauges() if report else reports.Gauges()
            except Exception as error:  # a scrape must not fail on the report: the rest of /metrics still counts
                logger.warning("metrics: latest monitoring report unreadable: %s", str(error).splitlines()[0][:200])
                self._gauges = reports.Gauges()
        return self._gauges


class ReviewLoad:
    """Reviews answered in the last day (the predictions table, every replica's), read at most every ``ttl_s``;
    None when the database does not answer (no gauge value rather than a wrong one)."""

    def __init__(self, settings: Settings, ttl_s: float = 10.0) -> None:
        self.settings = settings
        self.ttl_s = ttl_s
        self._read_at = float("-inf")
        self._reviews: int | None = None

    def reviews_last_day(self) -> int | None:
        now = time.monotonic()
        if now - self._read_at >= self.ttl_s:
            self._read_at = now
            try:
                with db.connection(self.settings) as conn, conn.cursor() as cur:
                    cur.execute(REVIEWS_LAST_DAY_SQL)
                    self._reviews = int(cur.fetchone()[0])
            except Exception as error:  # as LatestReport: the rest of /metrics still counts
                logger.warning("metrics: reviews of the last day unreadable: %s", str(error).splitlines()[0][:200])
                self._reviews = None
        return self._reviews


def review_lines(reviews_last_day: int | None, capacity_per_day: int) -> list[str]:
    """reviews_last_day, review_capacity_per_day and their ratio review_capacity_share (over 1: more reviews than
    the team can do; the alert RiskrayReviewsOverCapacity)."""
    share = [] if reviews_last_day is None or capacity_per_day <= 0 else [
        f"review_capacity_share {reviews_last_day / capacity_per_day}"]
    families = [
        ("reviews_last_day", "Answers sent to review in the last 24 hours (shadow rows left out)",
         [] if reviews_last_day is None else [f"reviews_last_day {reviews_last_day}"]),
        ("review_capacity_per_day", "Reviews a day the fraud team can do (RISKRAY_REVIEW_CAPACITY_PER_DAY)",
         [f"review_capacity_per_day {capacity_per_day}"]),
        ("review_capacity_share", "reviews_last_day / review_capacity_per_day", share),
    ]
    lines = []
    for name, help_text, samples in families:
        lines += [f"# HELP {name} {help_text}", f"# TYPE {name} gauge", *samples]
    return lines


def gauge_lines(versions: dict[str, str], gauges: reports.Gauges) -> list[str]:
    """model_version_info{model_version,variant}, and of the latest monitoring report (`riskray drift`):
    model_accuracy{model_version} (realised AUC of the mature cohorts), model_accuracy_estimated{model_version}
    (from the calibrated scores of the drift window), model_accuracy_maturity{model_version,kind} (the share of
    the frauds known behind each), model_training_auc{model_version}, label_maturity_days{share} and
    data_drift_score{feature}.

    Gauges are rendered by the replica answering /metrics from its own state: Ray 2.60's Python gauges
    (OpenTelemetry observable gauges) never reached the node's metrics export in our tests; counters and
    histograms do, and are summed over replicas above.

    The report's gauges are empty before one exists; the families are still declared so dashboards and alert
    rules find them."""
    families: list[tuple[str, str, list[str]]] = [
        ("model_version_info", "1 for each model version being served, by variant",
         [f'model_version_info{{model_version="{v}",variant="{variant}"}} 1' for variant, v in versions.items()]),
        ("model_accuracy", "Realised AUC of a model version on its mature prediction cohorts",
         [f'model_accuracy{{model_version="{v}"}} {value}' for v, value in gauges.accuracy.items()]),
        ("model_accuracy_upper", "Upper end of the 95 % bootstrap interval of model_accuracy (a drop is when even "
         "this is under the line)",
         [f'model_accuracy_upper{{model_version="{v}"}} {value}' for v, value in gauges.accuracy_upper.items()]),
        ("model_accuracy_estimated", "Estimated AUC of a model version on its recent predictions (calibrated "
         "scores, before the labels)",
         [f'model_accuracy_estimated{{model_version="{v}"}} {value}' for v, value in gauges.estimated.items()]),
        ("model_accuracy_maturity", "Expected share of the frauds known behind a realised or estimated accuracy",
         [f'model_accuracy_maturity{{model_version="{v}",kind="{kind}"}} {value}'
          for (v, kind), value in gauges.maturity.items()]),
        ("model_training_auc", "AUC of a model version on its training run's test set",
         [f'model_training_auc{{model_version="{v}"}} {value}' for v, value in gauges.training_auc.items()]),
        ("model_training_auc_estimated", "AUC estimated from a model version's calibrated scores on its training "
         "run's test set (what model_accuracy_estimated is compared with)",
         [f'model_training_auc_estimated{{model_version="{v}"}} {value}'
          for v, value in gauges.training_auc_estimated.items()]),
        ("label_maturity_days", "Days after a transaction until this share of its eventual fraud reports is known",
         [f'label_maturity_days{{share="{share}"}} {days}' for share, days in gauges.label_days.items()]),
        ("data_drift_score", "PSI of a model input against the champion's training data",
         [f'data_drift_score{{feature="{f}"}} {value}' for f, value in gauges.drift.items()]),
    ]
    lines = []
    for name, help_text, samples in families:
        lines += [f"# HELP {name} {help_text}", f"# TYPE {name} gauge", *samples]
    return lines


# Counters Ray exports only once incremented, shown at 0 until then: a panel or rule then finds the series
# ("nothing degraded") instead of no data. Name -> (help, label sets).
ZERO_UNTIL_COUNTED: dict[str, tuple[str, tuple[dict[str, str], ...]]] = {
    "features_degraded_total": ("Predictions answered without the feature store (slow or down)", ({},)),
    "prediction_log_dropped_total": ("Predictions not written to the predictions table",
                                     ({"reason": "overflow"}, {"reason": "write_failed"})),
    "model_reload_failures_total": ("Model reloads that failed (the old model kept serving)", ({},)),
}


def merged_text(agent_url: str, extra_lines: list[str], timeout_s: float = 2.0) -> str:
    """Prometheus text of riskray's metrics from a node's export, summed over replicas, plus ``extra_lines``."""
    response = httpx.get(agent_url, timeout=timeout_s)
    response.raise_for_status()
    return merge(response.text, extra_lines)


def merge(export: str, extra_lines: list[str]) -> str:
    """riskray's families of a Ray node's export text under their public names, summed over processes."""
    wanted = {RAY_PREFIX + name for name in PredictionMetrics.NAMES}
    # public family name -> (help, type, {(sample name, labels): value}); a family's samples stay together
    families: dict[str, tuple[str, str, dict[tuple[str, tuple], float]]] = {}
    for family in text_string_to_metric_families(export):
        base = family.name
        if base not in wanted and base + "_total" not in wanted:
            continue
        public = base[len(RAY_PREFIX):]
        kind = family.type if family.type in {"counter", "gauge", "histogram"} else "untyped"
        sums: dict[tuple[str, tuple], float] = defaultdict(float)
        for sample in family.samples:
            labels = tuple(sorted((k, v) for k, v in sample.labels.items() if k not in PROCESS_LABELS))
            name = public + sample.name[len(base):]
            if kind == "gauge":
                sums[(name, labels)] = max(sums.get((name, labels), float("-inf")), sample.value)
            else:
                sums[(name, labels)] += sample.value
        families[public] = (family.documentation, kind, sums)
    for name, (documentation, label_sets) in ZERO_UNTIL_COUNTED.items():
        family_name = name.removesuffix("_total")
        _, _, sums = families.setdefault(family_name, (documentation, "counter", defaultdict(float)))
        for label_set in label_sets:
            sums.setdefault((name, tuple(sorted(label_set.items()))), 0.0)
    lines: list[str] = []
    for public, (documentation, kind, sums) in families.items():
        lines += [f"# HELP {public} {documentation}", f"# TYPE {public} {kind}"]
        lines += [_sample(name, labels, value) for (name, labels), value in sorted(sums.items())]
    return "\n".join([*lines, *extra_lines]) + "\n"


def _sample(name: str, labels: tuple, value: float) -> str:
    rendered = ",".join(f'{k}="{v}"' for k, v in labels)
    return f"{name}{{{rendered}}} {value}" if rendered else f"{name} {value}"
