"""The simulator's label delay model: simulated transactions in, the label events a card issuer would see out.

Nobody knows a transaction's label at authorisation. A fraud becomes known later, from an analyst, from the
cardholder's dispute, then perhaps from the scheme's chargeback, or never; and a few legitimate transactions are
disputed as fraud before an investigation finds them to be the cardholder's own. ``label_events`` turns a frame of
transactions (``is_fraud`` is the truth) into those ``app.schemas.LabelEvent`` rows, seeded and vectorised; the
shares and delays are ``LabelDelayConfig``'s, and docs/labels.md describes them.
"""

from __future__ import annotations

import uuid
from datetime import UTC
from typing import NamedTuple

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, model_validator

from app.schemas import LabelEvent, LabelSource, kafka_values

# label_id = uuid5(LABEL_NAMESPACE, "<transaction_id>/<ordinal>/<source>"): the same event always has the same id
LABEL_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "riskray/label-events")
EVENT_COLUMNS: tuple[str, ...] = tuple(LabelEvent.model_fields)
_US_PER_HOUR = 3_600 * 10**6
_US_PER_DAY = 24 * _US_PER_HOUR


class LabelDelayConfig(BaseModel):
    """Who reports a transaction's label, and how late. Every ``*_days`` / ``*_hours`` value is a delay, and
    ``time_scale`` multiplies all of them (limits and caps included): 1/720 replays a month's labels in an hour.

    Where the defaults come from (FACTS.md, "Fraud labels in the real world"); a value the sources do not give is
    marked as an assumption:

    - analysts confirm alerts within hours to days: a lognormal delay around 4 hours, capped at 2 days; the
      share they confirm (35 %) is an assumption;
    - cardholder disputes take days to weeks: a lognormal around 7 days (half within 5-10 days), capped at
      90 days so a dispute always comes before the chargeback limit;
    - the card schemes allow a chargeback up to about 120 days after the transaction, and Amazon Fraud Detector's
      documentation says chargeback labels take about 60 days to mature: a lognormal around 40 days (half within
      32-51, ~88 % within 60), never later than 120 days; the share of disputes that go on to a chargeback (60 %)
      and its reason code (Visa 10.4, card-absent fraud) are assumptions;
    - some frauds are never reported: 10 % (an assumption);
    - some disputes are the cardholder's own purchase ("friendly fraud"): 0.1 % of legitimate transactions are
      disputed as fraud, and an investigation (a lognormal around 14 days after the dispute, capped at 60) confirms
      them legitimate; share and duration are assumptions.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    seed: int = Field(default=42, description="the random stream's seed (with the frame's time span)")
    time_scale: float = Field(default=1.0, ge=1e-6, le=1,
                              description="multiplies every delay; < 1 compresses a demo (1/720: a month in an hour)")

    # frauds: each is confirmed by an analyst, or disputed by the cardholder, or never reported
    analyst_share: float = Field(default=0.35, ge=0, le=1, description="share of frauds an analyst confirms")
    dispute_share: float = Field(default=0.55, ge=0, le=1, description="share of frauds the cardholder disputes")
    never_reported: float = Field(default=0.10, ge=0, le=1, description="share of frauds no one ever reports")
    chargeback_after_dispute: float = Field(default=0.6, ge=0, le=1,
                                            description="share of fraud disputes a chargeback follows")
    chargeback_reason_code: str = Field(default="10.4", pattern=r"^[0-9A-Za-z.]{1,12}$",
                                        description="the chargeback's reason code (Visa 10.4: card-absent fraud)")

    analyst_median_hours: float = Field(default=4.0, gt=0, le=24 * 30)
    analyst_sigma: float = Field(default=1.0, ge=0, le=3, description="lognormal sigma of the analyst delay")
    analyst_cap_hours: float = Field(default=48.0, gt=0, le=24 * 30)

    dispute_median_days: float = Field(default=7.0, gt=0, le=120, description="after the transaction")
    dispute_sigma: float = Field(default=0.5, ge=0, le=3)
    dispute_cap_days: float = Field(default=90.0, gt=0, le=365)

    chargeback_median_days: float = Field(default=40.0, gt=0, le=365, description="after the transaction")
    chargeback_sigma: float = Field(default=0.35, ge=0, le=3)
    chargeback_limit_days: float = Field(default=120.0, gt=0, le=365,
                                         description="the scheme's limit: no chargeback later after the transaction")
    chargeback_min_gap_days: float = Field(default=1.0, ge=0, le=30,
                                           description="a chargeback comes at least this long after its dispute")

    # legitimate transactions: a few are disputed as fraud, then confirmed legitimate
    false_dispute_share: float = Field(default=0.001, ge=0, le=0.1,
                                       description="share of legitimate transactions disputed as fraud")
    investigation_median_days: float = Field(default=14.0, gt=0, le=120, description="after the false dispute")
    investigation_sigma: float = Field(default=0.5, ge=0, le=3)
    investigation_cap_days: float = Field(default=60.0, gt=0, le=365)

    @model_validator(mode="after")
    def _consistent(self) -> LabelDelayConfig:
        total = self.analyst_share + self.dispute_share + self.never_reported
        if abs(total - 1) > 1e-9:
            raise ValueError(f"analyst_share + dispute_share + never_reported must be 1 (each fraud gets one of "
                             f"them), not {total:g}")
        if self.dispute_cap_days + self.chargeback_min_gap_days >= self.chargeback_limit_days:
            raise ValueError("dispute_cap_days + chargeback_min_gap_days must be below chargeback_limit_days: a "
                             "dispute's chargeback must fit within the limit")
        return self


def label_events(transactions: pd.DataFrame, config: LabelDelayConfig) -> pd.DataFrame:
    """The label events of ``transactions`` (columns transaction_id, timestamp tz-aware, is_fraud 0/1; others are
    ignored): one row per event with exactly ``LabelEvent``'s fields as columns, sorted by reported_at, then
    label_id. The same seed and the same transactions (in any order) give the same events; the random stream
    also follows the frame's time span, so label a period in one call or day by day, not both."""
    ids, times_us, truth = _transactions(transactions)
    order = np.argsort(ids.astype(bytes), kind="stable")  # a canonical order: the row order does not matter
    ids, times_us, truth = ids[order], times_us[order], truth[order]
    span = [int(times_us.min()), int(times_us.max())] if len(ids) else [0, 0]
    rng = np.random.default_rng([config.seed, *span])
    parts = [*_fraud_events(np.flatnonzero(truth == 1), rng, config),
             *_false_dispute_events(np.flatnonzero(truth == 0), rng, config)]
    rows = np.concatenate([p.rows for p in parts])

    def column(name: str, dtype: type) -> np.ndarray:  # one of the parts' per-kind fields, one value per event
        return np.concatenate([np.full(len(p.rows), getattr(p, name), dtype=dtype) for p in parts])

    sources = [str(s) for s in column("source", object)]
    event_ids = ids[rows]
    label_ids = [str(uuid.uuid5(LABEL_NAMESPACE, f"{t}/{o}/{s}"))
                 for t, o, s in zip(event_ids, column("ordinal", np.int64), sources, strict=True)]
    # one case per transaction and kind: a dispute, its chargeback and its resolution share one reference
    case_ids = [f"{kind}-{uuid.uuid5(LABEL_NAMESPACE, f'{t}/case/{kind}').hex[:16]}"
                for t, kind in zip(event_ids, column("case_kind", object), strict=True)]
    reported = (times_us[rows] + np.concatenate([p.delay_us for p in parts])).astype("datetime64[us]")
    events = pd.DataFrame({
        "label_id": pd.Series(label_ids, dtype=object).astype(str),
        "transaction_id": pd.Series(event_ids, dtype=object).astype(str),
        "is_fraud": column("is_fraud", np.int64),
        "source": pd.Series(sources, dtype=object).astype(str),
        "reported_at": pd.DatetimeIndex(reported).tz_localize(UTC),
        "reason_code": pd.Series(column("reason_code", object), dtype=object),
        "case_id": pd.Series(case_ids, dtype=object),
    }, columns=list(EVENT_COLUMNS))
    return events.sort_values(["reported_at", "label_id"], kind="stable", ignore_index=True)


