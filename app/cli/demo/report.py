"""The demo's report: counts at every stage (nothing lost, nothing counted twice), the champion before and after,
the nightly checks, accuracy per day (estimated and, once mature, realised) with the label maturity curve, drift,
serving, the Airflow run and links; printed, and written as Markdown, JSON and PNGs in the run's folder."""

from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, Field
from rich.console import Console
from rich.table import Table

from app import db
from app.config import Settings
from app.labels import known_at, known_label_sql, matured_sql
from app.prediction_service import ANSWERED
from app.reports import LEFT_OUT, MATURITY_SHARES, MonitoringReport


class Check(BaseModel):
    name: str
    ok: bool
    detail: str


class NightlyCheck(BaseModel):
    """A nightly check in a line: its verdict and what it rests on, the champion's estimated AUC over the day and
    its matured AUC (mature days pooled)."""

    as_of: datetime
    model_version: str | None
    status: str
    retrain: bool
    triggers: list[str]
    verdict: str
    predictions: int
    moved: str = Field(description="the inputs over the act threshold, or the highest PSI")
    acted: list[str]
    max_psi: float | None
    left_out: list[str]
    estimated_auc: float | None
    matured_auc: float | None
    accuracy: str = Field(description="the estimated and matured AUC in words")


class DemoReport(BaseModel):
    run: str
    plan: dict[str, Any]
    timeline: dict[str, datetime]
    phases: list[dict[str, Any]]
    counts: dict[str, int]
    checks: list[Check]
    champion_before: dict[str, Any]
    champion_after: str | None
    comparison: dict[str, Any] | None
    realised_auc: list[dict[str, Any]]
    labels: dict[str, Any]
    daily: list[NightlyCheck]
    maturity: dict[str, Any] | None
    cohorts: list[dict[str, Any]]
    drift: list[dict[str, Any]]
    drift_reasons: list[str]
    serving: dict[str, float]
    examples: dict[str, dict[str, Any]] = Field(default_factory=dict, description="a review and a decline answered")
    backtest: dict[str, Any] | None = None
    airflow_run: dict[str, Any]
    links: dict[str, str]
    plots: list[str]

    @property
    def passed(self) -> bool:
        return all(c.ok for c in self.checks)


# --- the figures ---------------------------------------------------------------------------------------------
def _one(settings: Settings, sql: str, params: tuple = ()) -> tuple:
    with db.connection(settings) as conn, conn.cursor() as cur:
        cur.execute(sql, params)
        return cur.fetchone()


