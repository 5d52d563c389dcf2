from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from app import db
from app.config import Settings
from app.feature_store import _HISTORY_SQL, history_for

pytestmark = pytest.mark.integration

SEED = 20261202  # the shuffled write order and the batch's other customers; in each failure message


def test_history_sums_the_tiles_inside_each_window_and_counts_fraud_reports_before_the_minute(stack: Settings) -> None:
    customer, merchant = 10**13 + 1, 10**13 + 2  # ids of this test's own (the scratch store is fresh per session)
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
            if frauds:  # the merchant's fraud reports, by report time, in tiles of their own
                cur.execute("INSERT INTO merchant_fraud_reports (merchant_id, window_start, fraud_reports) "
                            "VALUES (%s, %s, %s)", (merchant, start, frauds))
        cur.execute("INSERT INTO merchant_fraud_reports (merchant_id, window_start, fraud_reports) VALUES "
                    "(%s, %s, 5)", (merchant, floor))  # reported in the transaction's own minute: not yet counted
        cur.execute("INSERT INTO customer_countries VALUES (%s, 'DE', 7), (%s, 'FR', 2)", (customer, customer))
        h = history_for(cur, [customer, customer], [merchant, merchant], ["FR", "US"], [t, t])
        conn.rollback()
    assert (h["minute_count"][0], h["minute_sum"][0], h["minute_max"][0]) == (2, 30.0, 30.0)
    assert (h["cust_count_1d"][0], h["cust_amount_sum_1d"][0]) == (3, 40.0)  # current tile + 20 h ago
    assert (h["cust_count_7d"][0], h["cust_count_30d"][0]) == (7, 13)  # never the tile 3 minutes later
    assert h["merchant_count_30d"][0] == 13
    # fraud reports from [floor - d, floor): 20 h ago for d = 1 and 7, plus 8 and 20 days ago for 30; never the
    # report in the transaction's own minute nor the one 3 minutes later
    assert (h["merchant_fraud_reports_1d"][0], h["merchant_fraud_reports_7d"][0]) == (1, 1)
    assert h["merchant_fraud_reports_30d"][0] == 3
    assert list(h["cust_country_count"]) == [2, 0]
    assert (h["cust_top_country_count"][0], h["cust_total_count"][0]) == (7, 9)


def test_a_batch_read_gets_a_budget_that_grows_with_its_size(stack: Settings) -> None:
    """A 20 ms per-request budget would cancel a 2,000-row read (~0.1 ms a row); the per-row allowance lets it
    finish, on the prepared statement the serving connections use."""
    from serve_deployments.online_features import OnlineFeatures

    customer, merchant = 10**13 + 3, 10**13 + 4
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
        customers = [customer, *random.Random(SEED).sample(range(1, 10**6), rows - 1)]
        history, degraded = features.history(customers, [merchant] * rows, ["DE"] * rows, [t] * rows)
        assert not degraded, features.last_error
        assert (history["cust_count_1d"][0], history["cust_amount_sum_1d"][0]) == (3, 30.0)
    finally:
        with db.connection(stack) as conn, conn.cursor() as cur:
            cur.execute("DELETE FROM features WHERE customer_id = %s", (customer,))
            conn.commit()


def test_tiles_keep_running_totals_whatever_order_and_updates_they_are_written_in(stack: Settings) -> None:
    entity = 10**13 + 5
    start = datetime(2026, 11, 1, tzinfo=UTC)
    minutes = list(range(0, 600, 7))
    random.Random(SEED).shuffle(minutes)
    card = ("INSERT INTO features (customer_id, window_start, window_end, transaction_count, amount_sum, avg_amount, "
            "max_amount) VALUES (%s, %s, %s, %s, %s, 1, 1) ON CONFLICT (customer_id, window_start) DO UPDATE "
            "SET transaction_count = EXCLUDED.transaction_count, amount_sum = EXCLUDED.amount_sum")
    merchant = ("INSERT INTO merchant_features (merchant_id, window_start, window_end, transaction_count, "
                "fraud_count) VALUES (%s, %s, %s, %s, %s) ON CONFLICT (merchant_id, window_start) DO UPDATE "
                "SET transaction_count = EXCLUDED.transaction_count, fraud_count = EXCLUDED.fraud_count")

    def tile(m: int, count: int, other: float) -> tuple:
        return entity, start + timedelta(minutes=m), start + timedelta(minutes=m + 1), count, other

    with db.connection(stack) as conn, conn.cursor() as cur:
        for insert, other in ((card, lambda m: m * 1.25), (merchant, lambda m: m % 2)):
            # one statement of many tiles, as the stream writes a batch; then tiles one by one, out of order
            cur.executemany(insert, [tile(m, 1 + m % 5, other(m)) for m in minutes[:40]])
            for m in minutes[40:]:
                cur.execute(insert, tile(m, 1 + m % 5, other(m)))
            cur.execute(insert, tile(min(minutes), 50, 3))  # a late transaction updates the first tile
        cur.execute("SELECT transaction_count, amount_sum, count_through, amount_through FROM features "
                    "WHERE customer_id = %s ORDER BY window_start", (entity,))
        cards = cur.fetchall()
        cur.execute("SELECT transaction_count, fraud_count, count_through, fraud_through FROM merchant_features "
                    "WHERE merchant_id = %s ORDER BY window_start", (entity,))
        merchants = cur.fetchall()
        conn.rollback()
    for tiles in (cards, merchants):
        assert tiles[0][0] == 50 and len(tiles) == len(minutes), f"seed {SEED}"
        for column, total in ((0, 2), (1, 3)):
            values = [t[column] for t in tiles]
            assert [t[total] for t in tiles] == pytest.approx([sum(values[: i + 1]) for i in range(len(tiles))])


