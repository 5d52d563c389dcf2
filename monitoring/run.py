"""One drift run (`riskray drift`, also as a Ray job, the retraining DAG's first step):

1. the champion and its drift reference from the registry (saved with the model at training);
2. the model inputs served in the drift window (event times in ``[as_of - drift_window_days, as_of)``), as the
   prediction log recorded them, compared with the reference (``monitoring.drift``);
3. the label maturity curve, measured from the label events (``monitoring.maturity``);
4. accuracy per prediction cohort (a day of one served model version) over ``[as_of - accuracy_window_days,
   as_of)``, with each transaction's label as known at ``as_of``: realised where the cohort is mature, estimated
   from the calibrated scores everywhere (``monitoring.accuracy``); per version, its mature cohorts pooled and the
   estimate over the drift window;
5. the verdict (retrain when an input judged fairly is over its action threshold, or the champion's matured or
   estimated AUC dropped), stored as a ``monitoring_reports`` row that Serve's /metrics renders.

Event times, not prediction times, pick the rows: a replayed or simulated world then gives the same report
whenever it is run (``--as-of``)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta

import numpy as np

from app import db, reports
from app.config import Settings
from app.drift_reference import DriftReference
from app.labels import known_label_sql, matured_sql, maturity_days
from app.model_inputs import CATEGORICAL_FEATURES, NUMERIC_FEATURES
from app.prediction_service import ANSWERED
from app.registry import CHAMPION, Registry, RegistryError
from app.reports import LEFT_OUT, NOT_ENOUGH, MaturityCurve, MonitoringReport, VersionAccuracy, VersionEstimate
from monitoring import accuracy, drift, maturity

# one row per transaction (a retried request is logged twice: its first answer); shadow rows repeat their champion
# row's inputs. Answers with default features (the store over its budget) are then left out, in Python: their
# inputs describe a serving fault, not the world, and retraining cannot fix a slow store (a busy afternoon of the
# demo put 13 % of a same-world day's answers on defaults and read PSI 1.0 on nine inputs); they are counted apart.
_SERVED_SQL = f"""
    SELECT DISTINCT ON (coalesce(transaction_id::text, prediction_id::text))
           numeric_inputs, categorical_inputs, fraud_probability, model_version, event_time, features_degraded
    FROM predictions
    WHERE event_time >= %s AND event_time < %s AND {ANSWERED} AND feature_set = %s
      AND numeric_inputs IS NOT NULL
    ORDER BY coalesce(transaction_id::text, prediction_id::text), prediction_id
"""
# each served transaction's label as known at the report (app.labels: matured, unreported = legitimate)
_LABELLED_SQL = f"""
    SELECT DISTINCT ON (p.model_version, p.variant, p.transaction_id)
           p.model_version, p.variant, p.fraud_probability, {matured_sql()}, t.event_time, p.features_degraded
    FROM predictions p JOIN transactions t ON t.transaction_id = p.transaction_id
    LEFT JOIN LATERAL ({known_label_sql()}) k ON true
    WHERE t.event_time >= %(start)s AND t.event_time < %(end)s
    ORDER BY p.model_version, p.variant, p.transaction_id, p.prediction_id
"""
# days from each transaction to its first fraud report (label events only), of the transactions of [start, end)
# that are frauds as known at the report (a dispute found to be the cardholder's own is not a fraud)
_FIRST_FRAUD_REPORT_SQL = f"""
    SELECT extract(epoch FROM f.first_report - t.event_time) / 86400.0
    FROM (SELECT l.transaction_id, min(l.reported_at) AS first_report FROM labels l
          WHERE l.is_fraud = 1 AND l.reported_at <= %(labels_at)s GROUP BY l.transaction_id) f
    JOIN transactions t ON t.transaction_id = f.transaction_id
    CROSS JOIN LATERAL ({known_label_sql()}) k
    WHERE t.event_time >= %(start)s AND t.event_time < %(end)s AND k.is_fraud = 1
"""


@dataclass(frozen=True)
class Served:
    """The window's answers with store features: the logged model inputs as columns, the scores by answering model
    version, the rows' event times (datetime64 UTC); and how many answers had default features, of how many."""

    inputs: dict[str, np.ndarray]
    scores: dict[str, np.ndarray]
    times: np.ndarray
    degraded: int
    answered: int


