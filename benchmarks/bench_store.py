"""Benchmark databases: a scratch feature store per benchmark, so a run neither reads nor grows the local stack's
own data, and the serving benchmark's history is the same every run.

The serving numbers depend on what the store holds (tiles per card, tiles per merchant, size of the predictions
table); measured against the local stack's database they drifted by a third between sessions as demos and tests
added history.
"""

from __future__ import annotations

from datetime import UTC, datetime

import psycopg2

from app import db, migrate
from app.config import Settings
from app.features import history_span
from app.operations import postgres

STORE_TABLES = ("transactions", "features", "merchant_features", "customer_countries", "predictions",
                "stream_batch_commits", "labels", "fraud_reports", "merchant_fraud_reports", "list_entries")
BUSY_MERCHANT_EVERY = 100  # every 100th merchant has a tile every minute; the others one an hour


def scratch_database(settings: Settings, name: str, revision: str = "head") -> Settings:
    """``name`` created if missing, migrated to ``revision`` (an older one: an A/B against an older checkout) and
    emptied; the settings that point at it."""
    scratch = postgres.create_database(settings, name)
    migrate.upgrade(scratch)
    if revision != "head":
        migrate.downgrade(scratch, revision)
    with db.connection(scratch) as conn, conn.cursor() as cur:
        cur.execute("SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'")
        present = {row[0] for row in cur.fetchall()}  # an older schema (--against) lacks the newer tables
        cur.execute(f"TRUNCATE {', '.join(t for t in STORE_TABLES if t in present)}")
    return scratch


def seed_history(settings: Settings, customers: int, merchants: int) -> dict[str, int]:
    """Deterministic history for customers 1..``customers`` and merchants 1..``merchants`` up to this minute,
    as far back as the windows reach (``history_span``): two tiles a day per card, a tile an hour per merchant and a
    tile every minute for every ``BUSY_MERCHANT_EVERY``-th merchant, and two countries per card. Returns row
    counts per table."""
    days = history_span()
    params = {"customers": customers, "merchants": merchants, "days": days, "busy": BUSY_MERCHANT_EVERY,
              "now": datetime.now(UTC).replace(second=0, microsecond=0)}
    with db.connection(settings) as conn, conn.cursor() as cur:
        # The running totals are written here in one pass (the tables' triggers would recompute them all again).
        cur.execute("ALTER TABLE features DISABLE TRIGGER USER; ALTER TABLE merchant_features DISABLE TRIGGER USER")
        cur.execute(
            """
            INSERT INTO features (customer_id, window_start, window_end, transaction_count, amount_sum, avg_amount,
                                  max_amount, amount_std, fraud_count, count_through, amount_through)
            SELECT c, w, w + interval '1 minute', n, n * a, a, a * 1.5, CASE WHEN n > 1 THEN a * 0.3 ELSE 0 END, 0,
                   sum(n) OVER tiles, sum(n * a) OVER tiles
            FROM (SELECT DISTINCT ON (c, w) c, w, n, a
                  FROM generate_series(1, %(customers)s) c, generate_series(1, 2 * %(days)s) k,
                       LATERAL (SELECT %(now)s - ((hashint4(c * 100003 + k) & 2147483647) %% (%(days)s * 1440))
                                                 * interval '1 minute' AS w,
                                       1 + (c + k) %% 3 AS n, 5 + (hashint4(c + 7 * k) & 1023) %% 120 AS a) s
                  ORDER BY c, w) tiles
            WINDOW tiles AS (PARTITION BY c ORDER BY w)
            """, params)
        cur.execute(
            """
            INSERT INTO merchant_features (merchant_id, window_start, window_end, transaction_count, fraud_count,
                                           count_through, fraud_through)
            SELECT m, w, w + interval '1 minute', n, f, sum(n) OVER tiles, sum(f) OVER tiles
            FROM generate_series(1, %(merchants)s) m,
                 LATERAL (SELECT CASE WHEN m %% %(busy)s = 0 THEN 1 ELSE 60 END AS every) e,
                 LATERAL generate_series(0, %(days)s * 1440 / e.every) k,
                 LATERAL (SELECT %(now)s - k * e.every * interval '1 minute' AS w, 1 + (m + k) %% 4 AS n,
                                 ((m * 31 + k) %% 50 = 0)::int AS f) s
            WINDOW tiles AS (PARTITION BY m ORDER BY w)
            """, params)
        cur.execute("ALTER TABLE features ENABLE TRIGGER USER; ALTER TABLE merchant_features ENABLE TRIGGER USER")
        # the merchants' fraud reports by report time: a report about every 50th tile, in the minute before it
        cur.execute(
            """
            INSERT INTO merchant_fraud_reports (merchant_id, window_start, fraud_reports, fraud_reports_through)
            SELECT merchant_id, window_start - interval '1 minute', 1,
                   row_number() OVER (PARTITION BY merchant_id ORDER BY window_start)
            FROM merchant_features WHERE fraud_count > 0
            """)
        cur.execute(
            """
            INSERT INTO customer_countries (customer_id, country, transaction_count)
            SELECT c, 'DE', 40 + c %% 20 FROM generate_series(1, %(customers)s) c
            UNION ALL SELECT c, 'FR', 1 + c %% 5 FROM generate_series(1, %(customers)s) c
            """, params)
        counts = {}
        for table in ("features", "merchant_features", "merchant_fraud_reports", "customer_countries"):
            cur.execute(f"SELECT count(*) FROM {table}")
            counts[table] = int(cur.fetchone()[0])
    # now rather than by autovacuum in the middle of a measurement (it wakes for freshly filled tables)
    vacuum = psycopg2.connect(settings.postgres_dsn())
    vacuum.autocommit = True
    with vacuum.cursor() as cur:
        cur.execute("VACUUM (ANALYZE) features, merchant_features, merchant_fraud_reports, customer_countries")
    vacuum.close()
    return counts
