"""Monitoring for real: the stack's Prometheus scraping the Serve app, Ray and the exporter; Alertmanager routing
to the local receiver; drift and realised AUC computed from what Serve logged, in one pinned simulated world.

The world (seed pinned, event times fixed by WORLD_END): 45 days of history, a week of the same world served,
then a week after the simulator's drift switch (amounts x2 from DRIFT_AT). A tenth of the two served weeks is
sent to /predict/batch, a day at a time once the rest of that day is in the store (Kafka -> Spark ->
PostgreSQL), so a served transaction sees its history as serving does, minus the other served ones (a tenth:
measured to move a count's PSI by < 0.05). The served rows are streamed afterwards, so their labels reach
``transactions``.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from app import db, serving
from app.config import Settings
from app.registry import CHALLENGER, Registry
from app.reports import MonitoringReport
from app.schemas import ServeModelConfig
from streaming.simulator import DriftConfig
from tests.helpers import riskray

from .serve_app import deploy
from .stream_harness import WORLD_END, StreamHarness, recent_transactions

pytestmark = pytest.mark.integration

SEED = 20261204  # the world, the served sample; in every failure message
SERVE_START = WORLD_END - timedelta(days=14)
DRIFT_AT = WORLD_END - timedelta(days=7)
TRAIN_SINCE = SERVE_START - timedelta(days=7)
SERVED_SHARE = 0.10
# the inputs the switch changes through amounts (x2); other amount-derived inputs move less (their windows mix
# drifted and earlier amounts, or divide a drifted amount by a drifted mean) and are not claimed either way
CHANGED = ("amount", "cust_mean_amount_1d", "cust_mean_amount_7d", "amount_to_mean_30d")
AMOUNT_DERIVED = re.compile(r"amount")
MIN_POSITIVES = "3"  # a served week holds ~10 frauds: enough to compare with sklearn, not to judge a model


@dataclass(frozen=True)
class World:
    frame: pd.DataFrame
    served: pd.DataFrame
    answers: pd.DataFrame  # transaction_id -> fraud_probability, model_version as answered
    version: str
    api: httpx.Client


@contextlib.contextmanager
def _environment(**values: str) -> Iterator[None]:
    """RISKRAY_* variables for what this process starts (a Serve deployment takes them into its runtime_env)."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _cli(when) -> str:  # type: ignore[no-untyped-def]
    return when.strftime("%Y-%m-%dT%H:%M:%S")


def _wait(condition: Callable[[], object], timeout_s: float, what: str) -> object:
    deadline = time.monotonic() + timeout_s
    while not (result := condition()):
        assert time.monotonic() < deadline, f"seed {SEED}: {what}"
        time.sleep(1)
    return result


def _stored_rows(settings: Settings, customers: list[int]) -> int:
    with db.connection(settings) as conn, conn.cursor() as cur:
        cur.execute("SELECT coalesce(sum(transaction_count), 0) FROM features WHERE customer_id = ANY(%s)",
                    (customers,))
        return int(cur.fetchone()[0])


def _transactions(settings: Settings, customers: list[int]) -> int:
    with db.connection(settings) as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM transactions WHERE customer_id = ANY(%s)", (customers,))
        return int(cur.fetchone()[0])


def _logged_with_inputs(settings: Settings) -> int:
    with db.connection(settings) as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM predictions WHERE numeric_inputs IS NOT NULL")
        return int(cur.fetchone()[0])


def _send(harness: StreamHarness, rows: pd.DataFrame) -> None:
    from streaming.simulator import message_values

    harness.send(zip((str(c).encode() for c in rows["customer_id"]), message_values(rows), strict=True))


def _request(row: pd.Series) -> dict:
    return {"amount": float(row["amount"]), "merchant_id": int(row["merchant_id"]),
            "customer_id": int(row["customer_id"]), "transaction_id": row["transaction_id"],
            "timestamp": row["timestamp"].isoformat(), "country": row["country"], "device_type": row["device_type"],
            "currency": row["currency"]}


