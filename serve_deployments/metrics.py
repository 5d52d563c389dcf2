"""Prediction metrics (the contract of ../shared/ARCHITECTURE.md), counted right with any number of replicas.

Each replica records into Ray's metrics API (``ray.util.metrics``); every Ray node's metrics agent merges the
processes of its node and exports them (prefixed ``ray_``) on the node's metrics port, which Prometheus
scrapes on a cluster. ``GET /metrics`` reads the local node's export, keeps riskray's metrics, drops the
per-process labels and sums over replicas, so one scrape of one replica shows the node's totals under the
contract's names. (On a multi-node cluster, scrape every node's metrics port; /metrics shows one node.)
"""

from __future__ import annotations

from collections import defaultdict

import httpx
from prometheus_client.parser import text_string_to_metric_families
from ray.util import metrics

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

    NAMES = ("predictions_total", "prediction_latency_seconds", "prediction_batch_size", "features_degraded_total",
             "prediction_log_dropped_total", "model_reload_failures_total")


def gauge_lines(versions: dict[str, str], accuracy: dict[str, float], drift: dict[str, float]) -> list[str]:
    """model_version_info{model_version,variant}, model_accuracy{model_version}, data_drift_score{feature}.

    Gauges are rendered by the replica answering /metrics from its own state: Ray 2.60's Python gauges
    (OpenTelemetry observable gauges) never reached the node's metrics export in our tests; counters and
    histograms do, and are summed over replicas above.

    ``accuracy`` (realised AUC) and ``drift`` are empty until the monitoring job computes them; the families are
    still declared so dashboards and alert rules find them."""
    lines = ["# HELP model_version_info 1 for each model version being served, by variant",
             "# TYPE model_version_info gauge"]
    lines += [f'model_version_info{{model_version="{v}",variant="{variant}"}} 1' for variant, v in versions.items()]
    lines += ["# HELP model_accuracy Realised AUC of a model version on labelled predictions",
              "# TYPE model_accuracy gauge"]
    lines += [f'model_accuracy{{model_version="{v}"}} {value}' for v, value in accuracy.items()]
    lines += ["# HELP data_drift_score Drift of a feature against the training data (0-1)",
              "# TYPE data_drift_score gauge"]
    lines += [f'data_drift_score{{feature="{f}"}} {value}' for f, value in drift.items()]
    return lines


def merged_text(agent_url: str, extra_lines: list[str], timeout_s: float = 2.0) -> str:
    """Prometheus text of riskray's metrics from a node's export, summed over replicas, plus ``extra_lines``."""
    response = httpx.get(agent_url, timeout=timeout_s)
    response.raise_for_status()
    wanted = {RAY_PREFIX + name for name in PredictionMetrics.NAMES}
    lines: list[str] = []
    for family in text_string_to_metric_families(response.text):
        base = family.name
        if base not in wanted and base + "_total" not in wanted:
            continue
        public = base[len(RAY_PREFIX):]
        kind = family.type if family.type in {"counter", "gauge", "histogram"} else "untyped"
        lines.append(f"# HELP {public} {family.documentation}")
        lines.append(f"# TYPE {public} {kind}")
        sums: dict[tuple[str, tuple], float] = defaultdict(float)
        for sample in family.samples:
            labels = tuple(sorted((k, v) for k, v in sample.labels.items() if k not in PROCESS_LABELS))
            name = public + sample.name[len(base):]
            if kind == "gauge":
                sums[(name, labels)] = max(sums.get((name, labels), float("-inf")), sample.value)
            else:
                sums[(name, labels)] += sample.value
        for (name, labels), value in sorted(sums.items()):
            rendered = ",".join(f'{k}="{v}"' for k, v in labels)
            lines.append(f"{name}{{{rendered}}} {value}" if rendered else f"{name} {value}")
    return "\n".join([*lines, *extra_lines]) + "\n"
