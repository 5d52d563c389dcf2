"""Monitoring reports: the contract of the ``monitoring_reports`` table (one row per `riskray drift` run).

Written by ``monitoring.run``; read by the Serve app's /metrics (``data_drift_score``, ``model_accuracy``,
``model_training_auc`` of the latest report), by `riskray drift --history` and by the retraining DAG (over
HTTP/CLI). A value that could not be computed is ``None`` with the reason, never a 0: a gauge is left out.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Literal

import numpy as np
import orjson
from pydantic import BaseModel, Field, computed_field

from app import db
from app.config import Settings

Status = Literal["ok", "warn", "act", "not enough data", "left out"]
NOT_ENOUGH = "not enough data"
LEFT_OUT = "left out"  # an input not judged over this window, with the reason (monitoring.drift)
TRIGGER_DRIFT, TRIGGER_MATURED, TRIGGER_ESTIMATED = "drift", "matured accuracy", "estimated accuracy"


class FeatureDrift(BaseModel):
    name: str
    kind: Literal["numeric", "categorical", "score"]
    rows: int
    psi: float | None = Field(description="None below the sample-size floor")
    ks: float | None = Field(default=None, description="numeric inputs: the KS statistic; None below the floor")
    status: Status
    min_rows: int = Field(description="the sample-size floor: fewer rows than this are not enough data")
    reason: str = Field(default="", description="why a 'left out' input is not judged")
    importance: float | None = Field(default=None, description="the input's share of the model's total gain")


DEGRADED = ("answers scored on default features (the feature store over its budget), left out of the accuracy: a "
            "serving fault, not the model's answer")


class VersionAccuracy(BaseModel):
    """Realised accuracy of one served model version on its mature cohorts (``CohortAccuracy``) pooled: the number
    the retraining check reads."""

    model_version: str
    variant: str
    rows: int
    positives: int
    roc_auc: float | None
    average_precision: float | None
    auc_low: float | None = Field(default=None, description="bootstrap 95 % interval of the AUC")
    auc_high: float | None = None
    baseline_auc: float | None = Field(default=None, description="the version's AUC on its training test set")
    status: Literal["ok", "drop", "not enough data"]
    reason: str = ""
    precision_at_capacity: float | None = None
    cohorts: int = Field(default=0, description="mature cohorts (days) pooled")
    maturity: float | None = Field(default=None, description="the least mature of the pooled cohorts")
    degraded: int = Field(default=0, description=DEGRADED)


class MaturityCurve(BaseModel):
    """How fast frauds become known: of the frauds eventually known for transactions at least ``horizon_days`` old,
    the share whose first fraud report came within ``days[i]`` of the transaction (label events only: a label
    inside a row has no real delay). ``source`` "rule" when too few such frauds exist: then a cohort counts as
    known once it is the label maturity (``app.labels.maturity_days``) old, the rule training reads labels by."""

    source: Literal["label events", "rule"]
    horizon_days: float
    frauds: int = Field(description="frauds the curve was measured on (0 for the rule)")
    days: list[float]
    share: list[float]

    def at(self, age_days: float) -> float:
        """The expected share of a cohort's eventual frauds known ``age_days`` after it (0 before the first point,
        1 past the last)."""
        return float(self.at_ages(np.array([age_days]))[0])

    def at_ages(self, ages_days: np.ndarray) -> np.ndarray:
        """``at`` of every age at once (a report reads it for each of a month's predictions)."""
        ages = np.asarray(ages_days, dtype=np.float64)
        return np.where(ages < self.days[0], 0.0, np.interp(ages, self.days, self.share, left=0.0, right=1.0))

    def days_to(self, share: float) -> float | None:
        """The age at which ``share`` of the frauds is known (None when the curve never reaches it)."""
        reached = [d for d, s in zip(self.days, self.share, strict=True) if s >= share]
        return reached[0] if reached else None


class Accuracy(BaseModel):
    """AUC, average precision and precision at the review capacity of one set of predictions: realised (labels
    known at the report) or estimated from the calibrated scores (expected values, no labels)."""

    roc_auc: float | None = None
    auc_low: float | None = Field(default=None, description="bootstrap 95 % interval of the AUC (realised only)")
    auc_high: float | None = None
    average_precision: float | None = None
    precision_at_capacity: float | None = Field(
        default=None, description="share of frauds among each day's review-capacity highest-scored predictions")
    frauds: float = Field(description="known frauds (realised) or the expected number (estimated)")


class CohortAccuracy(BaseModel):
    """One prediction cohort (the predictions of one model version and variant for transactions of one day)."""

    day: date
    model_version: str
    variant: str
    rows: int = Field(description="the model's own answers (default-feature answers are ``degraded``)")
    degraded: int = Field(default=0, description=DEGRADED)
    maturity: float = Field(description="expected share of the cohort's eventual frauds known at the report")
    status: Literal["ok", "not mature", "not enough data"]
    reason: str = ""
    realised: Accuracy | None = Field(description="None unless the cohort is mature and has enough known frauds")
    estimated: Accuracy | None = Field(description="None when the scores expect too few frauds to say")


class VersionEstimate(BaseModel):
    """Estimated accuracy of one served model version over the recent cohorts (the drift window), from its
    calibrated scores: what the labels are expected to say once they mature."""

    model_version: str
    variant: str
    rows: int
    maturity: float = Field(description="expected share of the window's eventual frauds known at the report")
    estimated: Accuracy | None
    baseline_auc: float | None = Field(default=None, description="the same estimate on its training test part")
    status: Literal["ok", "drop", "not enough data"]
    reason: str = ""


class MonitoringReport(BaseModel):
    as_of: datetime
    window_start: datetime = Field(description="served inputs compared for drift: event times in [start, end)")
    window_end: datetime
    accuracy_start: datetime = Field(description="labelled predictions: event times in [start, end)")
    accuracy_end: datetime
    model_version: str | None = Field(description="the champion whose reference the inputs are compared with")
    feature_set: str | None
    predictions: int = Field(description="predictions of the champion in the drift window")
    status: Status
    retrain: bool
    reasons: list[str] = Field(description="why retraining is due, or why nothing is")
    drift: list[FeatureDrift]
    accuracy: list[VersionAccuracy]
    maturity: MaturityCurve | None = Field(default=None, description="the label maturity curve at the report")
    cohorts: list[CohortAccuracy] = Field(default_factory=list, description="per day, version and variant")
    estimated: list[VersionEstimate] = Field(default_factory=list, description="per version over the drift window")

    @computed_field  # type: ignore[prop-decorator]
    @property
    def triggers(self) -> list[str]:
        """What a retrain verdict rests on: "drift" (an input judged fairly over its action threshold), "matured
        accuracy" (the champion's mature cohorts' AUC dropped), "estimated accuracy" (its estimate dropped)."""
        champion = [a for a in [*self.accuracy, *self.estimated]
                    if a.model_version == self.model_version and a.variant == "champion" and a.status == "drop"]
        return ([TRIGGER_DRIFT] if any(d.status == "act" and d.kind != "score" for d in self.drift) else []) + \
            ([TRIGGER_MATURED] if any(isinstance(a, VersionAccuracy) for a in champion) else []) + \
            ([TRIGGER_ESTIMATED] if any(isinstance(a, VersionEstimate) for a in champion) else [])

    def gauges(self) -> Gauges:
        """The report's values as /metrics gauges, only computed values (a missing value is no sample, not 0)."""
        estimated = [e for e in self.estimated if e.estimated is not None and e.estimated.roc_auc is not None]
        realised = [a for a in self.accuracy if a.roc_auc is not None]
        return Gauges(
            drift={d.name: d.psi for d in self.drift if d.psi is not None and d.kind != "score"},
            accuracy={a.model_version: a.roc_auc for a in realised},  # type: ignore[misc]
            accuracy_upper={a.model_version: a.auc_high if a.auc_high is not None else a.roc_auc  # type: ignore[misc]
                            for a in realised},
            training_auc={a.model_version: a.baseline_auc for a in self.accuracy if a.baseline_auc is not None},
            training_auc_estimated={e.model_version: e.baseline_auc for e in self.estimated
                                    if e.baseline_auc is not None},
            estimated={e.model_version: e.estimated.roc_auc for e in estimated},  # type: ignore[union-attr,misc]
            maturity={**{(a.model_version, "realised"): a.maturity for a in realised if a.maturity is not None},
                      **{(e.model_version, "estimated"): e.maturity for e in estimated}},
            label_days={} if self.maturity is None else {
                share: days for share in MATURITY_SHARES if (days := self.maturity.days_to(share)) is not None})


MATURITY_SHARES = (0.5, 0.8, 0.9, 0.95)  # label_maturity_days{share}: how long until that share of frauds is known


class Gauges(BaseModel):
    """What /metrics shows of the latest report (``serve_deployments.metrics.gauge_lines`` renders it)."""

    drift: dict[str, float] = Field(default_factory=dict, description="PSI per input")
    accuracy: dict[str, float] = Field(default_factory=dict, description="realised AUC per version")
    accuracy_upper: dict[str, float] = Field(
        default_factory=dict, description="the upper end of its bootstrap interval: the drop rule reads it")
    training_auc: dict[str, float] = Field(default_factory=dict, description="test AUC of its training run")
    estimated: dict[str, float] = Field(default_factory=dict, description="estimated AUC per version")
    training_auc_estimated: dict[str, float] = Field(
        default_factory=dict, description="the same estimate on its training run's test part")
    maturity: dict[tuple[str, str], float] = Field(
        default_factory=dict, description="(version, realised|estimated) -> share of the frauds known")
    label_days: dict[float, float] = Field(default_factory=dict, description="share -> days until known")


COLUMNS = ("as_of", "window_start", "window_end", "accuracy_start", "accuracy_end", "model_version", "feature_set",
           "predictions", "status", "retrain", "reasons", "drift", "accuracy", "maturity", "cohorts", "estimated")
_JSON = ("drift", "accuracy", "maturity", "cohorts", "estimated")


def save(settings: Settings, report: MonitoringReport) -> int:
    """Insert the report; returns its id."""
    plain = report.model_dump(mode="json")
    values = [orjson.dumps(plain[c]).decode() if c in _JSON else getattr(report, c) for c in COLUMNS]
    with db.connection(settings) as conn, conn.cursor() as cur:
        placeholders = ", ".join(["%s"] * len(COLUMNS))
        cur.execute(f"INSERT INTO monitoring_reports ({', '.join(COLUMNS)}) VALUES ({placeholders}) "
                    "RETURNING report_id", values)
        return int(cur.fetchone()[0])


def latest(settings: Settings) -> MonitoringReport | None:
    """The newest report (the last one written), or None."""
    found = _select(settings, 1)
    return found[0] if found else None


def history(settings: Settings, limit: int = 200) -> list[MonitoringReport]:
    """The last ``limit`` reports in the order of their as-of time (the drift-over-time plot)."""
    return sorted(_select(settings, limit), key=lambda r: r.as_of)


def _select(settings: Settings, limit: int) -> list[MonitoringReport]:
    """The newest ``limit`` reports, newest first."""
    with db.connection(settings) as conn, conn.cursor() as cur:
        cur.execute(f"SELECT {', '.join(COLUMNS)} FROM monitoring_reports ORDER BY report_id DESC LIMIT %s", (limit,))
        return [MonitoringReport.model_validate(dict(zip(COLUMNS, row, strict=True))) for row in cur.fetchall()]