@pytest.fixture(scope="module")
def world(stack: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("monitoring")
    frame = recent_transactions(SEED, 59, customers=600, merchants=600, block=11,
                                drift=DriftConfig(at=DRIFT_AT, amount_factor=2.0))
    rng = np.random.default_rng(SEED)
    is_served = ((frame["timestamp"] >= pd.Timestamp(SERVE_START)) & (rng.random(len(frame)) < SERVED_SHARE)).to_numpy()
    served, history = frame[is_served], frame[~is_served]
    customers = [int(c) for c in frame["customer_id"].unique()]
    # the stack's own (scratch) topic and query names: the exporter then reports this job's lag and freshness
    # a 6-hour watermark: the days arrive in order; the served rows sent at the end are late for the tiles
    # (counted in `transactions` with is_late, which is all their labels need) and keep the window state small
    harness = StreamHarness(stack, tmp, stack_names=True, RISKRAY_STREAM_WATERMARK_SECONDS=str(6 * 3600))
    api = httpx.Client(base_url=f"http://{stack.ray_host}:{stack.serve_port}", timeout=60)
    try:
        before = history[history["timestamp"] < pd.Timestamp(SERVE_START)]
        _send(harness, before)  # before the job starts: its first micro-batch reads all of it, none is late
        harness.start()
        harness.wait_until(lambda: _stored_rows(stack, customers) == len(before), 300,
                           f"{len(before)} history rows in the tiles")
        trained = riskray("train", "--since", _cli(TRAIN_SINCE), "--until", _cli(SERVE_START), "--trials", "0",
                          timeout=900)
        assert trained.returncode == 0, trained.stdout[-3000:] + trained.stderr[-3000:]
        with Registry(stack) as registry:
            version = registry.by_alias(CHALLENGER).version
        assert riskray("promote", version).returncode == 0
        # A generous store budget: this module is about drift, and a degraded answer (the store slower than 50 ms
        # while Spark writes beside it on 2 cores) would log default inputs instead of the served history.
        with _environment(RISKRAY_SERVE_STORE_TIMEOUT_MS="5000"):
            deploy(stack, ServeModelConfig(champion=version))
        answered = []
        sent = len(before)
        # A day at a time: the rest of the day goes into the store, then its served sample is scored. The store
        # then holds at most a day of the future: all-time inputs (a customer's country counts, ~150 rows of
        # history each) barely see it, windowed ones never (their tiles end at the transaction's minute).
        for start in pd.date_range(SERVE_START, WORLD_END, freq="1D", inclusive="left"):
            in_day = (history["timestamp"] >= start) & (history["timestamp"] < start + pd.Timedelta(days=1))
            _send(harness, history[in_day])
            sent += int(in_day.sum())
            harness.wait_until(lambda sent=sent: _stored_rows(stack, customers) == sent, 120, "a day stored")
            part = served[(served["timestamp"] >= start) & (served["timestamp"] < start + pd.Timedelta(days=1))]
            response = api.post("/predict/batch", json=[_request(row) for _, row in part.iterrows()])
            assert response.status_code == 200, response.text
            for row_id, answer in zip(part["transaction_id"], response.json()["predictions"], strict=True):
                assert not answer["features_degraded"], answer
                answered.append((row_id, answer["fraud_probability"], answer["model_version"]))
        _send(harness, served)  # now their labels reach `transactions`
        harness.wait_until(lambda: _transactions(stack, customers) == len(frame), 300, "served rows stored")
        _wait(lambda: _logged_with_inputs(stack) == len(served), 60, "every prediction logged with its inputs")
        answers = pd.DataFrame(answered, columns=["transaction_id", "fraud_probability", "model_version"])
        yield World(frame, served, answers.set_index("transaction_id"), version, api)
    finally:
        harness.stop()
        api.close()
        with serving.ServeClient(stack) as client:
            client.shutdown()


def _drift(as_of, **env: str) -> MonitoringReport:  # type: ignore[no-untyped-def]
    result = riskray("drift", "--as-of", _cli(as_of), "--json", timeout=300,
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
        batch = [_request(row) for _, row in world.served.head(100).iterrows()]
        assert world.api.post("/predict/batch", json=batch).status_code == 200
        for request in batch[:20]:
            assert world.api.post("/predict", json=request).status_code == 200
        time.sleep(stack.prometheus_scrape_interval_s)
    _wait(lambda: any(float(r["value"][1]) > 0 for r in _prometheus(stack, "sum(rate(predictions_total[1m]))")),
          60, "rate(predictions_total[1m]) never above 0")
    p95 = ('histogram_quantile(0.95, sum by (le) (rate(prediction_latency_seconds_bucket{endpoint="predict"}'
           "[1m])))")
    result = _wait(lambda: [r for r in _prometheus(stack, p95) if r["value"][1] != "NaN"], 60, "no p95")
    assert 0 < float(result[0]["value"][1]) < 10  # type: ignore[index]


PROMQL_WORDS = {"sum", "max", "min", "avg", "by", "without", "rate", "increase", "histogram_quantile", "on", "or",
                "and", "vector"}


def _metric_names(expr: str) -> set[str]:
    """The metric names an expression reads: identifiers left once label matchers, grouping labels, ranges and
    numbers are gone."""
    bare = re.sub(r"\{[^}]*\}|\[[^\]]*\]|\b(?:by|without)\s*\([^)]*\)", " ", expr)
    return {w for w in re.findall(r"[A-Za-z_:][A-Za-z0-9_:]*", bare) if w not in PROMQL_WORDS}


# --- drift and realised accuracy ----------------------------------------------------------------------------
def test_a_window_without_predictions_is_not_enough_data_and_exports_no_gauge(world: World) -> None:
    report = _drift(SERVE_START)  # the week before any prediction
    assert report.status == "not enough data" and report.predictions == 0 and not report.retrain
    assert all(d.psi is None and d.status == "not enough data" for d in report.drift)
    assert all(a.roc_auc is None for a in report.accuracy)
    time.sleep(11)  # past the replica's report cache: /metrics now renders this report
    gauges = _scraped_gauges(world)
    assert not gauges.get("data_drift_score") and not gauges.get("model_accuracy"), gauges


def test_inputs_served_from_the_same_world_stay_under_the_warn_threshold(world: World) -> None:
    report = _drift(DRIFT_AT)
    inputs = [d for d in report.drift if d.kind != "score"]
    assert report.predictions > 1000 and all(d.psi is not None for d in inputs), report
    over = {d.name: round(d.psi, 3) for d in inputs if d.psi >= 0.1}  # type: ignore[operator]
    assert not over, f"seed {SEED}: same-world inputs over PSI 0.1: {over}"
    assert report.status == "ok" and not report.retrain


def test_inputs_after_the_drift_switch_cross_the_action_threshold_only_where_amounts_changed(
        stack: Settings, world: World) -> None:
    report = _drift(WORLD_END)
    psi = {d.name: d.psi for d in report.drift if d.kind != "score"}
    assert all(psi[name] > 0.25 for name in CHANGED), f"seed {SEED}: {psi}"
    unchanged = {n: round(v, 3) for n, v in psi.items() if not AMOUNT_DERIVED.search(n) and v >= 0.25}
    assert not unchanged, f"seed {SEED}: inputs the switch does not change crossed 0.25: {unchanged}"
    assert report.retrain and report.status == "act"
    # Serve's /metrics renders the report, Prometheus scrapes it, the drift rule fires, Alertmanager delivers
    _wait(lambda: _scraped_gauges(world).get("data_drift_score"), 30, "no data_drift_score on /metrics")
    _wait(lambda: _prometheus(stack, 'data_drift_score{feature="amount"} > 0.25'), 60, "Prometheus: no drift")
    _wait(lambda: any(a["labels"]["alertname"] == "RiskrayFeatureDrift" and a["status"] == "firing"
                      for a in _received(stack)), 120, "RiskrayFeatureDrift never reached the receiver")


def test_realised_auc_equals_sklearn_on_the_same_joined_rows(world: World) -> None:
    report = _drift(WORLD_END)
    # labels matured: event times in [as_of - delay - 30 d, as_of - delay): the same-world served week
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
    job_id = client.submit_job(entrypoint=f"python -m monitoring --as-of {_cli(DRIFT_AT)}",
                               runtime_env={"env_vars": env})
    _wait(lambda: client.get_job_status(job_id) in {JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.STOPPED},
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
    with serving.ServeClient(stack) as client:
        client.shutdown()
    # `for: 1m` on a failed scrape, then Alertmanager's group wait: about 80 s on the tests' 5 s interval
    alert = _wait(lambda: [a for a in _received(stack) if a["labels"]["alertname"] == "RiskrayServeDown"
                           and a["status"] == "firing"], 240, "RiskrayServeDown never reached the receiver")
    first = alert[0]  # type: ignore[index]
    assert first["labels"]["severity"] == "critical" and first["receiver"] == "local-webhook"
    assert first["annotations"]["runbook_url"].startswith("docs/runbook.md#")
