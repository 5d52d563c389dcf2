"""A transaction's label as known at a time: the one definition every reader of a label uses (docs/labels.md).

Labels come from two places. Label events (``labels``, one row per event, stored once per label_id) say what
was reported and when. A transaction message may carry its own label (history backfills, files in the original
format); such a label counts as reported ``label_delay_days`` after the transaction, the fixed rule that applies
only to labels inside rows. At time t a transaction's label is the one reported last at or before t (ties: a
label event before a row's label, then the larger label_id), so a later event supersedes an earlier one and the
history stays answerable. Before its first report a transaction has no label.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import pandas as pd
import psycopg2.extensions

# every report of a label: the events, and the labels inside transaction rows at their fixed delay
_REPORTS = """
    SELECT label_id, transaction_id, is_fraud, source, reported_at FROM labels
    UNION ALL
    SELECT NULL::uuid, transaction_id, is_fraud, 'backfill', event_time + make_interval(days => %(delay)s)
    FROM transactions WHERE is_fraud IS NOT NULL
"""

_KNOWN_AT = f"""
    SELECT DISTINCT ON (transaction_id) transaction_id::text, is_fraud::int, source, reported_at
    FROM ({_REPORTS}) reports
    WHERE reported_at <= %(at)s AND transaction_id = ANY(%(ids)s::uuid[])
    ORDER BY transaction_id, reported_at DESC, label_id DESC NULLS LAST
"""

KNOWN_COLUMNS = ("transaction_id", "is_fraud", "source", "reported_at")


def known_at(cur: psycopg2.extensions.cursor, transaction_ids: Sequence[str], at: datetime,
             label_delay_days: int) -> pd.DataFrame:
    """The label of each of ``transaction_ids`` as known at ``at`` (one row per transaction that had one by then:
    KNOWN_COLUMNS), from the events and the rows' own labels."""
    cur.execute(_KNOWN_AT, {"at": at, "ids": "{" + ",".join(map(str, transaction_ids)) + "}",
                            "delay": label_delay_days})
    return pd.DataFrame(cur.fetchall(), columns=list(KNOWN_COLUMNS))