def topic_messages(settings: Settings, topic: str) -> int:
    """Messages a topic holds (end minus start offsets over its partitions)."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": settings.kafka_bootstrap, "group.id": "riskray-demo-report",
                         "enable.auto.commit": False})
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        total = 0
        for partition in partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
            total += high - low
        return total
    finally:
        consumer.close()


LOGGED = f"""SELECT count(*), count(DISTINCT p.transaction_id) FROM predictions p WHERE {ANSWERED}
            AND EXISTS (SELECT 1 FROM transactions t WHERE t.transaction_id = p.transaction_id)"""


def wait_for_logged(settings: Settings, answered: int, timeout_s: float = 60) -> tuple[int, int]:
    """The prediction log writes in the background: until it holds ``answered`` predictions of stored
    transactions, or the timeout; (logged, distinct transactions)."""
    deadline = time.monotonic() + timeout_s
    while (logged := _one(settings, LOGGED))[0] < answered and time.monotonic() < deadline:
        time.sleep(1)
    return int(logged[0]), int(logged[1])


def counts(settings: Settings, state: Any) -> dict[str, int]:
    replay = state.replay
    logged = wait_for_logged(settings, replay.answered)
    rows, distinct, late = _one(settings, "SELECT count(*), count(DISTINCT transaction_id), "
                                          "count(*) FILTER (WHERE is_late) FROM transactions")
    tiled, tile_rows = _one(settings, "SELECT coalesce(sum(transaction_count), 0), count(*) FROM features")
    from streaming.replay import wait_for_stored_labels

    feed = state.labels
    stored = wait_for_stored_labels(settings, feed.sent_ids)  # the labels query triggers every few seconds
    label_rows, unmatched = _one(settings, "SELECT count(*), count(*) FILTER (WHERE NOT EXISTS (SELECT 1 FROM "
                                           "transactions t WHERE t.transaction_id = l.transaction_id)) FROM labels l")
    return {
        "produced": state.history_produced + replay.produced,
        "produced_history": state.history_produced,
        "produced_live": replay.produced,
        "in_kafka": topic_messages(settings, settings.kafka_topic),
        "in_dlq": topic_messages(settings, settings.kafka_dlq_topic),
        "transactions": int(rows),
        "transactions_distinct": int(distinct),
        "late": int(late),
        "tiled": int(tiled),
        "tile_rows": int(tile_rows),
        "served": replay.answered,
        "failed": replay.failed,
        "degraded": replay.degraded,
        "logged": int(logged[0]),
        "logged_distinct": int(logged[1]),
        "labels_sent": feed.sent,
        "labels_held": feed.held,
        "labels_in_kafka": topic_messages(settings, settings.kafka_labels_topic),
        "labels_in_dlq": topic_messages(settings, settings.kafka_labels_dlq_topic),
        "labels_stored": int(stored),
        "label_rows": int(label_rows),
        "labels_unmatched": int(unmatched),
    }


def daily_row(r: MonitoringReport) -> NightlyCheck:
    inputs = [d for d in r.drift if d.kind != "score"]
    judged = [d for d in inputs if d.status != LEFT_OUT and d.psi is not None]
    top = max(judged, key=lambda d: d.psi or 0.0, default=None)
    acted = sorted((d for d in judged if d.status == "act"), key=lambda d: -(d.psi or 0.0))
    estimate = next((e for e in r.estimated if e.model_version == r.model_version and e.variant == "champion"), None)
    matured = next((a for a in r.accuracy if a.model_version == r.model_version and a.variant == "champion"), None)
    est_auc = estimate.estimated.roc_auc if estimate and estimate.estimated else None
    verdict = f"retrain ({', '.join(r.triggers)})" if r.retrain else r.status
    moved = (f"{', '.join(d.name for d in acted[:3])}{' ...' if len(acted) > 3 else ''} over the act threshold"
             if acted else f"highest PSI {top.psi:.3f} ({top.name})" if top else "no input judged")
    est = "-" if est_auc is None else f"{est_auc:.3f} (frauds {estimate.maturity:.0%} known)"  # type: ignore[union-attr]
    mat = ("-" if matured is None or matured.roc_auc is None else
           f"{_interval(matured.roc_auc, matured.auc_low, matured.auc_high)} over {matured.cohorts} mature day(s), "
           f"{matured.positives} frauds")
    return NightlyCheck(as_of=r.as_of, model_version=r.model_version, status=r.status, retrain=r.retrain,
                        triggers=r.triggers, verdict=verdict, predictions=r.predictions, moved=moved,
                        acted=[d.name for d in acted], max_psi=None if top is None else top.psi,
                        left_out=[d.name for d in inputs if d.status == LEFT_OUT], estimated_auc=est_auc,
                        matured_auc=None if matured is None else matured.roc_auc,
                        accuracy=f"estimated AUC {est}; matured AUC {mat}")


def _interval(value: float, low: float | None, high: float | None) -> str:
    return f"{value:.3f}" if low is None or high is None else f"{value:.3f} [{low:.3f}, {high:.3f}]"


def checks(c: dict[str, int], state: Any) -> list[Check]:
    tasks = {t.task_id: t.state for t in state.dag_tasks}
    path = [tasks.get(t) for t in ("check_drift", "retrain", "evaluate", "deploy", "validate")]
    before, after = state.first_champion.get("version"), state.new_champion
    answered_by_new = state.replay.by_version.get(str(after), 0) if after else 0
    retrain = bool(state.drift_report and state.drift_report.get("retrain"))
    same = [r for r in state.daily if r.as_of <= state.line.drift_at]
    drifted = [r for r in state.daily if r.as_of > state.line.drift_at]
    loud = [r for r in same if r.retrain or r.status == "act"]
    return [
        Check(name="Kafka holds every produced transaction once", ok=c["in_kafka"] == c["produced"],
              detail=f"produced {c['produced']:,}, in Kafka {c['in_kafka']:,}"),
        Check(name="no message in the dead-letter topics", ok=c["in_dlq"] == c["labels_in_dlq"] == 0,
              detail=f"{c['in_dlq']:,} transactions, {c['labels_in_dlq']:,} label events"),
        Check(name="every label event sent is in Kafka and stored once, with its transaction",
              ok=c["labels_sent"] == c["labels_in_kafka"] == c["labels_stored"] == c["label_rows"] > 0
              and c["labels_unmatched"] == 0,
              detail=f"sent {c['labels_sent']:,}, in Kafka {c['labels_in_kafka']:,}, stored {c['labels_stored']:,} "
                     f"({c['label_rows']:,} rows, {c['labels_unmatched']} without their transaction)"),
        Check(name="transactions holds every produced transaction exactly once",
              ok=c["transactions"] == c["transactions_distinct"] == c["produced"],
              detail=f"{c['transactions']:,} rows, {c['transactions_distinct']:,} distinct ids"),
        Check(name="the tiles count every on-time transaction once", ok=c["tiled"] == c["transactions"] - c["late"],
              detail=f"tiles count {c['tiled']:,}; transactions {c['transactions']:,}, late {c['late']:,}"),
        Check(name="every live transaction was answered, none failed",
              ok=c["served"] == c["produced_live"] and c["failed"] == 0,
              detail=f"{c['served']:,} answered of {c['produced_live']:,} sent, {c['failed']} failed"),
        Check(name="every answer carried an outcome, every review and decline its reasons",
              ok=sum(state.replay.outcomes.get(o, 0) for o in ("approve", "review", "decline")) == c["served"]
              and state.replay.unexplained == 0,
              detail=", ".join(f"{o} {state.replay.outcomes.get(o, 0):,}" for o in ("approve", "review", "decline"))
              + f" of {c['served']:,} answered; {state.replay.unexplained} without reasons"),
        Check(name="the backtest replayed the champion and the challenger on the held-out period",
              ok=bool(state.backtest) and len(state.backtest["versions"]) == 2,
              detail=", ".join(f"v{v['version']} cost {v['total']['figures']['cost']['value']:,.0f}"
                               for v in (state.backtest or {}).get("versions", [])) or "no backtest"),
        Check(name="every prediction is logged once", ok=c["logged"] == c["logged_distinct"] == c["served"],
              detail=f"{c['logged']:,} logged, {c['logged_distinct']:,} distinct, {c['served']:,} answered"),
        Check(name="no nightly check before the drift switch put an input over its act threshold or asked to retrain",
              ok=bool(same) and not loud,
              detail=(f"{len(same)} check(s) of the same world: " + "; ".join(
                  f"{r.as_of:%m-%d} {r.status}" for r in same) if not loud else
                  "; ".join(f"{r.as_of:%m-%d}: {', '.join(r.reasons[:3])}" for r in loud))),
        Check(name="the first nightly check after the switch asked for retraining", ok=bool(drifted) and
              drifted[0].retrain, detail=(f"as of {drifted[0].as_of:%Y-%m-%d}: {daily_row(drifted[0]).verdict}; "
                                          f"{daily_row(drifted[0]).moved}") if drifted else "no check after it"),
        Check(name="the retraining run's drift check asked for retraining", ok=retrain,
              detail="; ".join((state.drift_report or {}).get("reasons", [])) or "no drift report"),
        Check(name="the run retrained, promoted, reloaded and validated", ok=path == ["success"] * 5,
              detail=" -> ".join(f"{t or '-'}" for t in path)),
        Check(name="the champion changed, visible in the served model_version",
              ok=after is not None and after != before and answered_by_new > 0,
              detail=f"version {before} -> {after}; {answered_by_new:,} answers carried model_version {after}"),
    ]


# a model version's live predictions of a period, each with its label as known at %(labels_at)s
_REALISED_SQL = f"""
    SELECT p.transaction_id::text, p.fraud_probability, {matured_sql()}, p.features_degraded
    FROM predictions p JOIN transactions t USING (transaction_id) LEFT JOIN LATERAL ({known_label_sql()}) k ON true
    WHERE {ANSWERED} AND p.model_version = %(version)s AND t.event_time >= %(start)s
      AND (%(stop)s::timestamptz IS NULL OR t.event_time < %(stop)s)"""


def realised_auc(settings: Settings, state: Any) -> list[dict[str, Any]]:
    """The champion's realised AUC on live traffic (the same world, drifted before the switch, after it), with the
    labels known when the traffic ended: an unreported fraud counts as legitimate (app.labels.matured), so the
    last steps, whose labels had not all come, read low; the frauds the simulator knows are beside. The AUC and its
    frauds are of the model's own answers (monitoring.accuracy: default-feature answers are counted, left out)."""
    from monitoring.accuracy import realised  # monitoring's one AUC rule; no floor on frauds, no interval here

    line, before, after = state.line, state.first_champion.get("version"), state.new_champion
    switch, end = state.switch_event_time, state.replay.event_time
    true_frauds = set(state.labels.frauds["transaction_id"])
    segments = [("same world", before, line.live_start, line.drift_at),
                ("drifted, before the switch", before, line.drift_at, switch),
                ("drifted, after the switch", after, switch, None)]
    out = []
    with db.connection(settings) as conn, conn.cursor() as cur:
        for name, version, start, stop in segments:
            if version is None or start is None:
                continue
            cur.execute(_REALISED_SQL, {"version": str(version), "start": start, "stop": stop, "labels_at": end,
                         "delay": settings.label_delay_days})
            rows = cur.fetchall()
            own = [r for r in rows if not r[3]]
            scores = np.array([r[1] for r in own], dtype=float)
            labels = np.array([r[2] for r in own], dtype=float)
            auc = realised(str(version), "champion", labels, scores, baseline_auc=None, min_positives=1,
                           max_drop=settings.accuracy_max_drop, resamples=0)
            out.append({"segment": name, "model_version": str(version), "rows": len(rows), "frauds": auc.positives,
                        "true_frauds": sum(r[0] in true_frauds for r in own), "roc_auc": auc.roc_auc,
                        "degraded": len(rows) - len(own)})
    return out