def served_inputs(settings: Settings, start: datetime, end: datetime, feature_set: str) -> Served:
    with db.connection(settings) as conn, conn.cursor() as cur:
        cur.execute(_SERVED_SQL, (start, end, feature_set))
        answered = cur.fetchall()
    rows = [r for r in answered if not r[5]]
    numeric = np.array([r[0] for r in rows], dtype=np.float64).reshape(len(rows), len(NUMERIC_FEATURES))
    inputs: dict[str, np.ndarray] = {name: numeric[:, i] for i, name in enumerate(NUMERIC_FEATURES)}
    for i, name in enumerate(CATEGORICAL_FEATURES):
        inputs[name] = np.array([r[1][i] for r in rows], dtype=object)
    versions = np.array([r[3] for r in rows], dtype=object)
    scores = np.array([r[2] for r in rows], dtype=np.float64)
    times = np.array([r[4].astimezone(UTC).replace(tzinfo=None) for r in rows], dtype="datetime64[us]")
    return Served(inputs, {str(v): scores[versions == v] for v in np.unique(versions)}, times,
                  degraded=len(answered) - len(rows), answered=len(answered))


@dataclass(frozen=True)
class Labelled:
    """The served predictions of one (model version, variant), each with its label as known at the report."""

    labels: np.ndarray
    scores: np.ndarray
    times: np.ndarray  # event times, datetime64 UTC
    degraded: np.ndarray  # scored on default features (the store over its budget): not the model's own answer


def labelled_predictions(settings: Settings, start: datetime, end: datetime, labels_at: datetime
                         ) -> dict[tuple[str, str], Labelled]:
    """(model version, variant) -> the predictions of transactions in [start, end), labelled as known at
    ``labels_at`` (unreported: legitimate)."""
    with db.connection(settings) as conn, conn.cursor() as cur:
        cur.execute(_LABELLED_SQL, {"start": start, "end": end, "labels_at": labels_at,
                                    "delay": settings.label_delay_days})
        rows = cur.fetchall()
    out: dict[tuple[str, str], tuple[list[int], list[float], list[datetime], list[bool]]] = {}
    for version, variant, score, label, event_time, degraded in rows:
        labels, scores, times, flags = out.setdefault((version, variant), ([], [], [], []))
        labels.append(label)
        scores.append(score)
        times.append(event_time.astimezone(UTC).replace(tzinfo=None))
        flags.append(bool(degraded))
    return {key: Labelled(np.array(labels, dtype=np.int64), np.array(scores, dtype=np.float64),
                          np.array(times, dtype="datetime64[us]"), np.array(flags, dtype=bool))
            for key, (labels, scores, times, flags) in out.items()}


def maturity_curve(settings: Settings, as_of: datetime) -> MaturityCurve:
    """The label maturity curve at ``as_of``: first-report delays of the frauds of transactions at least the label
    horizon old (the accuracy window before that), or the maturity rule when too few."""
    old_before = as_of - timedelta(days=settings.label_horizon_days)
    with db.connection(settings) as conn, conn.cursor() as cur:
        cur.execute(_FIRST_FRAUD_REPORT_SQL, {
            "labels_at": as_of, "start": old_before - timedelta(days=settings.accuracy_window_days),
            "end": old_before, "delay": settings.label_delay_days})
        delays = np.array([float(r[0]) for r in cur.fetchall()], dtype=np.float64)
    return maturity.from_delays(delays, settings.label_horizon_days, settings.accuracy_min_positives,
                                maturity_days(settings))


def run(settings: Settings, as_of: datetime | None = None) -> MonitoringReport:
    """Compute the report of ``as_of`` (default now) and store it."""
    as_of = (as_of or datetime.now(UTC)).astimezone(UTC)
    report = compute(settings, as_of)
    reports.save(settings, report)
    return report


def run_daily(settings: Settings, first: datetime, last: datetime,
              say: Callable[[MonitoringReport], None] | None = None) -> list[MonitoringReport]:
    """One check per day, as of ``first``, ``first`` + 1 day, ... and a last one as of ``last`` (when the days do
    not land on it), each stored as the nightly run would have stored it (a history backfilled: monitoring
    switched on late, a world replayed); ``say`` hears each report as it is stored."""
    first, last = first.astimezone(UTC), last.astimezone(UTC)
    times = [first + timedelta(days=k) for k in range(int((last - first) / timedelta(days=1)) + 1)]
    if times[-1] < last:
        times.append(last)
    out = []
    for as_of in times:
        out.append(run(settings, as_of))
        if say is not None:
            say(out[-1])
    return out


