from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from app import db
from app.config import Settings
from app.feature_store import _HISTORY_SQL, history_for

pytestmark = pytest.mark.integration


def test_history_sums_the_tiles_inside_each_window_and_delays_merchant_labels(stack: Settings) -> None:
    customer, merchant = 10**13 + random.randrange(10**9), 10**13 + random.randrange(10**9)
    t = datetime(2026, 11, 29, 12, 0, 30, tzinfo=UTC)
    floor = t.replace(second=0)
    tiles = [  # (tile start relative to t's minute, count, amount_sum, frauds)
        (timedelta(0), 2, 30.0, 0), (timedelta(hours=-20), 1, 10.0, 1), (timedelta(days=-3), 4, 100.0, 0),
        (timedelta(days=-8), 3, 60.0, 1), (timedelta(days=-20), 3, 60.0, 1), (timedelta(days=-45), 9, 900.0, 2),
        (timedelta(minutes=3), 5, 5.0, 0),
    ]
    with db.connection(stack) as conn, conn.cursor() as cur:
        for offset, count, total, frauds in tiles:
            start = floor + offset
            cur.execute(
                "INSERT INTO features (customer_id, window_start, window_end, transaction_count, amount_sum, "
                "avg_amount, max_amount, amount_std, fraud_count) VALUES (%s, %s, %s, %s, %s, %s, %s, 0, %s)",
                (customer, start, start + timedelta(minutes=1), count, total, total / count, total, frauds),
            )
            cur.execute(
                "INSERT INTO merchant_features (merchant_id, window_start, window_end, transaction_count, "
                "fraud_count) VALUES (%s, %s, %s, %s, %s)",
                (merchant, start, start + timedelta(minutes=1), count, frauds),
            )
        cur.execute("INSERT INTO customer_countries VALUES (%s, 'DE', 7), (%s, 'FR', 2)", (customer, customer))
        h = history_for(cur, [customer, customer], [merchant, merchant], ["FR", "US"], [t, t], label_delay_days=7)
        conn.rollback()
    assert (h["minute_count"][0], h["minute_sum"][0], h["minute_max"][0]) == (2, 30.0, 30.0)
    assert (h["cust_count_1d"][0], h["cust_amount_sum_1d"][0]) == (3, 40.0)  # current tile + 20 h ago
    assert (h["cust_count_7d"][0], h["cust_count_30d"][0]) == (7, 13)  # never the tile 3 minutes later
    assert h["merchant_count_30d"][0] == 13
    # labels from [t - 7 d - d, t - 7 d): the 8-day-old tile for d = 1 and 7, plus the 20-day-old one for 30
    assert (h["merchant_labelled_count_1d"][0], h["merchant_labelled_fraud_1d"][0]) == (3, 1)
    assert (h["merchant_labelled_count_30d"][0], h["merchant_labelled_fraud_30d"][0]) == (6, 2)
    assert list(h["cust_country_count"]) == [2, 0]
    assert (h["cust_top_country_count"][0], h["cust_total_count"][0]) == (7, 9)


def test_a_batch_read_gets_a_budget_that_grows_with_its_size(stack: Settings) -> None:
    """A 20 ms per-request budget would cancel a 2,000-row read (~0.1 ms a row); the per-row allowance lets it
    finish, on the prepared statement the serving connections use."""
    from serve_deployments.online_features import OnlineFeatures

    customer, merchant = 10**13 + random.randrange(10**9), 10**13 + random.randrange(10**9)
    start = datetime(2026, 11, 29, 11, 0, tzinfo=UTC)
    with db.connection(stack) as conn, conn.cursor() as cur:
        cur.execute(
            "INSERT INTO features (customer_id, window_start, window_end, transaction_count, amount_sum, avg_amount, "
            "max_amount, amount_std, fraud_count) VALUES (%s, %s, %s, 3, 30.0, 10.0, 12.0, 1.0, 0)",
            (customer, start, start + timedelta(minutes=1)))
        conn.commit()
    try:
        settings = stack.model_copy(update={"serve_store_timeout_ms": 20, "serve_store_timeout_per_row_ms": 0.5,
                                            "serve_feature_cache_ttl_s": 0})
        features = OnlineFeatures(settings)
        rows = 2000
        t = start + timedelta(hours=1)
        customers = [customer, *random.sample(range(1, 10**6), rows - 1)]
        history, degraded = features.history(customers, [merchant] * rows, ["DE"] * rows, [t] * rows)
        assert not degraded, features.last_error
        assert (history["cust_count_1d"][0], history["cust_amount_sum_1d"][0]) == (3, 30.0)
    finally:
        with db.connection(stack) as conn, conn.cursor() as cur:
            cur.execute("DELETE FROM features WHERE customer_id = %s", (customer,))
            conn.commit()