def test_a_read_probes_a_few_tiles_however_busy_the_card_and_the_merchant(stack: Settings) -> None:
    """A card and a merchant with a tile every minute for a month and a half: the read probes their running
    totals instead of summing ~65,000 tiles each per request."""
    entity = 10**13 + 6
    t = datetime(2026, 11, 29, 12, 0, 30, tzinfo=UTC)
    minutes = 45 * 24 * 60
    every_minute = ("FROM generate_series(0, %s) AS m, LATERAL (SELECT %s - m * interval '1 minute' AS w) s")
    with db.connection(stack) as conn, conn.cursor() as cur:
        cur.execute("INSERT INTO features (customer_id, window_start, window_end, transaction_count, amount_sum, "
                    "avg_amount, max_amount) SELECT %s, w, w + interval '1 minute', 1, 2.5, 2.5, 2.5 " + every_minute,
                    (entity, minutes, t.replace(second=0)))
        cur.execute("INSERT INTO merchant_features (merchant_id, window_start, window_end, transaction_count) "
                    "SELECT %s, w, w + interval '1 minute', 2 " + every_minute, (entity, minutes, t.replace(second=0)))
        cur.execute("INSERT INTO merchant_fraud_reports (merchant_id, window_start, fraud_reports) "
                    "SELECT %s, w, 1 " + every_minute, (entity, minutes, t.replace(second=0)))
        # the statistics autovacuum keeps: without them the planner may take a table just filled for empty and
        # scan it (a clean clone's run read 119,523 fraud-report rows)
        cur.execute("ANALYZE features, merchant_features, merchant_fraud_reports")
        h = history_for(cur, [entity], [entity], ["DE"], [t])
        # a None id skips that entity: serving asks so for a part it has cached
        apart = history_for(cur, [entity, None], [None, entity], ["DE", "DE"], [t, t])
        cur.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + _HISTORY_SQL,
                    {"customer": f"{{{entity}}}", "merchant": f"{{{entity}}}", "country": "{DE}",
                     "t": f"{{{t.isoformat()}}}"})
        plan = cur.fetchone()[0][0]["Plan"]
        conn.rollback()
    day = 24 * 60
    assert (h["minute_count"][0], h["minute_sum"][0], h["minute_max"][0]) == (1, 2.5, 2.5)  # the tile at t's minute
    assert (h["cust_count_1d"][0], h["cust_count_30d"][0]) == (day + 1, 30 * day + 1)
    assert h["cust_amount_sum_7d"][0] == pytest.approx(2.5 * (7 * day + 1))
    assert (h["merchant_count_1d"][0], h["merchant_count_30d"][0]) == (2 * (day + 1), 2 * (30 * day + 1))
    assert (h["merchant_fraud_reports_7d"][0], h["merchant_fraud_reports_30d"][0]) == (7 * day, 30 * day)

    for name in h:  # row 0 names only the card, row 1 only the merchant
        asked, skipped = (1, 0) if name.startswith("merchant_") else (0, 1)
        np.testing.assert_equal(apart[name][asked], h[name][0], err_msg=name)
        assert apart[name][skipped] == 0 or np.isnan(apart[name][skipped]), name

    def rows_read(node: dict, table: str) -> float:
        own = node["Actual Rows"] * node["Actual Loops"] if node.get("Relation Name") == table else 0
        return own + sum(rows_read(child, table) for child in node.get("Plans", []))

    assert rows_read(plan, "features") <= 4
    assert rows_read(plan, "merchant_features") <= 4
    assert rows_read(plan, "merchant_fraud_reports") <= 4
