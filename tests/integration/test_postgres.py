from __future__ import annotations

import uuid
from collections.abc import Iterator

import psycopg2
import pytest

from app import db, migrate
from app.config import Settings
from app.operations import postgres

pytestmark = pytest.mark.integration

TABLES = {"transactions", "features", "merchant_features", "training_features", "predictions",
          "stream_batch_commits", "customer_countries", "monitoring_reports", "labels",
          "fraud_reports", "merchant_fraud_reports", "list_entries"}


@pytest.fixture()
def scratch_db(stack: Settings) -> Iterator[Settings]:
    """A throwaway database on the real server, so migrations run from nothing without touching real data."""
    name = f"riskray_migration_{uuid.uuid4().hex[:8]}"
    try:
        yield postgres.create_database(stack, name)
    finally:
        postgres.drop_database(stack, name)


def _tables(settings: Settings) -> set[str]:
    with psycopg2.connect(settings.postgres_dsn()) as conn, conn.cursor() as cur:
        # a day partition of transactions or predictions is part of its table, not a table of its own
        cur.execute("SELECT relname FROM pg_class WHERE relnamespace = 'public'::regnamespace "
                    "AND relkind IN ('r', 'p') AND NOT relispartition")
        return {row[0] for row in cur.fetchall()} - {"alembic_version"}


def _primary_key(settings: Settings, table: str) -> list[str]:
    with psycopg2.connect(settings.postgres_dsn()) as conn, conn.cursor() as cur:
        cur.execute(
            """SELECT a.attname FROM pg_index i
               JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)
               WHERE i.indrelid = %s::regclass AND i.indisprimary ORDER BY array_position(i.indkey, a.attnum)""",
            (table,),
        )
        return [row[0] for row in cur.fetchall()]


def test_migrations_create_the_feature_store_and_rerun_as_a_no_op(scratch_db: Settings) -> None:
    migrate.upgrade(scratch_db)
    assert _tables(scratch_db) == TABLES
    assert migrate.current_revision(scratch_db) == migrate.head_revision(scratch_db)

    migrate.upgrade(scratch_db)  # again: nothing to do, nothing fails
    assert _tables(scratch_db) == TABLES

    assert _primary_key(scratch_db, "features") == ["customer_id", "window_start"]
    assert _primary_key(scratch_db, "merchant_features") == ["merchant_id", "window_start"]
    assert _primary_key(scratch_db, "transactions") == ["transaction_id", "event_time"]  # partitioned by day
    assert _primary_key(scratch_db, "predictions") == ["prediction_id", "predicted_at"]
    assert _primary_key(scratch_db, "stream_batch_commits") == ["query_name", "batch_id"]
    assert _primary_key(scratch_db, "customer_countries") == ["customer_id", "country"]


def test_stack_database_is_at_the_latest_revision(stack: Settings) -> None:
    assert migrate.current_revision(stack) == migrate.head_revision(stack)


def test_raw_rows_carry_the_key_the_card_history_btree_and_a_brin_on_event_time_only(stack: Settings) -> None:
    """Each index is paid for by every streamed row (migration 0007 dropped the two nothing read)."""
    with db.connection(stack) as conn, conn.cursor() as cur:
        cur.execute("SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'transactions' ORDER BY 1")
        indexes = dict(cur.fetchall())
    assert sorted(indexes) == ["transactions_customer_time_idx", "transactions_event_time_brin",
                               "transactions_pkey"]  # the partitioned table's: each day has its own copies
    assert "(customer_id, event_time)" in indexes["transactions_customer_time_idx"]
    assert "USING brin (event_time)" in indexes["transactions_event_time_brin"]


def test_the_index_migration_goes_down_and_up_again(scratch_db: Settings) -> None:
    """The streaming benchmark measures a checkout before it by migrating its scratch store down."""
    migrate.upgrade(scratch_db)
    migrate.downgrade(scratch_db, "0006")
    assert migrate.current_revision(scratch_db) == "0006"
    migrate.upgrade(scratch_db)
    assert migrate.current_revision(scratch_db) == migrate.head_revision(scratch_db)