def label_days(settings: Settings, state: Any) -> list[dict[str, Any]]:
    """Per day of live traffic: its true frauds (the simulator's), and how many were known as fraud when the
    traffic ended."""
    frauds = state.labels.frauds
    if frauds.empty:
        return []
    with db.connection(settings) as conn, conn.cursor() as cur:
        known = known_at(cur, frauds["transaction_id"].tolist(), state.replay.event_time, settings.label_delay_days)
    fraud_known = set(known.loc[known["is_fraud"] == 1, "transaction_id"])
    days = frauds.assign(day=frauds["timestamp"].dt.strftime("%Y-%m-%d"),
                         known=frauds["transaction_id"].isin(fraud_known))
    return [{"day": day, "frauds": len(rows), "known": int(rows["known"].sum()),
             "share": float(rows["known"].mean())} for day, rows in days.groupby("day")]


def label_figures(settings: Settings, state: Any) -> dict[str, Any]:
    config = state.labels.config
    with db.connection(settings) as conn, conn.cursor() as cur:
        cur.execute("SELECT source, count(*) FROM labels WHERE label_id = ANY(%s::uuid[]) GROUP BY source "
                    "ORDER BY source", (state.labels.sent_ids,))
        by_source = {str(source): int(n) for source, n in cur.fetchall()}
    return {"time_scale": config.time_scale, "chargeback_limit_days": config.chargeback_limit_days,
            "analyst_median_hours": config.analyst_median_hours, "dispute_median_days": config.dispute_median_days,
            "chargeback_median_days": config.chargeback_median_days, "by_source": by_source,
            "days": label_days(settings, state)}


