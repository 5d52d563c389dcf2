"""One drift run (`riskray drift`, also as a Ray job, the retraining DAG's first step):

1. the champion and its drift reference from the registry (saved with the model at training);
2. the model inputs served in the drift window (event times in ``[as_of - drift_window_days, as_of)``), as the
   prediction log recorded them, compared with the reference (``monitoring.drift``);
3. realised accuracy per served model version on predictions whose labels have matured: event times in
   ``[as_of - label_delay - accuracy_window_days, as_of - label_delay)``, joined to ``transactions`` for the label;
4. the verdict (retrain when a feature is over its action threshold or the champion's AUC dropped), stored as a
   ``monitoring_reports`` row that Serve's /metrics renders.

Event times, not prediction times, pick the rows: a replayed or simulated world then gives the same report
whenever it is run (``--as-of``)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np

from app import db, reports
from app.config import Settings
from app.drift_reference import DriftReference
from app.labels import known_label_sql, labels_cutoff, matured_sql, maturity_days
from app.model_inputs import CATEGORICAL_FEATURES, NUMERIC_FEATURES
from app.prediction_service import ANSWERED
from app.registry import CHAMPION, Registry, RegistryError
from app.reports import LEFT_OUT, NOT_ENOUGH, MonitoringReport, VersionAccuracy
from monitoring import accuracy, drift

# one row per transaction (a retried request is logged twice); shadow rows repeat their champion row's inputs
_SERVED_SQL = f"""
    SELECT DISTINCT ON (coalesce(transaction_id::text, prediction_id::text))
           numeric_inputs, categorical_inputs, fraud_probability, model_version, event_time
    FROM predictions
    WHERE event_time >= %s AND event_time < %s AND {ANSWERED} AND feature_set = %s
      AND numeric_inputs IS NOT NULL
    ORDER BY coalesce(transaction_id::text, prediction_id::text), prediction_id
"""
# each served transaction's label as known at the report (app.labels: matured, unreported = legitimate)
_LABELLED_SQL = f"""
    SELECT DISTINCT ON (p.model_version, p.variant, p.transaction_id)
           p.model_version, p.variant, p.fraud_probability, {matured_sql()}
    FROM predictions p JOIN transactions t ON t.transaction_id = p.transaction_id
    LEFT JOIN LATERAL ({known_label_sql()}) k ON true
    WHERE t.event_time >= %(start)s AND t.event_time < %(end)s
    ORDER BY p.model_version, p.variant, p.transaction_id, p.prediction_id
