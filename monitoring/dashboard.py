"""The Grafana dashboard, defined once as data: the panels and their PromQL.

``python -m monitoring.dashboard`` writes ``monitoring/grafana/riskray.json`` (importable into current Grafana:
schemaVersion 42, a ``datasource`` template variable); a unit test keeps the committed file equal to this
definition, an integration test runs every expression against the real local Prometheus, and
``riskray monitor snapshot`` renders the same panels into a PNG (Grafana cannot be installed here).

Counters are summed without the labels of the process that counted them (``instance``, ``pod``, ...), so a
restarted or upgraded replica does not break a rate.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.config import PROJECT_ROOT
from app.prediction_service import DEPLOYMENT

DASHBOARD_FILE = PROJECT_ROOT / "monitoring" / "grafana" / "riskray.json"
PER_PROCESS = "instance, pod, job, replica, ReplicaId, WorkerId, NodeAddress, SessionName, Component"


@dataclass(frozen=True)
class Target:
    expr: str
    legend: str


@dataclass(frozen=True)
class Panel:
    title: str
    unit: str
    targets: tuple[Target, ...]
    riskray: bool  # riskray's own series: must return data after traffic (Ray's may be absent on a fresh stack)


def _sum(expr: str, by: str = "") -> str:
    return f"sum by ({by}) ({expr})" if by else f"sum without({PER_PROCESS}) ({expr})"


def _quantile(q: float) -> Target:
    expr = (f"histogram_quantile({q}, sum by (le) "
            f"(rate(prediction_latency_seconds_bucket{{endpoint=\"predict\"}}[1m])))")
    return Target(expr, f"p{round(q * 100)}")


PANELS: tuple[Panel, ...] = (
    Panel("Request rate", "reqps", (Target(_sum("rate(predictions_total[1m])"), "{{model_version}} {{result}}"),),
          True),
    Panel("Prediction latency (/predict)", "s", (_quantile(0.5), _quantile(0.95), _quantile(0.99)), True),
    Panel("Decisions", "reqps", (Target(_sum("rate(decisions_total[5m])", "model_version, outcome"),
                                        "{{model_version}} {{outcome}}"),), True),
    Panel("Reviews against the team's capacity (last 24 h)", "percentunit", (
        Target("max(review_capacity_share)", "reviews / capacity"),), True),
    Panel("Error rate", "percentunit", (Target(
        '(sum(rate(predictions_total{result="error"}[5m])) or on() vector(0)) / sum(rate(predictions_total[5m]))',
        "errors"),), True),
    Panel("Model accuracy (AUC): realised, estimated, training", "none", (
        Target("max by (model_version) (model_accuracy)", "realised (mature cohorts) {{model_version}}"),
        Target("max by (model_version) (model_accuracy_estimated)", "estimated (recent) {{model_version}}"),
        Target("max by (model_version) (model_training_auc)", "training {{model_version}}")), False),
    Panel("Frauds known behind each accuracy", "percentunit", (
        Target("max by (model_version, kind) (model_accuracy_maturity)", "{{kind}} {{model_version}}"),), False),
    Panel("Data drift per feature (PSI)", "none", (Target("max by (feature) (data_drift_score)", "{{feature}}"),),
          False),
    Panel("Serve replicas", "none", (
        Target(f'count(ray_serve_replica_processing_queries{{deployment="{DEPLOYMENT}"}})', "running replicas"),
        Target(f'max(ray_serve_autoscaling_target_replicas{{deployment="{DEPLOYMENT}"}})', "target replicas"),
        Target("sum(model_version_info) by (variant)", "{{variant}} models")), False),
    Panel("CPU", "percent", (Target("avg by (instance) (ray_node_cpu_utilization)", "node {{instance}}"),), False),
    Panel("Memory", "bytes", (Target("sum by (instance) (ray_node_mem_used)", "node {{instance}}"),), False),
    Panel("Feature freshness and stream lag", "s", (
        Target("max by (query) (riskray_stream_feature_freshness_seconds)", "freshness {{query}}"),
        Target("max by (query) (riskray_stream_lag_messages)", "lag (messages) {{query}}")), True),
    Panel("Degraded share", "percentunit", (Target(
        "sum(rate(features_degraded_total[5m])) / sum(rate(predictions_total[5m]))", "degraded"),), True),
    Panel("Ray Serve HTTP requests", "reqps", (
        Target(_sum("rate(ray_serve_num_http_requests_total[1m])", "route, method"), "{{method}} {{route}}"),),
          False),
    Panel("Prediction log", "none", (
        Target("max(riskray_prediction_log_rows)", "rows logged"),
        Target(_sum("increase(prediction_log_dropped_total[1h])", "reason"), "dropped/h {{reason}}")), True),
)


def grafana_dashboard() -> dict[str, Any]:
    datasource = {"type": "prometheus", "uid": "${datasource}"}
    panels = []
    for i, panel in enumerate(PANELS):
        panels.append({
            "id": i + 1, "type": "timeseries", "title": panel.title, "datasource": datasource,
            "gridPos": {"h": 8, "w": 8, "x": (i % 3) * 8, "y": (i // 3) * 8},
            "fieldConfig": {"defaults": {"unit": panel.unit}, "overrides": []},
            "options": {"legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
                        "tooltip": {"mode": "multi", "sort": "none"}},
            "targets": [{"refId": chr(ord("A") + j), "datasource": datasource, "expr": t.expr,
                         "legendFormat": t.legend, "range": True} for j, t in enumerate(panel.targets)],
        })
    return {
        "uid": "riskray-overview", "title": "riskray: fraud detection", "tags": ["riskray", "ray-serve"],
        "schemaVersion": 42, "version": 1, "editable": True, "refresh": "30s", "timezone": "utc",
        "time": {"from": "now-1h", "to": "now"},
        "templating": {"list": [{"name": "datasource", "label": "Prometheus", "type": "datasource",
                                 "query": "prometheus", "current": {}, "hide": 0, "refresh": 1}]},
        "annotations": {"list": []},
        "panels": panels,
    }


def write(path: Path = DASHBOARD_FILE) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(grafana_dashboard(), indent=2) + "\n")
    return path


if __name__ == "__main__":
    print(write())