def serving_figures(replay: Any) -> dict[str, float]:
    single = np.array(replay.single_latencies_ms or [np.nan])
    batch = np.array(replay.batch_latencies_ms or [np.nan])
    fresh = np.array(replay.freshness_s or [np.nan])
    return {
        "requests": len(replay.single_latencies_ms) + len(replay.batch_latencies_ms),
        "predict_requests": len(replay.single_latencies_ms),
        "batch_requests": len(replay.batch_latencies_ms),
        "batch_rows": replay.batch_rows,
        "predictions": replay.answered,
        "errors": replay.failed,
        "degraded": replay.degraded,
        "p50_ms": float(np.nanpercentile(single, 50)),
        "p95_ms": float(np.nanpercentile(single, 95)),
        "p99_ms": float(np.nanpercentile(single, 99)),
        "batch_p50_ms": float(np.nanpercentile(batch, 50)),
        "batch_p95_ms": float(np.nanpercentile(batch, 95)),
        "predictions_per_s": replay.answered / replay.seconds if replay.seconds else 0.0,
        "freshness_p50_s": float(np.nanpercentile(fresh, 50)),
        "freshness_p95_s": float(np.nanpercentile(fresh, 95)),
        **{f"outcome_{o}": float(replay.outcomes.get(o, 0)) for o in ("approve", "review", "decline")},
        "unexplained": float(replay.unexplained),
    }


def links(settings: Settings) -> dict[str, str]:
    monitoring = f"http://{settings.monitoring_host}"
    return {
        "Ray dashboard": settings.ray_dashboard_url,
        "MLflow UI": settings.mlflow_tracking_uri,
        "Serve API docs": f"http://{settings.ray_host}:{settings.serve_port}/docs",
        "Prometheus": f"{monitoring}:{settings.prometheus_port}",
        "Alertmanager": f"{monitoring}:{settings.alertmanager_port}",
        "Airflow UI": settings.airflow_url,
    }


# --- plots ---------------------------------------------------------------------------------------------------
def final_check(settings: Settings, state: Any) -> MonitoringReport:
    """A check as of the end of the traffic, for the report only (not stored, so Serve's /metrics keeps publishing
    the last stored one): the traffic since the run was triggered against the new champion, and every live day's
    accuracy, estimated and (once mature) realised, with the labels known by then."""
    from monitoring.run import compute

    line = state.line
    end = state.replay.event_time or line.trigger_at
    after = max((end - line.trigger_at).total_seconds() / 86400, 0.01)
    return compute(settings.model_copy(update={"drift_window_days": after}), end)


