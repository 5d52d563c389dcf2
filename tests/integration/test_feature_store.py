from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from app import db
from app.config import Settings
from app.feature_store import window_totals

pytestmark = pytest.mark.integration


def test_long_windows_are_sums_over_the_tiles_inside_them(stack: Settings) -> None:
    customer = 10**13 + random.randrange(10**9)
    as_of = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
    tiles = [  # (age, count, amount_sum, frauds)
        (timedelta(minutes=5), 2, 30.0, 0), (timedelta(hours=20), 1, 10.0, 1), (timedelta(days=3), 4, 100.0, 0),
        (timedelta(days=20), 3, 60.0, 1), (timedelta(days=45), 9, 900.0, 2), (timedelta(minutes=-3), 5, 5.0, 0),
    ]
    with db.connection(stack) as conn, conn.cursor() as cur:
        for age, count, total, frauds in tiles:
            start = as_of - age
            cur.execute(
                "INSERT INTO features (customer_id, window_start, window_end, transaction_count, amount_sum, "
                "avg_amount, max_amount, amount_std, fraud_count) VALUES (%s, %s, %s, %s, %s, %s, %s, 0, %s)",
                (customer, start, start + timedelta(minutes=1), count, total, total / count, total, frauds),
            )
        one, seven, thirty = window_totals(cur, "customer", customer, as_of)
        cur.execute("DELETE FROM features WHERE customer_id = %s", (customer,))
    assert (one.transaction_count, one.amount_sum, one.fraud_count) == (3, 40.0, 1)
    assert (seven.transaction_count, seven.amount_sum) == (7, 140.0)
    assert (thirty.transaction_count, thirty.fraud_count) == (10, 2)
    assert thirty.mean_amount == pytest.approx(200.0 / 10)
