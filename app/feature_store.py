"""Online reads of the feature store: longer windows as sums over the stream's 1-minute tiles.

A 1, 7 or 30-day window of a customer or merchant is the sum of its tiles that started inside the window, read
with one index range scan on (entity id, window_start) — never a scan of raw transactions. Tiles are written by
the streaming job (streaming.store_writer); their columns are declared in app.features.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import psycopg2.extensions

from app.features import TILE_TABLES, Entity

LONG_WINDOWS_DAYS = (1, 7, 30)


@dataclass(frozen=True)
class WindowTotals:
    days: int
    transaction_count: int
    fraud_count: int
    amount_sum: float | None  # customers only: merchant tiles keep no amounts

    @property
    def mean_amount(self) -> float | None:
        if self.amount_sum is None or self.transaction_count == 0:
            return None
        return self.amount_sum / self.transaction_count


def window_totals(cur: psycopg2.extensions.cursor, entity: Entity, entity_id: int, as_of: datetime,
                  days: tuple[int, ...] = LONG_WINDOWS_DAYS) -> list[WindowTotals]:
    """Totals over the tiles that started in [as_of - d days, as_of) for each d, in one query."""
    table, key = TILE_TABLES[entity]
    has_amount = entity == "customer"
    parts = []
    for d in days:
        since = f"window_start >= %(as_of)s - interval '{int(d)} days'"
        parts.append(f"coalesce(sum(transaction_count) FILTER (WHERE {since}), 0)")
        parts.append(f"coalesce(sum(fraud_count) FILTER (WHERE {since}), 0)")
        parts.append(f"sum(amount_sum) FILTER (WHERE {since})" if has_amount else "NULL")
    cur.execute(
        f"SELECT {', '.join(parts)} FROM {table} WHERE {key} = %(id)s "
        f"AND window_start >= %(as_of)s - interval '{int(max(days))} days' AND window_start < %(as_of)s",
        {"id": entity_id, "as_of": as_of},
    )
    row = cur.fetchone()
    return [
        WindowTotals(d, int(row[3 * i]), int(row[3 * i + 1]),
                     (float(row[3 * i + 2]) if row[3 * i + 2] is not None else (0.0 if has_amount else None)))
        for i, d in enumerate(days)
    ]