def compute(settings: Settings, as_of: datetime) -> MonitoringReport:
    window_start = as_of - timedelta(days=settings.drift_window_days)
    accuracy_start = as_of - timedelta(days=settings.accuracy_window_days)
    with Registry(settings) as registry:
        champion = registry.by_alias(CHAMPION)
        reference: DriftReference | None = None
        training: dict[str, dict[str, float]] = {}
        if champion is not None:
            reference = registry.drift_reference(champion)
        labelled = labelled_predictions(settings, accuracy_start, as_of, as_of)
        for version, _ in labelled:
            if version not in training:
                training[version] = _training_metrics(registry, version)
    baselines = {v: m.get("test_roc_auc") for v, m in training.items()}
    # an estimate is judged against the same estimator on the training run's test part; a version trained before
    # calibration has none (and scores raw, which the estimate reads low): no baseline, no drop, no alert
    estimate_baselines = {v: m.get("test_roc_auc_estimated") for v, m in training.items()}
    thresholds = drift.Thresholds(warn=settings.drift_psi_warn, act=settings.drift_psi_act)
    results: list[reports.FeatureDrift] = []
    served, degraded = 0, (0, 0)
    if reference is not None:
        answers = served_inputs(settings, window_start, as_of, reference.feature_set)
        served, degraded = len(answers.times), (answers.degraded, answers.answered)
        results = drift.compare(reference, answers.inputs, answers.scores.get(champion.version) if champion else None,
                                thresholds, times=answers.times, window_days=settings.drift_window_days)
    curve = maturity_curve(settings, as_of)
    rules = accuracy.Rules(min_positives=settings.accuracy_min_positives, min_maturity=settings.accuracy_min_maturity,
                           max_drop=settings.accuracy_max_drop, resamples=settings.accuracy_bootstrap,
                           capacity=settings.review_capacity_per_day)
    cohorts, accuracies, estimates = [], [], []
    window = np.datetime64(window_start.astimezone(UTC).replace(tzinfo=None), "us")
    for (version, variant), rows in sorted(labelled.items()):
        # accuracy is the model's: answers on default features are a serving fault, counted beside it (accuracy.py)
        cohorts += accuracy.cohorts(version, variant, rows.labels, rows.scores, rows.times, as_of, curve, rules,
                                    degraded=rows.degraded)
        accuracies.append(accuracy.matured(version, variant, rows.labels, rows.scores, rows.times, as_of, curve,
                                           baselines.get(version), rules, degraded=rows.degraded))
        # the estimate reads the model's scores: answers scored on default features are a serving fault, left out
        # as the drift comparison leaves them out (its baseline was computed on rows with real features)
        recent = (rows.times >= window) & ~rows.degraded
        if recent.any():
            estimates.append(accuracy.estimated(version, variant, rows.scores[recent], rows.times[recent], as_of,
                                                curve, estimate_baselines.get(version), rules))
    champion_version = champion.version if champion else None
    mature_days = [c.day for c in cohorts if c.model_version == champion_version and c.variant == "champion"
                   and c.maturity >= settings.accuracy_min_maturity]
    accuracy_end = (datetime.combine(max(mature_days) + timedelta(days=1), time(), UTC) if mature_days
                    else accuracy_start)
    report = _verdict(settings, as_of, window_start, accuracy_start, min(accuracy_end, as_of), champion_version,
                      reference, served, results, accuracies, estimates, degraded)
    return report.model_copy(update={"maturity": curve, "cohorts": cohorts})


def _training_metrics(registry: Registry, version: str) -> dict[str, float]:
    try:
        return registry.run_metrics(registry.version(version))
    except RegistryError:  # a version deleted since it served: no baseline to compare with
        return {}


