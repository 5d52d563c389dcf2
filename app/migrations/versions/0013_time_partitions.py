"""``transactions`` and ``predictions`` partitioned by day (PostgreSQL's native range partitioning), existing rows
carried over.

At 10,000 events/s ``transactions`` grows by ~860 million rows a day and ``predictions`` as fast as traffic; a
partition per UTC day lets retention drop a day as one file instead of deleting its rows one by one, and keeps each
index a day's size. ``transactions`` is partitioned by event time, ``predictions`` by answer time. A DEFAULT
partition takes a row whose day has no partition yet (an event time far ahead, a day the maintenance has not
reached): nothing is ever refused for its time. ``riskray db maintain`` (``app.partitions``) creates the days
ahead, moves rows out of DEFAULT into their day and drops the days retention has passed.

A partitioned table's unique keys must hold the partition key: ``transactions`` is unique per (transaction_id,
event_time) and ``predictions`` per (prediction_id, predicted_at). A message sent twice carries the same event
time, so a duplicate is still stored once; a replayed batch is still caught by its ledger row.

``riskray_day_partition(parent, day)`` is the one way a day partition is made (this migration and the maintenance
both call it): the day's rows waiting in DEFAULT move into it in the same database transaction.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-07
"""

from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

DAY_PARTITION_FUNCTION = """
CREATE OR REPLACE FUNCTION riskray_day_partition(parent text, day date) RETURNS text
LANGUAGE plpgsql AS $body$
DECLARE
    part text := parent || '_' || to_char(day, 'YYYYMMDD');
    lo timestamptz := day::timestamp AT TIME ZONE 'UTC';
    hi timestamptz := (day + 1)::timestamp AT TIME ZONE 'UTC';
    key text;
BEGIN
    IF to_regclass(part) IS NOT NULL THEN
        RETURN NULL;  -- the day exists already
    END IF;
    SELECT a.attname INTO key FROM pg_partitioned_table t
        JOIN pg_attribute a ON a.attrelid = t.partrelid AND a.attnum = t.partattrs[0]
        WHERE t.partrelid = parent::regclass;
    EXECUTE format('CREATE TABLE %I (LIKE %I INCLUDING DEFAULTS INCLUDING CONSTRAINTS)', part, parent);
    -- the day's rows that waited in DEFAULT: a day range overlapping DEFAULT's rows cannot be attached
    EXECUTE format('WITH moved AS (DELETE FROM %I WHERE %I >= $1 AND %I < $2 RETURNING *) '
                   'INSERT INTO %I SELECT * FROM moved', parent || '_default', key, key, part) USING lo, hi;
    EXECUTE format('ALTER TABLE %I ATTACH PARTITION %I FOR VALUES FROM (%L) TO (%L)', parent, part, lo, hi);
    RETURN part;
END
$body$;
"""

# table -> (partition key, primary key, indexes besides it: the ones the unpartitioned table had)
TABLES = {
    "transactions": ("event_time", "transaction_id, event_time", (
        "CREATE INDEX transactions_customer_time_idx ON transactions (customer_id, event_time)",
        "CREATE INDEX transactions_event_time_brin ON transactions USING brin (event_time)",
    )),
    "predictions": ("predicted_at", "prediction_id, predicted_at", (
        "CREATE INDEX predictions_predicted_at_idx ON predictions (predicted_at)",
        "CREATE INDEX predictions_transaction_idx ON predictions (transaction_id)",
        "CREATE INDEX predictions_model_version_idx ON predictions (model_version, predicted_at)",
        "CREATE INDEX predictions_event_time_idx ON predictions (event_time)",
        "CREATE INDEX predictions_reviews_idx ON predictions (predicted_at) WHERE outcome = 'review'",
    )),
}
UNPARTITIONED_KEYS = {"transactions": "transaction_id", "predictions": "prediction_id"}
AHEAD_DAYS = 3  # days made from today on, so the first rows after the upgrade land in their day


def _drop_indexes(table: str) -> None:
    """Free the index names (they are schema-wide) on the table about to be copied and dropped."""
    old = f"{table}_unpartitioned"
    op.execute(f"""
        ALTER TABLE {old} DROP CONSTRAINT {table}_pkey;
        DO $$ DECLARE name text; BEGIN
            FOR name IN SELECT indexname FROM pg_indexes WHERE tablename = '{old}'
            LOOP EXECUTE 'DROP INDEX ' || quote_ident(name); END LOOP;
        END $$;
    """)


def _copy_identity(table: str) -> None:
    if table == "predictions":  # new answers number on from the carried ones
        op.execute("SELECT setval(pg_get_serial_sequence('predictions', 'prediction_id'), "
                   "coalesce(max(prediction_id), 0) + 1, false) FROM predictions")


def upgrade() -> None:
    op.execute(DAY_PARTITION_FUNCTION)
    for table, (key, primary_key, indexes) in TABLES.items():
        old = f"{table}_unpartitioned"
        op.execute(f"ALTER TABLE {table} RENAME TO {old}")
        _drop_indexes(table)
        op.execute(f"""
            CREATE TABLE {table} (LIKE {old} INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING IDENTITY)
                PARTITION BY RANGE ({key});
            ALTER TABLE {table} ADD PRIMARY KEY ({primary_key});
            {';'.join(indexes)};
            CREATE TABLE {table}_default PARTITION OF {table} DEFAULT;
            -- a partition for every day that has rows, and the days ahead
            SELECT riskray_day_partition('{table}', day) FROM (
                SELECT DISTINCT ({key} AT TIME ZONE 'UTC')::date AS day FROM {old}
                UNION SELECT (now() AT TIME ZONE 'UTC')::date + ahead FROM generate_series(0, {AHEAD_DAYS}) ahead
            ) days ORDER BY day;
            INSERT INTO {table} OVERRIDING SYSTEM VALUE SELECT * FROM {old};
            DROP TABLE {old};
        """)
        _copy_identity(table)


def downgrade() -> None:
    for table, (_key, _primary_key, indexes) in TABLES.items():
        partitioned = f"{table}_partitioned"
        op.execute(f"ALTER TABLE {table} RENAME TO {partitioned}")
        op.execute(f"""
            DO $$ DECLARE name text; BEGIN
                FOR name IN SELECT c.relname FROM pg_class c JOIN pg_index i ON i.indexrelid = c.oid
                    JOIN pg_class t ON t.oid = i.indrelid WHERE t.relname = '{partitioned}'
                LOOP
                    EXECUTE 'ALTER INDEX ' || quote_ident(name) || ' RENAME TO ' || quote_ident(name || '_old');
                END LOOP;
            END $$;
            CREATE TABLE {table} (LIKE {partitioned} INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING IDENTITY);
            INSERT INTO {table} OVERRIDING SYSTEM VALUE SELECT * FROM {partitioned};
            ALTER TABLE {table} ADD PRIMARY KEY ({UNPARTITIONED_KEYS[table]});
            {';'.join(indexes)};
            DROP TABLE {partitioned};
        """)
        _copy_identity(table)
    op.execute("DROP FUNCTION IF EXISTS riskray_day_partition(text, date)")
