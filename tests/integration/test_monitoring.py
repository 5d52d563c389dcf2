"""Monitoring for real: the stack's Prometheus scraping the Serve app, Ray and the exporter; Alertmanager routing
to the local receiver; drift and realised AUC computed from what Serve logged, in one pinned simulated world
(tests/integration/served_world.py).
"""

from __future__ import annotations

import json
import os
import re
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from app.config import Settings
from app.reports import MonitoringReport
from app.schemas import ServeModelConfig
from streaming.replay import request_body
from tests.helpers import riskray

from .serve_app import remove
from .served_world import DRIFT_AT, SEED, SERVE_START, WORLD_END, World, cli_time, deploy_champion, wait

pytestmark = pytest.mark.integration

# the inputs the switch changes through amounts (x2); other amount-derived inputs move less (their windows mix
# drifted and earlier amounts, or divide a drifted amount by a drifted mean) and are not claimed either way
CHANGED = ("amount", "cust_mean_amount_1d", "cust_mean_amount_7d", "amount_to_mean_30d")
AMOUNT_DERIVED = re.compile(r"amount")
MIN_POSITIVES = "3"  # a served week holds ~10 frauds: enough to compare with sklearn, not to judge a model




@pytest.fixture(scope="module")
def world(served_world: World) -> World:
    return served_world


def _drift(as_of, **env: str) -> MonitoringReport:  # type: ignore[no-untyped-def]
    result = riskray("drift", "--as-of", cli_time(as_of), "--json", timeout=300,
                     RISKRAY_ACCURACY_MIN_POSITIVES=MIN_POSITIVES, **env)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return MonitoringReport.model_validate_json(result.stdout)


def _prometheus(settings: Settings, expr: str) -> list[dict]:
    response = httpx.get(f"http://{settings.monitoring_host}:{settings.prometheus_port}/api/v1/query",
                         params={"query": expr}, timeout=30)
    assert response.status_code == 200, (expr, response.text)
    return response.json()["data"]["result"]


