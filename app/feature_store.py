"""Online reads of the feature store: each transaction's history (``app.model_inputs.HISTORY_COLUMNS``) as of
its event time, from the stream's 1-minute tiles and the customer country counts.

One query answers a whole batch of transactions: per transaction one index range scan on (customer_id,
window_start) over ``features``, one on (merchant_id, window_start) over ``merchant_features`` and one
primary-key read of ``customer_countries`` — never a scan of raw transactions. The window semantics are those
of ``app.model_inputs`` (``app.point_in_time`` rebuilds the same values from raw transactions for training).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import numpy as np
import psycopg2.extensions

from app.model_inputs import HISTORY_COLUMNS, LONG_WINDOWS_DAYS


def _history_sql(customer_ids: str, merchant_ids: str, country_codes: str, times: str, delay: str) -> str:
    floor = "date_trunc('minute', r.t)"
    longest = max(LONG_WINDOWS_DAYS)
    customer = [
        f"coalesce(sum(transaction_count) FILTER (WHERE window_start = {floor}), 0)",
        f"coalesce(sum(amount_sum) FILTER (WHERE window_start = {floor}), 0)",
        f"max(max_amount) FILTER (WHERE window_start = {floor})",
        f"max(amount_std) FILTER (WHERE window_start = {floor})",
        *(f"coalesce(sum(transaction_count) FILTER (WHERE window_start >= {floor} - interval '{d} days'), 0)"
          for d in LONG_WINDOWS_DAYS),
        *(f"coalesce(sum(amount_sum) FILTER (WHERE window_start >= {floor} - interval '{d} days'), 0)"
          for d in LONG_WINDOWS_DAYS),
    ]
    delayed_end = f"{floor} - make_interval(days => {delay})"
    merchant = [
        *(f"coalesce(sum(transaction_count) FILTER (WHERE window_start >= {floor} - interval '{d} days' "
          f"AND window_start <= {floor}), 0)" for d in LONG_WINDOWS_DAYS),
        *(f"coalesce(sum(transaction_count) FILTER (WHERE window_start >= {delayed_end} - interval '{d} days' "
          f"AND window_start < {delayed_end}), 0)" for d in LONG_WINDOWS_DAYS),
        *(f"coalesce(sum(fraud_count) FILTER (WHERE window_start >= {delayed_end} - interval '{d} days' "
          f"AND window_start < {delayed_end}), 0)" for d in LONG_WINDOWS_DAYS),
    ]
    countries = [
        "coalesce(sum(transaction_count) FILTER (WHERE cc.country = r.country), 0)",
        "coalesce(max(transaction_count), 0)",
        "coalesce(sum(transaction_count), 0)",
    ]
    return f"""
        WITH r AS (
            SELECT * FROM unnest({customer_ids}::bigint[], {merchant_ids}::bigint[], {country_codes}::text[],
                                 {times}::timestamptz[]) WITH ORDINALITY AS r(customer_id, merchant_id, country, t, i)
        )
        SELECT c.*, m.*, k.* FROM r
        CROSS JOIN LATERAL (
            SELECT {', '.join(customer)} FROM features f
            WHERE f.customer_id = r.customer_id AND f.window_start >= {floor} - interval '{longest} days'
              AND f.window_start <= {floor}
        ) c
        CROSS JOIN LATERAL (
            SELECT {', '.join(merchant)} FROM merchant_features mf
            WHERE mf.merchant_id = r.merchant_id
              AND mf.window_start >= {floor} - make_interval(days => {delay}) - interval '{longest} days'
              AND mf.window_start <= {floor}
        ) m
        CROSS JOIN LATERAL (
            SELECT {', '.join(countries)} FROM customer_countries cc WHERE cc.customer_id = r.customer_id
        ) k
        ORDER BY r.i
    """


_HISTORY_SQL = _history_sql("%(customer)s", "%(merchant)s", "%(country)s", "%(t)s", "%(delay)s")
PREPARED = "riskray_history"
_PREPARE_SQL = (f"PREPARE {PREPARED} (bigint[], bigint[], text[], timestamptz[], integer) AS "
                + _history_sql("$1", "$2", "$3", "$4", "$5"))


def prepare_history(cur: psycopg2.extensions.cursor) -> None:
    """Prepare the history query on this connection: planning the query costs ~2 ms, more than running it."""
    cur.execute(_PREPARE_SQL)


def history_for(cur: psycopg2.extensions.cursor, customer_ids: Sequence[int], merchant_ids: Sequence[int],
                countries: Sequence[str], event_times: Sequence[datetime], label_delay_days: int,
                prepared: bool = False) -> dict[str, np.ndarray]:
    """HISTORY_COLUMNS for a batch of transactions, as the store knows them now (float arrays, one per column).
    ``prepared``: the connection ran :func:`prepare_history` already."""
    params = {"customer": list(customer_ids), "merchant": list(merchant_ids), "country": list(countries),
              "t": list(event_times), "delay": label_delay_days}
    if prepared:
        cur.execute(f"EXECUTE {PREPARED} (%(customer)s, %(merchant)s, %(country)s, %(t)s, %(delay)s)", params)
    else:
        cur.execute(_HISTORY_SQL, params)
    rows = cur.fetchall()
    values = np.array(rows, dtype=np.float64).reshape(len(rows), len(HISTORY_COLUMNS))
    return {name: values[:, i] for i, name in enumerate(HISTORY_COLUMNS)}