def label_values(events: pd.DataFrame) -> list[bytes]:
    """Kafka values of label events, in the wire form ``LabelEvent`` defines (``app.schemas.kafka_values``)."""
    return kafka_values(events, LabelEvent)


def label_keys(events: pd.DataFrame) -> list[bytes]:
    """Kafka keys of label events: the text of their ``LabelEvent.KEY_FIELD`` (the transaction id)."""
    return [str(value).encode() for value in events[LabelEvent.KEY_FIELD].tolist()]


# --- the model -------------------------------------------------------------------------------------------------
class Part(NamedTuple):
    """Events of one kind: the same source, ordinal and label for the transactions at ``rows``."""

    rows: np.ndarray  # the transactions' positions
    ordinal: int  # the event's place in its transaction's history (0 first)
    source: LabelSource
    is_fraud: int
    delay_us: np.ndarray  # after the transaction, in microseconds, one per row
    reason_code: str | None
    case_kind: str  # the case it belongs to: "alert" (an analyst's) or "dispute"


def _transactions(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(transaction ids as text, event times in UTC microseconds, is_fraud) of a frame; a clear error when the
    frame cannot say them."""
    missing = [c for c in ("transaction_id", "timestamp", "is_fraud") if c not in frame.columns]
    if missing:
        raise ValueError(f"the transactions need columns {', '.join(missing)} to be labelled")
    stamps = frame["timestamp"]
    if not isinstance(stamps.dtype, pd.DatetimeTZDtype):
        raise ValueError("timestamp must be tz-aware datetimes (event time), not naive or text")
    truth = frame["is_fraud"]
    if truth.isna().any() or not truth.isin([0, 1]).all():
        raise ValueError("is_fraud must be 0 or 1 on every row: the delay model labels known truth")
    ids = np.asarray(frame["transaction_id"].astype(str), dtype=object)
    times_us = stamps.dt.tz_convert(UTC).dt.tz_localize(None).to_numpy(dtype="datetime64[us]").astype(np.int64)
    return ids, times_us, truth.to_numpy().astype(np.int64)


def _delays_us(rng: np.random.Generator, size: int, median: float, sigma: float, cap: float, unit_us: int,
               scale: float) -> np.ndarray:
    """``size`` lognormal delays around ``median`` capped at ``cap`` (both in ``unit_us``), scaled, in whole us."""
    drawn = np.minimum(rng.lognormal(np.log(median), sigma, size=size), cap)
    return np.rint(drawn * unit_us * scale).astype(np.int64)


def _fraud_events(rows: np.ndarray, rng: np.random.Generator, config: LabelDelayConfig) -> list[Part]:
    """Each fraud: an analyst's confirmation, or a dispute (and perhaps a later chargeback), or nothing."""
    n, c, scale = len(rows), config, config.time_scale
    route = rng.random(n)
    charged = rng.random(n) < c.chargeback_after_dispute
    analyst_us = _delays_us(rng, n, c.analyst_median_hours, c.analyst_sigma, c.analyst_cap_hours, _US_PER_HOUR, scale)
    dispute_us = _delays_us(rng, n, c.dispute_median_days, c.dispute_sigma, c.dispute_cap_days, _US_PER_DAY, scale)
    drawn_us = _delays_us(rng, n, c.chargeback_median_days, c.chargeback_sigma, c.chargeback_limit_days,
                          _US_PER_DAY, scale)
    earliest_us = np.maximum(dispute_us + np.rint(c.chargeback_min_gap_days * _US_PER_DAY * scale).astype(np.int64),
                             dispute_us + 1)  # strictly after its dispute, however compressed
    limit_us = int(np.rint(c.chargeback_limit_days * _US_PER_DAY * scale))
    chargeback_us = np.minimum(np.maximum(drawn_us, earliest_us), limit_us)

    analyst = route < c.analyst_share
    disputed = ~analyst & (route < c.analyst_share + c.dispute_share)
    chargeback = disputed & charged
    return [
        Part(rows[analyst], 0, LabelSource.ANALYST, 1, analyst_us[analyst], None, "alert"),
        Part(rows[disputed], 0, LabelSource.DISPUTE, 1, dispute_us[disputed], None, "dispute"),
        Part(rows[chargeback], 1, LabelSource.CHARGEBACK, 1, chargeback_us[chargeback], c.chargeback_reason_code,
         "dispute"),
    ]


def _false_dispute_events(rows: np.ndarray, rng: np.random.Generator, config: LabelDelayConfig) -> list[Part]:
    """A few legitimate transactions: disputed as fraud, then confirmed legitimate after an investigation."""
    c, scale = config, config.time_scale
    disputed = rows[rng.random(len(rows)) < c.false_dispute_share]
    n = len(disputed)
    dispute_us = _delays_us(rng, n, c.dispute_median_days, c.dispute_sigma, c.dispute_cap_days, _US_PER_DAY, scale)
    investigation_us = _delays_us(rng, n, c.investigation_median_days, c.investigation_sigma,
                                  c.investigation_cap_days, _US_PER_DAY, scale)
    return [
        Part(disputed, 0, LabelSource.DISPUTE, 1, dispute_us, None, "dispute"),
        Part(disputed, 1, LabelSource.CONFIRMED_LEGITIMATE, 0, dispute_us + np.maximum(investigation_us, 1), None,
         "dispute"),
    ]