"""


def served_inputs(settings: Settings, start: datetime, end: datetime, feature_set: str
                  ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], np.ndarray]:
    """The logged model inputs of the window as columns, the scores by answering model version, and the rows'
    event times (datetime64 UTC)."""
    with db.connection(settings) as conn, conn.cursor() as cur:
        cur.execute(_SERVED_SQL, (start, end, feature_set))
        rows = cur.fetchall()
    numeric = np.array([r[0] for r in rows], dtype=np.float64).reshape(len(rows), len(NUMERIC_FEATURES))
    inputs: dict[str, np.ndarray] = {name: numeric[:, i] for i, name in enumerate(NUMERIC_FEATURES)}
    for i, name in enumerate(CATEGORICAL_FEATURES):
        inputs[name] = np.array([r[1][i] for r in rows], dtype=object)
    versions = np.array([r[3] for r in rows], dtype=object)
    scores = np.array([r[2] for r in rows], dtype=np.float64)
    times = np.array([r[4].astimezone(UTC).replace(tzinfo=None) for r in rows], dtype="datetime64[us]")
    return inputs, {str(v): scores[versions == v] for v in np.unique(versions)}, times


def labelled_predictions(settings: Settings, start: datetime, end: datetime
                         ) -> dict[tuple[str, str], tuple[np.ndarray, np.ndarray]]:
    """(model version, variant) -> (labels, scores) of the predictions of transactions in [start, end), labelled as
    known the label maturity after ``end`` (as training reads a period's labels)."""
    with db.connection(settings) as conn, conn.cursor() as cur:
        cur.execute(_LABELLED_SQL, {"start": start, "end": end, "labels_at": labels_cutoff(settings, end),
                                    "delay": settings.label_delay_days})
        rows = cur.fetchall()
    out: dict[tuple[str, str], tuple[list[int], list[float]]] = {}
    for version, variant, score, label in rows:
        labels, scores = out.setdefault((version, variant), ([], []))
        labels.append(label)
        scores.append(score)
    return {key: (np.array(labels), np.array(scores)) for key, (labels, scores) in out.items()}


def run(settings: Settings, as_of: datetime | None = None) -> MonitoringReport:
    """Compute the report of ``as_of`` (default now) and store it."""
    as_of = (as_of or datetime.now(UTC)).astimezone(UTC)
    report = compute(settings, as_of)
    reports.save(settings, report)
    return report


def compute(settings: Settings, as_of: datetime) -> MonitoringReport:
    window_start = as_of - timedelta(days=settings.drift_window_days)
    accuracy_end = as_of - timedelta(days=maturity_days(settings))  # its labels read at as_of
    accuracy_start = accuracy_end - timedelta(days=settings.accuracy_window_days)
    with Registry(settings) as registry:
        champion = registry.by_alias(CHAMPION)
        reference: DriftReference | None = None
        baselines: dict[str, float | None] = {}
        if champion is not None:
            reference = registry.drift_reference(champion)
        labelled = labelled_predictions(settings, accuracy_start, accuracy_end)
        for version, _ in labelled:
            if version not in baselines:
                baselines[version] = _training_auc(registry, version)
    thresholds = drift.Thresholds(warn=settings.drift_psi_warn, act=settings.drift_psi_act)
    results: list[reports.FeatureDrift] = []
    served = 0
    if reference is not None:
        inputs, scores, times = served_inputs(settings, window_start, as_of, reference.feature_set)
        served = len(times)
        results = drift.compare(reference, inputs, scores.get(champion.version) if champion else None, thresholds,
                                times=times, window_days=settings.drift_window_days)
    accuracies = [
        accuracy.realised(version, variant, labels, scores, baselines.get(version), settings.accuracy_min_positives,
                          settings.accuracy_max_drop, settings.accuracy_bootstrap)
        for (version, variant), (labels, scores) in sorted(labelled.items())]
    return _verdict(settings, as_of, window_start, accuracy_start, accuracy_end, champion.version if champion else None,
                    reference, served, results, accuracies)


def _training_auc(registry: Registry, version: str) -> float | None:
    try:
        return registry.run_metrics(registry.version(version)).get("test_roc_auc")
    except RegistryError:  # a version deleted since it served: no baseline to compare with
        return None


def _verdict(settings: Settings, as_of: datetime, window_start: datetime, accuracy_start: datetime,
             accuracy_end: datetime, champion: str | None, reference: DriftReference | None, served: int,
             results: list[reports.FeatureDrift], accuracies: list[VersionAccuracy]) -> MonitoringReport:
    left_out = [r for r in results if r.status == LEFT_OUT]
    inputs = [r for r in results if r.kind != "score" and r.status != LEFT_OUT]  # the score's is reported only
    acted = [r for r in inputs if r.status == "act"]
    champion_accuracy = [a for a in accuracies if a.model_version == champion and a.variant == "champion"]
    dropped = [a for a in champion_accuracy if a.status == "drop"]
    acted.sort(key=lambda r: -(r.importance or 0.0))  # what matters most to the model first
    reasons = [f"{r.name}: PSI {r.psi:.3f} over {settings.drift_psi_act}"
               + ("" if r.importance is None else f" ({r.importance:.1%} of the model's gain)") for r in acted]
    if acted and any(r.importance is not None for r in acted):
        reasons.append(f"the inputs over the threshold carry {sum(r.importance or 0.0 for r in acted):.0%} of the "
                       "model's gain")
    reasons += [a.reason for a in dropped]
    judged = [a for a in champion_accuracy if a.status == "ok" and a.roc_auc is not None and a.baseline_auc]
    if acted and judged and not dropped:
        reasons.append(f"realised AUC {judged[0].roc_auc:.4f} did not move with them (within "
                       f"{settings.accuracy_max_drop:.0%} of the training AUC)")
    if champion is None:
        status: reports.Status = NOT_ENOUGH
        reasons = ["no champion: nothing to compare with"]
    elif not inputs or all(r.status == NOT_ENOUGH for r in inputs):
        status = NOT_ENOUGH
        reasons += [f"{served} predictions in the drift window, fewer than the "
                    f"{min((r.min_rows for r in inputs), default=0)} a PSI needs"]
    else:
        status = "act" if acted else "warn" if any(r.status == "warn" for r in inputs) else "ok"
    by_reason: dict[str, list[str]] = {}
    for r in left_out:
        by_reason.setdefault(r.reason, []).append(r.name)
    reasons += [f"left out: {', '.join(names)}: {why}" for why, names in by_reason.items()]
    if not champion_accuracy:
        reasons.append("realised AUC: no predictions with matured labels in the window")
    elif champion_accuracy[0].status == NOT_ENOUGH:
        reasons.append(f"realised AUC: {champion_accuracy[0].reason}")
    retrain = bool(acted or dropped)
    if not retrain and status != NOT_ENOUGH:
        reasons.insert(0, "no feature over its action threshold and no AUC drop")
    return MonitoringReport(as_of=as_of, window_start=window_start, window_end=as_of, accuracy_start=accuracy_start,
                            accuracy_end=accuracy_end, model_version=champion,
                            feature_set=reference.feature_set if reference else None, predictions=served,
                            status=status, retrain=retrain, reasons=reasons, drift=results, accuracy=accuracies)