def test_pool_hands_out_up_to_its_maximum_and_rolls_back_on_error(stack: Settings) -> None:
    small = stack.model_copy(update={"postgres_pool_max": 2})
    pool = db.get_pool(small)
    first, second = pool.getconn(), pool.getconn()
    with pytest.raises(psycopg2.pool.PoolError):
        pool.getconn()
    pool.putconn(first)
    pool.putconn(second)

    with pytest.raises(RuntimeError), db.connection(stack) as conn, conn.cursor() as cur:
        cur.execute("CREATE TEMP TABLE t (x int) ON COMMIT PRESERVE ROWS")
        raise RuntimeError("boom")
    with db.connection(stack) as conn, conn.cursor() as cur:
        cur.execute("SELECT to_regclass('pg_temp.t')")
        assert cur.fetchone()[0] is None
    db.ping(stack)


def test_more_concurrent_users_than_the_pool_holds_queue_briefly_then_get_a_clear_error(stack: Settings) -> None:
    """The original design's limit of 20: 25 users at once. While the 20 hold their connections, the other 5 wait
    their bounded time and are told why; once connections come back, waiting users get them."""
    import threading

    assert stack.postgres_pool_max == 20
    settings = stack.model_copy(update={"postgres_pool_wait_s": 0.5})
    release = threading.Event()
    holding = threading.Barrier(21)
    errors: list[str] = []
    answered: list[int] = []

    def hold() -> None:
        with db.connection(settings) as conn, conn.cursor() as cur:
            cur.execute("SELECT 1")
            holding.wait(timeout=60)
            release.wait(timeout=60)
            answered.append(cur.fetchone()[0])

    def late_user(waiting: Settings = settings) -> None:
        try:
            with db.connection(waiting) as conn, conn.cursor() as cur:
                cur.execute("SELECT 2")
                answered.append(cur.fetchone()[0])
        except db.PoolExhaustedError as error:
            errors.append(str(error))

    holders = [threading.Thread(target=hold) for _ in range(20)]
    for thread in holders:
        thread.start()
    holding.wait(timeout=60)  # all 20 connections are out
    late = [threading.Thread(target=late_user) for _ in range(5)]
    for thread in late:
        thread.start()
    for thread in late:
        thread.join(timeout=60)
        assert not thread.is_alive(), "a user waiting for the pool hung"
    release.set()
    for thread in holders:
        thread.join(timeout=60)
    assert len(errors) == 5 and answered.count(1) == 20
    assert "all 20 database connections" in errors[0] and "RISKRAY_POSTGRES_POOL_MAX" in errors[0]

    queued = [threading.Thread(target=late_user, args=(stack,)) for _ in range(25)]  # nobody holds on; 5 s wait
    for thread in queued:
        thread.start()
    for thread in queued:
        thread.join(timeout=60)
    assert answered.count(2) == 25 and len(errors) == 5  # the 5 beyond the pool queued and were served


# --- day partitions (migration 0013, app.partitions) -------------------------------------------------------------
def _insert(settings: Settings, table: str, times: list[str], first_id: int = 0) -> None:
    with psycopg2.connect(settings.postgres_dsn()) as conn, conn.cursor() as cur:
        for i, at in enumerate(times, start=first_id):
            if table == "transactions":
                cur.execute("INSERT INTO transactions (transaction_id, customer_id, merchant_id, amount, currency, "
                            "event_time, card_last_4, is_fraud, country, device_type) "
                            "VALUES (%s, 7, 3, 12.5, 'USD', %s, '1234', 0, 'US', 'web')",
                            (str(uuid.UUID(int=i + 1)), at))
            else:
                cur.execute("INSERT INTO predictions (customer_id, model_version, fraud_probability, is_fraud, "
                            "latency_ms, predicted_at) VALUES (7, '1', 0.2, 0, 3.0, %s)", (at,))