def drift_history(settings: Settings, final: MonitoringReport, path: Path) -> Path:
    """The stored checks (the nightly ones and the retraining run's) and the final one, plotted over time."""
    from app import reports
    from monitoring.plots import drift_over_time

    history = sorted([*reports.history(settings), final], key=lambda r: r.as_of)
    return drift_over_time(history, path, settings.drift_psi_warn, settings.drift_psi_act)


def maturity_figures(report: MonitoringReport, time_scale: float) -> dict[str, Any] | None:
    """The label maturity curve in a few numbers: days until a share of the frauds is known, on the demo's clock
    and on a real one (the delays ran ``time_scale`` of real ones)."""
    curve = report.maturity
    if curve is None:
        return None
    days = {share: curve.days_to(share) for share in MATURITY_SHARES}
    return {"source": curve.source, "frauds": curve.frauds, "horizon_days": curve.horizon_days,
            "days_to": {f"{share:.0%}": d for share, d in days.items()},
            # the rule's days are the label maturity's, never scaled: no real-clock reading of them
            "real_days_to": {f"{share:.0%}": None if d is None or curve.source == "rule" else d / time_scale
                             for share, d in days.items()}}


def cohort_rows(report: MonitoringReport) -> list[dict[str, Any]]:
    """Per live day and model version (the answers clients got): maturity, realised and estimated accuracy."""
    out = []
    for c in sorted((c for c in report.cohorts if c.variant == "champion"), key=lambda c: (c.day, c.model_version)):
        out.append({"day": c.day.isoformat(), "model_version": c.model_version, "rows": c.rows,
                    "maturity": c.maturity, "status": c.status,
                    "known_frauds": None if c.realised is None else c.realised.frauds,
                    "realised_auc": None if c.realised is None else c.realised.roc_auc,
                    "realised_low": None if c.realised is None else c.realised.auc_low,
                    "realised_high": None if c.realised is None else c.realised.auc_high,
                    "estimated_auc": None if c.estimated is None else c.estimated.roc_auc,
                    "expected_frauds": None if c.estimated is None else c.estimated.frauds})
    return out