def _scraped_gauges(world: World) -> dict[str, dict[str, float]]:
    from prometheus_client.parser import text_string_to_metric_families

    text = world.api.get("/metrics").text
    out: dict[str, dict[str, float]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out.setdefault(sample.name, {})[json.dumps(sample.labels, sort_keys=True)] = sample.value
    return out


# --- Prometheus ---------------------------------------------------------------------------------------------
def test_served_traffic_reaches_prometheus_as_a_rate_and_a_p95(stack: Settings, world: World) -> None:
    for _ in range(3):  # a burst inside the last minute, whatever came before
        batch = [request_body(row) for _, row in world.served.head(100).iterrows()]
        assert world.api.post("/predict/batch", json=batch).status_code == 200
        for request in batch[:20]:
            assert world.api.post("/predict", json=request).status_code == 200
        time.sleep(stack.prometheus_scrape_interval_s)
    wait(lambda: any(float(r["value"][1]) > 0 for r in _prometheus(stack, "sum(rate(predictions_total[1m]))")),
          60, "rate(predictions_total[1m]) never above 0")
    p95 = ('histogram_quantile(0.95, sum by (le) (rate(prediction_latency_seconds_bucket{endpoint="predict"}'
           "[1m])))")
    result = wait(lambda: [r for r in _prometheus(stack, p95) if r["value"][1] != "NaN"], 60, "no p95")
    assert 0 < float(result[0]["value"][1]) < 10  # type: ignore[index]


PROMQL_WORDS = {"sum", "max", "min", "avg", "count", "by", "without", "rate", "increase", "histogram_quantile", "on",
                "or", "and", "unless", "vector", "last_over_time"}


def _metric_names(expr: str) -> set[str]:
    """The metric names an expression reads: identifiers left once label matchers, grouping labels, ranges and
    numbers are gone."""
    bare = re.sub(r"\{[^}]*\}|\[[^\]]*\]|\b(?:by|without)\s*\([^)]*\)", " ", expr)
    return {w for w in re.findall(r"[A-Za-z_:][A-Za-z0-9_:]*", bare) if w not in PROMQL_WORDS}


# --- drift and realised accuracy ----------------------------------------------------------------------------
def test_a_window_without_predictions_is_not_enough_data_and_exports_no_gauge(stack: Settings, world: World) -> None:
    report = _drift(SERVE_START)  # the week before any prediction
    assert report.status == "not enough data" and report.predictions == 0 and not report.retrain
    assert all(d.psi is None and d.status == "not enough data" for d in report.drift)
    assert all(a.roc_auc is None for a in report.accuracy)
    time.sleep(stack.serve_report_cache_s + 1)  # past the replica's report cache: /metrics now renders this report
    gauges = _scraped_gauges(world)
    assert not gauges.get("data_drift_score") and not gauges.get("model_accuracy"), gauges


def test_inputs_served_from_the_same_world_stay_under_the_warn_threshold(world: World) -> None:
    report = _drift(DRIFT_AT)
    inputs = [d for d in report.drift if d.kind != "score"]
    assert report.predictions > 1000 and all(d.psi is not None for d in inputs), report
    over = {d.name: round(d.psi, 3) for d in inputs if d.psi >= 0.1}  # type: ignore[operator]
    assert not over, f"seed {SEED}: same-world inputs over PSI 0.1: {over}"
    assert report.status == "ok" and not report.retrain


def test_daily_checks_stay_quiet_for_two_weeks_on_the_same_world_and_act_the_morning_after_the_switch(
        world: World) -> None:
    # the nightly check, backfilled: one report a day through the real store, as `riskray drift` stores them, with
    # the default floors. One-day windows: the smallest samples (the strictest for false alarms), and a shift is
    # seen the morning after (a 7-day window needs ~5 drifted days before an amount shift like this one reads 0.25).
    first, morning_after = SERVE_START + timedelta(days=1), DRIFT_AT + timedelta(days=1)
    result = riskray("drift", "--daily-from", cli_time(first), "--as-of", cli_time(morning_after), "--json",
                     timeout=900, RISKRAY_DRIFT_WINDOW_DAYS="1")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    daily = [MonitoringReport.model_validate(r) for r in json.loads(result.stdout)]
    same, after = daily[:-1], daily[-1]
    assert len(same) == 14 and all(r.as_of <= DRIFT_AT for r in same) and after.as_of == morning_after
    over = {(f"{r.as_of:%m-%d}", d.name): round(d.psi, 3) for r in same for d in r.drift
            if d.kind != "score" and d.psi is not None and d.psi > 0.25}
    assert not over, f"seed {SEED}: same-world inputs over the action threshold: {over}"
    assert not [(f"{r.as_of:%m-%d}", r.reasons) for r in same if r.retrain], f"seed {SEED}: a retrain verdict"
    assert sum(any(d.psi is not None for d in r.drift if d.kind != "score") for r in same) >= 10  # judged, not mute
    moved = [d.name for d in after.drift if d.status == "act" and d.kind != "score"]
    assert after.retrain and after.triggers[0] == "drift" and "amount" in moved, after.reasons
    assert all(AMOUNT_DERIVED.search(name) for name in moved), f"seed {SEED}: {moved}"
    assert after.reasons[0].startswith(tuple(f"{name}: PSI" for name in moved)), after.reasons


@pytest.fixture(scope="module")
def drifted(world: World) -> MonitoringReport:
    """The report at WORLD_END: its drift window is the week after the switch (stored: the latest report)."""
    return _drift(WORLD_END)


def test_inputs_after_the_drift_switch_cross_the_action_threshold_only_where_amounts_changed(
        stack: Settings, world: World, drifted: MonitoringReport) -> None:
    report = drifted
    psi = {d.name: d.psi for d in report.drift if d.kind != "score"}
    assert all(psi[name] > 0.25 for name in CHANGED), f"seed {SEED}: {psi}"
    unchanged = {n: round(v, 3) for n, v in psi.items() if not AMOUNT_DERIVED.search(n) and v >= 0.25}
    assert not unchanged, f"seed {SEED}: inputs the switch does not change crossed 0.25: {unchanged}"
    assert report.retrain and report.status == "act"
    # Serve's /metrics renders the report, Prometheus scrapes it, the drift rule fires, Alertmanager delivers
    wait(lambda: _scraped_gauges(world).get("data_drift_score"), 30, "no data_drift_score on /metrics")
    wait(lambda: _prometheus(stack, 'data_drift_score{feature="amount"} > 0.25'), 60, "Prometheus: no drift")
    wait(lambda: any(a["labels"]["alertname"] == "RiskrayFeatureDrift" and a["status"] == "firing"
                      for a in _received(stack)), 120, "RiskrayFeatureDrift never reached the receiver")


def test_realised_auc_equals_sklearn_on_the_same_joined_rows(world: World, drifted: MonitoringReport) -> None:
    report = drifted
    # the mature cohorts (row labels: days at least the label delay old) pooled: the same-world served weeks
    week = world.served[(world.served["timestamp"] >= pd.Timestamp(report.accuracy_start))
                        & (world.served["timestamp"] < pd.Timestamp(report.accuracy_end))]
    scores = world.answers.loc[week["transaction_id"], "fraud_probability"].to_numpy()
    expected = roc_auc_score(week["is_fraud"].to_numpy(), scores)
    (champion,) = [a for a in report.accuracy if a.variant == "champion" and a.model_version == world.version]
    assert champion.rows == len(week) and champion.positives == int(week["is_fraud"].sum())
    assert champion.roc_auc == pytest.approx(expected, abs=1e-12), f"seed {SEED}"
    assert champion.auc_low <= champion.roc_auc <= champion.auc_high  # type: ignore[operator]


def test_the_drift_job_runs_as_a_ray_job(stack: Settings, world: World) -> None:
    from ray.job_submission import JobStatus, JobSubmissionClient

    client = JobSubmissionClient(stack.ray_dashboard_url)
    env = {k: v for k, v in os.environ.items() if k.startswith("RISKRAY_")}
    job_id = client.submit_job(entrypoint=f"riskray drift --as-of {cli_time(DRIFT_AT)}",
                               runtime_env={"env_vars": env})
    wait(lambda: client.get_job_status(job_id) in {JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.STOPPED},
          300, "drift job did not finish")
    logs = client.get_job_logs(job_id)
    assert client.get_job_status(job_id) == JobStatus.SUCCEEDED, logs[-3000:]
    assert "verdict: ok" in logs


def test_every_dashboard_panel_parses_names_real_metrics_and_riskray_panels_have_data(
        stack: Settings, world: World, tmp_path: Path) -> None:
    from monitoring.dashboard import PANELS

    names = set(httpx.get(f"http://{stack.monitoring_host}:{stack.prometheus_port}/api/v1/label/__name__/values",
                          timeout=30).json()["data"])
    for panel in PANELS:
        returned = 0
        for target in panel.targets:
            for metric in _metric_names(target.expr):
                assert metric in names, f"{panel.title}: {metric} is not a metric Prometheus has"
            returned += len(_prometheus(stack, target.expr))
        if panel.riskray:
            assert returned > 0, f"{panel.title}: no data after traffic"
    out = tmp_path / "snapshot.png"
    result = riskray("monitor", "snapshot", "--minutes", "10", "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert out.stat().st_size > 20_000 and "Request rate" in result.stdout


# --- alerting -----------------------------------------------------------------------------------------------
def _received(settings: Settings) -> list[dict]:
    return httpx.get(f"http://{settings.monitoring_host}:{settings.alert_webhook_port}/alerts", timeout=10).json()


def test_with_serve_stopped_the_serve_down_alert_reaches_the_local_receiver(stack: Settings, world: World) -> None:
    stopped = datetime.now(UTC)
    # every application deleted, Serve itself left running: no replica serves and the scrape of /metrics fails, as
    # when the app is down; the redeploy below then needs no new controller and proxy
    remove(stack, ServeModelConfig(champion=world.version))
    try:
        # `for:` (5 s in the scratch world) on a failed scrape, then Alertmanager's group wait (1 s). Only
        # an alert that started after the stop counts: Serve was also down before the world deployed it.
        alert = wait(lambda: [a for a in _received(stack) if a["labels"]["alertname"] == "RiskrayServeDown"
                               and a["status"] == "firing" and datetime.fromisoformat(a["startsAt"]) >= stopped],
                     240, "RiskrayServeDown never reached the receiver")
    finally:
        deploy_champion(stack, world.version)  # the world is the session's: Serve back as it was
    first = alert[0]  # type: ignore[index]
    assert first["labels"]["severity"] == "critical" and first["receiver"] == "local-webhook"
    assert first["annotations"]["runbook_url"].startswith("docs/runbook.md#")