def _verdict(settings: Settings, as_of: datetime, window_start: datetime, accuracy_start: datetime,
             accuracy_end: datetime, champion: str | None, reference: DriftReference | None, served: int,
             results: list[reports.FeatureDrift], accuracies: list[VersionAccuracy],
             estimates: list[VersionEstimate] | None = None, degraded: tuple[int, int] = (0, 0)
             ) -> MonitoringReport:
    """``degraded``: (answers with default features, all answers) in the drift window, left out of the drift
    comparison."""
    estimates = estimates or []
    left_out = [r for r in results if r.status == LEFT_OUT]
    inputs = [r for r in results if r.kind != "score" and r.status != LEFT_OUT]  # the score's is reported only
    acted = [r for r in inputs if r.status == "act"]
    champion_accuracy = [a for a in accuracies if a.model_version == champion and a.variant == "champion"]
    champion_estimate = [e for e in estimates if e.model_version == champion and e.variant == "champion"]
    dropped = [a for a in champion_accuracy if a.status == "drop"]
    estimate_dropped = [e for e in champion_estimate if e.status == "drop"]
    acted.sort(key=lambda r: -(r.importance or 0.0))  # what matters most to the model first
    reasons = [f"{r.name}: PSI {r.psi:.3f} over {settings.drift_psi_act}"
               + ("" if r.importance is None else f" ({r.importance:.1%} of the model's gain)") for r in acted]
    if acted and any(r.importance is not None for r in acted):
        reasons.append(f"the inputs over the threshold carry {sum(r.importance or 0.0 for r in acted):.0%} of the "
                       "model's gain")
    reasons += [a.reason for a in dropped]
    reasons += [e.reason + f" (the drift window's frauds {e.maturity:.0%} known)" for e in estimate_dropped]
    judged = [a for a in champion_accuracy if a.status == "ok" and a.roc_auc is not None and a.baseline_auc]
    if acted and judged and not dropped:
        line = (1 - settings.accuracy_max_drop) * judged[0].baseline_auc  # type: ignore[operator]
        reasons.append(f"matured AUC {judged[0].roc_auc:.4f} did not move with them (within "
                       f"{settings.accuracy_max_drop:.0%} of the training AUC)" if judged[0].roc_auc >= line else
                       f"matured AUC {judged[0].roc_auc:.4f} is under {line:.4f} but its interval reaches over it "
                       "(not shown to have dropped)")
    steady = [e for e in champion_estimate if e.status == "ok" and e.baseline_auc]
    if acted and steady:
        reasons.append(f"estimated AUC {steady[0].estimated.roc_auc:.4f} "  # type: ignore[union-attr]
                       f"did not move with them (within {settings.accuracy_max_drop:.0%} of its value on the "
                       "training test part)")
    if champion is None:
        status: reports.Status = NOT_ENOUGH
        reasons = ["no champion: nothing to compare with"]
    elif acted:  # an action-level shift is told from fewer rows than a warn-level one (monitoring.drift)
        status = "act"
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
    if degraded[0]:
        reasons.append(f"left out of the drift comparison: {degraded[0]:,} of {degraded[1]:,} answers "
                       f"({degraded[0] / degraded[1]:.1%}) had default features (the feature store over its budget): "
                       "a serving fault retraining cannot fix (runbook: features degraded)")
    if champion_accuracy and champion_accuracy[0].degraded:
        reasons.append(f"left out of the matured AUC: {champion_accuracy[0].degraded:,} mature answers had default "
                       "features (runbook: features degraded)")
    if not champion_accuracy:
        reasons.append("matured AUC: no predictions with matured labels in the window")
    elif champion_accuracy[0].status == NOT_ENOUGH:
        reasons.append(f"matured AUC: {champion_accuracy[0].reason}")
    if champion_estimate and champion_estimate[0].status == NOT_ENOUGH:
        reasons.append(f"estimated AUC: {champion_estimate[0].reason}")
    retrain = bool(acted or dropped or estimate_dropped)
    if not retrain and status != NOT_ENOUGH:
        reasons.insert(0, "no input over its action threshold, no drop of the matured or estimated AUC")
    return MonitoringReport(as_of=as_of, window_start=window_start, window_end=as_of, accuracy_start=accuracy_start,
                            accuracy_end=accuracy_end, model_version=champion,
                            feature_set=reference.feature_set if reference else None, predictions=served,
                            status=status, retrain=retrain, reasons=reasons, drift=results, accuracy=accuracies,
                            estimated=estimates)