def _rows_by_partition(settings: Settings, table: str) -> dict[str, int]:
    with psycopg2.connect(settings.postgres_dsn()) as conn, conn.cursor() as cur:
        cur.execute(f"SELECT tableoid::regclass::text, count(*) FROM {table} GROUP BY 1")
        return dict(cur.fetchall())


def test_the_partitioning_migration_carries_every_row_into_its_day_and_back(scratch_db: Settings) -> None:
    migrate.upgrade(scratch_db, "0012")
    _insert(scratch_db, "transactions", ["2026-11-01 10:00+00", "2026-11-01 23:59+00", "2026-11-03 00:00+00"])
    _insert(scratch_db, "predictions", ["2026-11-02 08:00+00", "2026-11-02 09:00+00"])

    migrate.upgrade(scratch_db)
    assert _rows_by_partition(scratch_db, "transactions") == {"transactions_20261101": 2, "transactions_20261103": 1}
    assert _rows_by_partition(scratch_db, "predictions") == {"predictions_20261102": 2}
    _insert(scratch_db, "predictions", ["2026-11-02 10:00+00"])  # numbered on from the carried answers
    with psycopg2.connect(scratch_db.postgres_dsn()) as conn, conn.cursor() as cur:
        cur.execute("SELECT max(prediction_id), count(DISTINCT prediction_id) FROM predictions")
        assert cur.fetchone() == (3, 3)

    migrate.downgrade(scratch_db, "0012")
    assert _primary_key(scratch_db, "transactions") == ["transaction_id"]
    assert _rows_by_partition(scratch_db, "transactions") == {"transactions": 3}
    assert _rows_by_partition(scratch_db, "predictions") == {"predictions": 3}
    migrate.upgrade(scratch_db)
    assert sum(_rows_by_partition(scratch_db, "transactions").values()) == 3


def test_maintenance_makes_days_ahead_moves_waiting_rows_and_drops_only_days_past_retention(
        scratch_db: Settings) -> None:
    from datetime import UTC, datetime

    from app import partitions

    migrate.upgrade(scratch_db)
    # no partition for these days yet: the rows wait in DEFAULT
    _insert(scratch_db, "transactions", ["2027-01-10 12:00+00", "2027-01-10 13:00+00", "2027-09-01 00:00+00"])
    _insert(scratch_db, "predictions", ["2027-01-10 12:00+00"])
    first = datetime(2027, 1, 12, tzinfo=UTC)

    dry = partitions.maintain(scratch_db, first, dry_run=True)
    assert dry.tables[0].moved_from_default == 2 and dry.tables[0].left_in_default == 1
    assert _rows_by_partition(scratch_db, "transactions") == {"transactions_default": 3}  # a dry run changes nothing

    report = {t.table: t for t in partitions.maintain(scratch_db, first).tables}
    assert {"transactions_20270110", "transactions_20270112", "transactions_20270115"} <= set(
        report["transactions"].created)  # the waiting day, today and the days ahead (3 by default)
    assert _rows_by_partition(scratch_db, "transactions") == {"transactions_20270110": 2, "transactions_default": 1}
    assert _rows_by_partition(scratch_db, "predictions") == {"predictions_20270110": 1}

    # 182 days after those rows (retention: 180 and 90): their day is dropped, as a whole, and nothing newer
    later = datetime(2027, 7, 11, tzinfo=UTC)
    report = {t.table: t for t in partitions.maintain(scratch_db, later).tables}
    assert "transactions_20270110" in report["transactions"].dropped
    assert "predictions_20270110" in report["predictions"].dropped
    assert "transactions_20270112" not in report["transactions"].dropped  # 180 days old: still kept
    assert _rows_by_partition(scratch_db, "transactions") == {"transactions_default": 1}  # the far-ahead row waits
