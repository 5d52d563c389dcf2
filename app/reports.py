"""Monitoring reports: the contract of the ``monitoring_reports`` table (one row per `riskray drift` run).

Written by ``monitoring.run``; read by the Serve app's /metrics (``data_drift_score``, ``model_accuracy``,
``model_training_auc`` of the latest report), by `riskray drift --history` and by the retraining DAG (over
HTTP/CLI). A value that could not be computed is ``None`` with the reason, never a 0: a gauge is left out.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

import orjson
from pydantic import BaseModel, Field

from app import db
from app.config import Settings

Status = Literal["ok", "warn", "act", "not enough data", "left out"]
NOT_ENOUGH = "not enough data"
LEFT_OUT = "left out"  # an input not judged over this window, with the reason (monitoring.drift)


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


class VersionAccuracy(BaseModel):
    """Realised accuracy of one served model version on predictions whose labels have matured."""

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

    def gauges(self) -> tuple[dict[str, float], dict[str, float], dict[str, float]]:
        """(drift per feature, realised AUC per version, training AUC per version), only computed values."""
        drift = {d.name: d.psi for d in self.drift if d.psi is not None and d.kind != "score"}
        accuracy = {a.model_version: a.roc_auc for a in self.accuracy if a.roc_auc is not None}
        baseline = {a.model_version: a.baseline_auc for a in self.accuracy if a.baseline_auc is not None}
        return drift, accuracy, baseline  # type: ignore[return-value]


COLUMNS = ("as_of", "window_start", "window_end", "accuracy_start", "accuracy_end", "model_version", "feature_set",
           "predictions", "status", "retrain", "reasons", "drift", "accuracy")
_JSON = ("drift", "accuracy")


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
