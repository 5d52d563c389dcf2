from __future__ import annotations

import uuid
from collections.abc import Iterator

import psycopg2
import pytest

from app import db, migrate
from app.config import Settings
from app.stack import postgres

pytestmark = pytest.mark.integration

TABLES = {"transactions", "features", "merchant_features", "training_features", "predictions",
          "stream_batch_commits", "customer_countries", "monitoring_reports"}


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
        cur.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
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
    assert _primary_key(scratch_db, "transactions") == ["transaction_id"]
    assert _primary_key(scratch_db, "stream_batch_commits") == ["query_name", "batch_id"]
    assert _primary_key(scratch_db, "customer_countries") == ["customer_id", "country"]


def test_stack_database_is_at_the_latest_revision(stack: Settings) -> None:
    assert migrate.current_revision(stack) == migrate.head_revision(stack)


def test_customer_time_index_serves_window_lookups(stack: Settings) -> None:
    with db.connection(stack) as conn, conn.cursor() as cur:
        cur.execute("SELECT indexdef FROM pg_indexes WHERE tablename = 'transactions'")
        definitions = " ".join(row[0] for row in cur.fetchall())
    assert "(customer_id, event_time)" in definitions


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