def traffic_plot(state: Any, path: Path) -> Path:
    """Live predictions per replay step by the model version that answered, with the drift and the switch."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = state.replay_chunks
    versions = sorted({v for _, counts in steps for v in counts}, key=lambda v: (len(v), v))
    times = [t for t, _ in steps]
    fig, ax = plt.subplots(figsize=(10, 4))
    previous: dict[str, int] = {}
    per_version = {v: [] for v in versions}
    for _, counts in steps:
        for v in versions:
            per_version[v].append(counts.get(v, 0) - previous.get(v, 0))
        previous = counts
    ax.stackplot(times, *[per_version[v] for v in versions], labels=[f"model_version {v}" for v in versions],
                 step="pre", alpha=0.8)
    ax.axvline(state.line.drift_at, color="red", linestyle="--", label="drift on")
    if state.switch_event_time:
        ax.axvline(state.switch_event_time, color="black", linestyle=":", label="Serve reloaded the new champion")
    ax.set_ylabel("predictions per step")
    ax.set_xlabel("event time")
    ax.set_title("Live traffic scored over HTTP, by the model version that answered")
    ax.legend(fontsize=8, loc="upper left")
    fig.autofmt_xdate()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# --- the report ----------------------------------------------------------------------------------------------
def build(settings: Settings, state: Any) -> DemoReport:
    from app import reports
    from monitoring.plots import accuracy_by_cohort

    run_dir = state.run_dir
    c = counts(settings, state)
    final = final_check(settings, state)
    plots = [drift_history(settings, final, run_dir / "drift.png"), traffic_plot(state, run_dir / "live_traffic.png"),
             accuracy_by_cohort(final, run_dir / "accuracy.png")]
    try:
        from monitoring.snapshot import render

        minutes = max(5, int(sum(p.seconds for p in state.phases) // 60) + 2)
        render(settings, minutes, run_dir / "dashboard.png")
        plots.append(run_dir / "dashboard.png")
    except Exception as error:  # the dashboard is a picture of Prometheus; its absence loses no figure
        (run_dir / "logs" / "dashboard.log").write_text(f"{type(error).__name__}: {error}\n")
    plots += sorted(run_dir.glob("champion-v*/*.png")) + sorted(run_dir.glob("backtest/*.png"))
    judged = next((r for r in reports.history(settings) if r.as_of == state.line.as_of), None)
    drift = sorted(([d.model_dump() for d in judged.drift if d.psi is not None and d.kind != "score"]
                    if judged else []), key=lambda d: -d["psi"])[:5]
    return DemoReport(
        run=run_dir.name, plan=state.plan.model_dump(), timeline=state.line.model_dump(),
        phases=[{"name": p.name, "seconds": round(p.seconds, 1), "figure": p.figure} for p in state.phases],
        counts=c, checks=checks(c, state), champion_before=state.first_champion, champion_after=state.new_champion,
        comparison=state.comparison, realised_auc=realised_auc(settings, state),
        labels=label_figures(settings, state), daily=[daily_row(r) for r in state.daily],
        maturity=maturity_figures(final, state.labels.config.time_scale), cohorts=cohort_rows(final), drift=drift,
        drift_reasons=(state.drift_report or {}).get("reasons", []), serving=serving_figures(state.replay),
        examples=state.replay.examples, backtest=state.backtest,
        airflow_run={"run_id": state.dag_run_id, "state": state.dag_state,
                     "tasks": [t.model_dump(mode="json") for t in state.dag_tasks]},
        links=links(settings), plots=[str(p.relative_to(run_dir)) for p in plots])


def markdown(r: DemoReport) -> str:
    c, s = r.counts, r.serving
    out = [f"# riskray demo `{r.run}` ({r.plan['name']})", ""]
    verdict = "every check holds" if r.passed else "**some checks FAILED**"
    out += [f"{sum(p['seconds'] for p in r.phases) / 60:.1f} minutes; {verdict}.", "", "## Phases", "",
            "| phase | took | what |", "| --- | ---: | --- |"]
    out += [f"| {p['name']} | {p['seconds']:.0f} s | {p['figure']} |" for p in r.phases]
    out += ["", "## Counts at every stage", "", "| stage | count |", "| --- | ---: |"]
    for label, key in (("produced (history + live)", "produced"), ("in Kafka", "in_kafka"), ("in the DLQ", "in_dlq"),
                       ("in `transactions`", "transactions"), ("late (kept raw, not tiled)", "late"),
                       ("counted in the tiles", "tiled"), ("tile rows written", "tile_rows"),
                       ("live predictions served", "served"), ("failed requests", "failed"),
                       ("predictions logged", "logged"), ("label events sent", "labels_sent"),
                       ("label events in Kafka", "labels_in_kafka"), ("label events stored", "labels_stored")):
        out.append(f"| {label} | {c[key]:,} |")
    out += ["", "| check | holds | detail |", "| --- | --- | --- |"]
    out += [f"| {x.name} | {'yes' if x.ok else '**NO**'} | {x.detail} |" for x in r.checks]
    out += ["", "## Champion before and after", ""]
    if r.comparison:
        cmp = r.comparison
        out += [f"Held out, the same rows for both ({cmp['since'][:16]} .. {cmp['until'][:16]}, {cmp['rows']:,} "
                f"transactions, {cmp['positives']} frauds):", "",
                "| model | ROC AUC | average precision | card precision@100 |", "| --- | ---: | ---: | ---: |"]
        for role in ("champion", "challenger"):
            m = cmp.get(role)
            if m:
                cp = m.get("card_precision_at_100")
                out.append(f"| {role} v{m['version']} | {m['roc_auc']:.4f} | {m['average_precision']:.4f} | "
                           f"{'-' if cp is None else f'{cp:.3f}'} |")
        out += ["", f"Verdict: {cmp['reason']}."]
    out += ["", "Realised on live traffic (predictions joined with the labels known when the traffic ended; a fraud "
            "not reported by then counts as legitimate; an answer with default features, the store over its read "
            "budget, scored the card as if it had no history; frauds and AUC are of the other answers, the model's "
            "own):", "",
            "| traffic | model | predictions | with default features | frauds known (of true) | ROC AUC |",
            "| --- | --- | ---: | ---: | ---: | ---: |"]
    for a in r.realised_auc:
        auc = "-" if a["roc_auc"] is None else f"{a['roc_auc']:.4f}"
        degraded = a.get("degraded", 0) / a["rows"] if a["rows"] else 0.0
        out.append(f"| {a['segment']} | v{a['model_version']} | {a['rows']:,} | {degraded:.0%} | {a['frauds']} "
                   f"({a['true_frauds']}) | {auc} |")
    out += _backtest_section(r)
    out += _label_section(r)
    out += _daily_section(r)
    out += _accuracy_section(r)
    out += ["", "## Drift (the retraining run's check)", "", "| input | PSI | KS | status |",
            "| --- | ---: | ---: | --- |"]
    for d in r.drift:
        ks = "-" if d["ks"] is None else f"{d['ks']:.3f}"
        out.append(f"| {d['name']} | {d['psi']:.3f} | {ks} | {d['status']} |")
    out += ["", "Reasons: " + ("; ".join(r.drift_reasons) or "-"), "", "![drift over time](drift.png)", "",
            "![live traffic by model version](live_traffic.png)", ""]
    out += ["## Serving", "", "| figure | value |", "| --- | ---: |",
            f"| requests (/predict + /predict/batch) | {s['predict_requests']:,.0f} + {s['batch_requests']:,.0f} |",
            f"| predictions (of them in batches) | {s['predictions']:,.0f} ({s['batch_rows']:,.0f}) |",
            f"| errors | {s['errors']:,.0f} |", f"| answered with default features | {s['degraded']:,.0f} |",
            f"| /predict latency p50 / p95 / p99 | {s['p50_ms']:.1f} / {s['p95_ms']:.1f} / {s['p99_ms']:.1f} ms |",
            f"| /predict/batch latency p50 / p95 | {s['batch_p50_ms']:.1f} / {s['batch_p95_ms']:.1f} ms |",
            f"| predictions/s over the replay (it waits for the store each step) | {s['predictions_per_s']:,.0f} |",
            f"| feature freshness p50 / p95 (produced -> tile written) | {s['freshness_p50_s']:.1f} / "
            f"{s['freshness_p95_s']:.1f} s |",
            f"| outcomes approve / review / decline | {s['outcome_approve']:,.0f} / {s['outcome_review']:,.0f} / "
            f"{s['outcome_decline']:,.0f} |", ""]
    for outcome, example in r.examples.items():
        reasons = "; ".join(reason["text"] for reason in example.get("reasons") or []) or "-"
        out.append(f"- the first {outcome} answered (v{example['model_version']}, probability "
                   f"{example['fraud_probability']:.3f}): {reasons}")
    out += [""] if r.examples else []
    a = r.airflow_run
    out += [f"## The Airflow run `{a['run_id']}`: {a['state']}", "", "| task | state | took |", "| --- | --- | ---: |"]
    for t in a["tasks"]:
        took = "-" if t["duration"] is None else f"{t['duration']:.0f} s"
        out.append(f"| {t['task_id']} | {t['state']} | {took} |")
    out += ["", "## Links", ""] + [f"- {name}: {url}" for name, url in r.links.items()]
    out += ["", "## Plots", ""] + [f"- [{p}]({p})" for p in r.plots]
    return "\n".join(out) + "\n"


def _backtest_section(r: DemoReport) -> list[str]:
    b = r.backtest
    if not b:
        return []
    out = ["", f"Backtest on the same held-out period (`riskray backtest`: each version's outcomes by its own "
           f"thresholds, labels as known at {b['labels_at'][:16]}, {b['immature_share']:.0%} of the rows younger "
           "than the label maturity; totals with 95 % bootstrap intervals; [table](backtest/backtest.md)):", "",
           "| model | reviews | declines | frauds caught (of known) | missed | saved | cost | card precision at "
           "capacity |", "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for v in b["versions"]:
        f = {k: x["value"] for k, x in v["total"]["figures"].items()}
        cost = v["total"]["figures"]["cost"]
        out.append(f"| v{v['version']} | {f['reviews']:,.0f} | {f['declines']:,.0f} | {f['caught']:,.0f} "
                   f"({f['frauds']:,.0f}) | {f['missed']:,.0f} | {f['saved']:,.0f} | {f['cost']:,.0f} "
                   f"({cost['low']:,.0f}–{cost['high']:,.0f}) | {f['card_precision']:.2f} |")
    return [*out, "", "![backtest](backtest/backtest.png)"]


def _label_section(r: DemoReport) -> list[str]:
    c, lab = r.counts, r.labels
    scale = lab["time_scale"]

    def scaled(days: float) -> str:
        minutes = days * scale * 24 * 60
        return f"{minutes:.0f} min" if minutes < 120 else f"{minutes / 60:.1f} h"

    sources = ", ".join(f"{name} {n:,}" for name, n in lab["by_source"].items()) or "none"
    out = ["", "## Labels: late, as events", "",
           f"The live traffic carried no label. Its labels came as {c['labels_sent']:,} label events ({sources}), "
           f"each sent when the replay's event time reached its report time (not yet due when the traffic ended: "
           f"{c['labels_held']:,}). The delay model's delays ran x{scale:.5f} (1/{1 / scale:.0f}) of real ones: the "
           f"{lab['chargeback_limit_days']:.0f}-day chargeback limit took {scaled(lab['chargeback_limit_days'])} of "
           f"event time, an analyst's {lab['analyst_median_hours']:.0f}-hour median "
           f"{scaled(lab['analyst_median_hours'] / 24)}, a dispute's {lab['dispute_median_days']:.0f}-day median "
           f"{scaled(lab['dispute_median_days'])}, a chargeback's {lab['chargeback_median_days']:.0f}-day median "
           f"{scaled(lab['chargeback_median_days'])}. History carried its labels in the rows.", "",
           "| live day | frauds (the simulator's truth) | known as fraud at the end | share |",
           "| --- | ---: | ---: | ---: |"]
    out += [f"| {d['day']} | {d['frauds']:,} | {d['known']:,} | {d['share']:.0%} |" for d in lab["days"]]
    return out


def _daily_section(r: DemoReport) -> list[str]:
    drift_at = r.timeline["drift_at"]
    out = ["", "## The nightly checks", "",
           "After each live day, the check the nightly DAG runs (`riskray drift`, its drift window that one day; "
           "calendar inputs need whole weeks and are left out, as are inputs whose windows the training history "
           "had not filled). Before the drift switch they must stay quiet; the first after it must ask to "
           "retrain.", "",
           "| as of | world | model | predictions | verdict | inputs | champion's accuracy |",
           "| --- | --- | --- | ---: | --- | --- | --- |"]
    for d in r.daily:
        world = "same" if d.as_of <= drift_at else "drifted"
        out.append(f"| {d.as_of:%Y-%m-%d} | {world} | v{d.model_version} | {d.predictions:,} | {d.verdict} | "
                   f"{d.moved} | {d.accuracy} |")
    return out


def _accuracy_section(r: DemoReport) -> list[str]:
    out = ["", "## Accuracy per day, before and after the labels", ""]
    m = r.maturity
    if m is not None and m["source"] == "rule":
        out += ["The label maturity curve: too few label events of transactions old enough to measure it, so the "
                "maturity rule (nothing known before the label maturity, everything after). A day under the minimum "
                "maturity gives no realised number, only the estimate from the calibrated scores.", ""]
    elif m is not None:
        shares = ", ".join(f"{share} within {_days(d)} ({_days(m['real_days_to'][share])} on a real clock)"
                           for share, d in m["days_to"].items() if d is not None)
        out += [f"The label maturity curve ({m['source']}, {m['frauds']:,} frauds, transactions at least "
                f"{_days(m['horizon_days'])} old): of the frauds eventually reported, {shares}. A day's maturity is "
                "the curve at its age; a day under the minimum maturity gives no realised number, only the "
                "estimate from the calibrated scores.", ""]
    out += ["| day | model | predictions | maturity | realised AUC [95 %] (known frauds) | estimated AUC (expected "
            "frauds) |", "| --- | --- | ---: | ---: | --- | --- |"]
    for c in r.cohorts:
        realised = (c["status"] if c["realised_auc"] is None else
                    f"{_interval(c['realised_auc'], c['realised_low'], c['realised_high'])} "
                    f"({c['known_frauds']:.0f})")
        estimated = "-" if c["estimated_auc"] is None else f"{c['estimated_auc']:.3f} ({c['expected_frauds']:.1f})"
        out.append(f"| {c['day']} | v{c['model_version']} | {c['rows']:,} | {c['maturity']:.0%} | {realised} | "
                   f"{estimated} |")
    out += ["", "![maturity curve and accuracy per day](accuracy.png)"]
    return out


def _days(days: float | None) -> str:
    if days is None:
        return "-"
    return f"{days * 24:.1f} h" if days < 2 else f"{days:.1f} days"


def write(settings: Settings, state: Any, console: Console) -> Path:
    report = build(settings, state)
    run_dir = state.run_dir
    (run_dir / "report.json").write_text(report.model_dump_json(indent=1))
    path = run_dir / "report.md"
    path.write_text(markdown(report))
    print_summary(report, console)
    console.print(f"      report: {path}")
    return path


def print_summary(r: DemoReport, console: Console) -> None:
    table = Table("check", "holds", "detail", title=f"riskray demo {r.run}")
    for c in r.checks:
        table.add_row(c.name, "[green]yes[/green]" if c.ok else "[red]NO[/red]", c.detail)
    console.print(table)
    s = r.serving
    console.print(f"serving: {s['predictions']:,.0f} predictions, {s['errors']:,.0f} errors, /predict p50/p95/p99 "
                  f"{s['p50_ms']:.1f}/{s['p95_ms']:.1f}/{s['p99_ms']:.1f} ms; freshness p50/p95 "
                  f"{s['freshness_p50_s']:.1f}/{s['freshness_p95_s']:.1f} s")
    for name, url in r.links.items():
        console.print(f"{name:<15} {url}")