def _merchant_tiles(cur, merchant: int) -> list[tuple[int, int, int, int]]:
    cur.execute("SELECT transaction_count, fraud_count, count_through, fraud_through FROM merchant_features "
                "WHERE merchant_id = %s ORDER BY window_start", (merchant,))
    return cur.fetchall()


def test_merchant_tiles_keep_running_totals_whatever_order_and_updates_they_are_written_in(stack: Settings) -> None:
    merchant = 10**13 + random.randrange(10**9)
    start = datetime(2026, 11, 1, tzinfo=UTC)
    minutes = list(range(0, 600, 7))
    random.shuffle(minutes)
    insert = ("INSERT INTO merchant_features (merchant_id, window_start, window_end, transaction_count, fraud_count) "
              "VALUES (%s, %s, %s, %s, %s) ON CONFLICT (merchant_id, window_start) DO UPDATE "
              "SET transaction_count = EXCLUDED.transaction_count, fraud_count = EXCLUDED.fraud_count")
    with db.connection(stack) as conn, conn.cursor() as cur:
        # one statement of many tiles, as the stream writes a batch
        cur.executemany(insert, [(merchant, start + timedelta(minutes=m), start + timedelta(minutes=m + 1),
                                  1 + m % 5, m % 2) for m in minutes[:40]])
        for m in minutes[40:]:  # then tiles one by one, out of order
            cur.execute(insert, (merchant, start + timedelta(minutes=m), start + timedelta(minutes=m + 1), 1 + m % 5,
                                 m % 2))
        # a late transaction updates an early tile, as an upsert does
        first = start + timedelta(minutes=min(minutes))
        cur.execute(insert, (merchant, first, first + timedelta(minutes=1), 50, 3))
        tiles = _merchant_tiles(cur, merchant)
        conn.rollback()
    counts, frauds = [t[0] for t in tiles], [t[1] for t in tiles]
    assert counts[0] == 50
    assert [t[2] for t in tiles] == [sum(counts[: i + 1]) for i in range(len(tiles))]
    assert [t[3] for t in tiles] == [sum(frauds[: i + 1]) for i in range(len(tiles))]


def test_a_merchant_window_reads_a_few_tiles_however_busy_the_merchant(stack: Settings) -> None:
    """A merchant with a tile every minute for a month and a half: the read probes its running totals
    instead of summing ~65,000 tiles per request."""
    merchant = 10**13 + random.randrange(10**9)
    t = datetime(2026, 11, 29, 12, 0, 30, tzinfo=UTC)
    minutes = 45 * 24 * 60
    with db.connection(stack) as conn, conn.cursor() as cur:
        cur.execute(
            "INSERT INTO merchant_features (merchant_id, window_start, window_end, transaction_count, fraud_count) "
            "SELECT %s, w, w + interval '1 minute', 2, (m %% 100 = 0)::int "
            "FROM generate_series(1, %s) AS m, LATERAL (SELECT %s - m * interval '1 minute' AS w) s",
            (merchant, minutes, t.replace(second=0)))
        h = history_for(cur, [1], [merchant], ["DE"], [t], label_delay_days=7)
        cur.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + _HISTORY_SQL,
                    {"customer": "{1}", "merchant": f"{{{merchant}}}", "country": "{DE}", "t": f"{{{t.isoformat()}}}",
                     "delay": 7})
        plan = cur.fetchone()[0][0]["Plan"]
        conn.rollback()
    day = 24 * 60
    assert h["merchant_count_1d"][0] == 2 * day
    assert h["merchant_count_30d"][0] == 2 * 30 * day
    assert h["merchant_labelled_count_7d"][0] == 2 * 7 * day
    assert h["merchant_labelled_fraud_30d"][0] == 30 * day // 100

    def merchant_rows_read(node: dict) -> float:
        own = node["Actual Rows"] * node["Actual Loops"] if node.get("Relation Name") == "merchant_features" else 0
        return own + sum(merchant_rows_read(child) for child in node.get("Plans", []))

    assert merchant_rows_read(plan) <= 8
