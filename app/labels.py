"""A transaction's label as known at a time: the one definition every reader of a label uses (docs/labels.md).

Labels come from two places. Label events (``labels``, one row per event, stored once per label_id) say what
was reported and when. A transaction message may carry its own label (history backfills, files in the original
format); such a label counts as reported ``label_delay_days`` after the transaction, the fixed rule that applies
only to labels inside rows. At time t a transaction's label is the one reported last at or before t (ties: a
label event before a row's label, then the larger label_id), so a later event supersedes an earlier one and the
history stays answerable. Before its first report a transaction has no label.

Training reads the labels of a period as known ``label_maturity_days`` after the period ends (its cut-off): a
transaction of the period without a label by then is legitimate, by that rule, not by default (``matured``).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

import numpy as np
import pandas as pd
import psycopg2.extensions

from app.config import Settings

KNOWN_COLUMNS = ("transaction_id", "is_fraud", "source", "reported_at")


def known_label_sql(transaction: str = "t", at: str = "%(labels_at)s", delay: str = "%(delay)s",
                    transaction_id: str | None = None) -> str:
    """A LATERAL subquery giving (is_fraud, source, reported_at) of the label of the ``transaction`` row (an alias
    of ``transactions``) as known at ``at``, or no row: its events and its own row label, the last report wins.
    ``transaction_id``: where the id comes from when the row may be missing (a label whose transaction is not
    stored)."""
    t, row_reported = transaction, f"{transaction}.event_time + make_interval(days => {delay})"
    transaction_id = transaction_id or f"{t}.transaction_id"
    return f"""
        SELECT is_fraud::int AS is_fraud, source, reported_at FROM (
            SELECT label_id, is_fraud, source, reported_at FROM labels l
            WHERE l.transaction_id = {transaction_id} AND l.reported_at <= {at}
            UNION ALL
            SELECT NULL::uuid, {t}.is_fraud, 'backfill', {row_reported}
            WHERE {t}.is_fraud IS NOT NULL AND {row_reported} <= {at}
        ) reports ORDER BY reported_at DESC, label_id DESC NULLS LAST LIMIT 1"""


_KNOWN_AT = (f"SELECT q.transaction_id::text, k.is_fraud, k.source, k.reported_at "
             f"FROM unnest(%(ids)s::uuid[]) AS q(transaction_id) "
             f"LEFT JOIN transactions t ON t.transaction_id = q.transaction_id "
             f"CROSS JOIN LATERAL ({known_label_sql(transaction_id='q.transaction_id')}) k")


def known_at(cur: psycopg2.extensions.cursor, transaction_ids: Sequence[str], at: datetime,
             label_delay_days: int) -> pd.DataFrame:
    """The label of each of ``transaction_ids`` as known at ``at`` (one row per transaction that had one by then,
    stored or not yet: KNOWN_COLUMNS)."""
    cur.execute(
        _KNOWN_AT, {"labels_at": at, "ids": "{" + ",".join(map(str, dict.fromkeys(transaction_ids))) + "}",
                    "delay": label_delay_days})
    return pd.DataFrame(cur.fetchall(), columns=list(KNOWN_COLUMNS))


def known_in_frame(transactions: pd.DataFrame, events: pd.DataFrame | None, at: datetime,
                   label_delay_days: int) -> np.ndarray:
    """The same rule over data in memory (a file, a simulated world): per row of ``transactions`` (message
    columns; ``is_fraud`` may be NaN), its label as known at ``at`` from its own row label and ``events`` (the
    LabelEvent columns), NaN where none was reported by then."""
    at_ts = pd.Timestamp(at)
    own = pd.to_numeric(transactions["is_fraud"], errors="coerce").to_numpy(dtype=np.float64)
    row_reported = pd.to_datetime(transactions["timestamp"], utc=True) + pd.Timedelta(days=label_delay_days)
    reports = [pd.DataFrame({"transaction_id": transactions["transaction_id"].astype(str).to_numpy(),
                             "is_fraud": own, "reported_at": row_reported.to_numpy(), "rank": 0, "label_id": ""})
               .loc[lambda f: ~np.isnan(f["is_fraud"].to_numpy())]]
    if events is not None and len(events):
        reports.append(pd.DataFrame({
            "transaction_id": events["transaction_id"].astype(str).to_numpy(),
            "is_fraud": events["is_fraud"].to_numpy(dtype=np.float64),
            "reported_at": pd.to_datetime(events["reported_at"], utc=True).to_numpy(), "rank": 1,
            "label_id": events["label_id"].astype(str).to_numpy()}))
    every = pd.concat(reports, ignore_index=True)
    every["reported_at"] = pd.to_datetime(every["reported_at"], utc=True)
    known = every[every["reported_at"] <= at_ts].sort_values(["reported_at", "rank", "label_id"])
    last = known.drop_duplicates("transaction_id", keep="last").set_index("transaction_id")["is_fraud"]
    return last.reindex(transactions["transaction_id"].astype(str)).to_numpy(dtype=np.float64)


# A merchant's fraud reports (app.features, measure "fraud_reports"): each transaction once, at its first report as
# fraud, for the merchant it was paid at. The store keeps them in ``fraud_reports`` (streaming.store_writer).
FRAUD_REPORT_COLUMNS = ("merchant_id", "reported_at")


def row_fraud_reports(transactions: pd.DataFrame, label_delay_days: int) -> pd.DataFrame:
    """The fraud reports of labels inside rows (FRAUD_REPORT_COLUMNS, and transaction_id where the rows have it): a
    row labelled fraud is reported the label delay after its transaction."""
    fraud = (pd.to_numeric(transactions["is_fraud"], errors="coerce").astype("float64") == 1).to_numpy()
    reported = pd.to_datetime(transactions["timestamp"], utc=True)[fraud] + pd.Timedelta(days=label_delay_days)
    ids = {"transaction_id": transactions["transaction_id"].to_numpy()[fraud]} if "transaction_id" in transactions \
        else {}
    return pd.DataFrame({**ids, "merchant_id": transactions["merchant_id"].to_numpy(dtype=np.int64)[fraud],
                         "reported_at": reported.to_numpy()})


def maturity_days(settings: Settings) -> int:
    """How long after a training period its labels are read: the setting, or the label delay when unset."""
    return settings.label_delay_days if settings.label_maturity_days is None else settings.label_maturity_days


def labels_cutoff(settings: Settings, until: datetime) -> datetime:
    """When the labels of a period ending at ``until`` are read: ``maturity_days`` later."""
    return until + timedelta(days=maturity_days(settings))


def matured_sql(known: str = "k") -> str:
    """``matured`` in SQL, over the columns of ``known_label_sql``'s row ``known`` (LEFT JOINed: no row, no label)."""
    return f"coalesce({known}.is_fraud, 0)"


def matured(known: np.ndarray) -> np.ndarray:
    """Training labels of a matured period: the label known at the cut-off, and legitimate where none was reported
    by then (the maturity rule, stated here once). ``known`` may hold None (an object column with no label known
    at all)."""
    return np.nan_to_num(np.asarray(known, dtype=np.float64), nan=0.0).astype(np.int64)
