"""Idempotent writes of one streaming micro-batch into the feature store.

Every batch is written in one database transaction that starts by claiming its (query, batch id) row in
``stream_batch_commits``. A replayed batch (Spark re-runs the last batch after a crash) finds the row already
there and changes nothing; raw rows are also keyed by transaction_id, so a duplicate message is stored once.
"""

from __future__ import annotations

import io
import json
from datetime import datetime
from typing import NamedTuple

import pandas as pd
import psycopg2.extensions
import pyarrow as pa
import pyarrow.csv as pa_csv

from app.features import TILE_TABLES, TILES, Entity, TileAggregate
from app.schemas import LABEL_STORE_COLUMNS, MESSAGE_STORE_COLUMNS, STORE_COLUMN_OF

# The Kafka source's columns a stored row keeps beside the message (where it was read), under these names.
KAFKA_SOURCE_COLUMNS = {"partition": "kafka_partition", "offset": "kafka_offset"}
TRANSACTION_COLUMNS = (*MESSAGE_STORE_COLUMNS, *KAFKA_SOURCE_COLUMNS.values(), "is_late")
LABEL_COLUMNS = (*LABEL_STORE_COLUMNS, *KAFKA_SOURCE_COLUMNS.values())


def claim_batch(cur: psycopg2.extensions.cursor, query: str, batch_id: int) -> bool:
    """True when this batch was not committed before (and is now claimed inside the open transaction)."""
    cur.execute(
        "INSERT INTO stream_batch_commits (query_name, batch_id) VALUES (%s, %s) "
        "ON CONFLICT DO NOTHING RETURNING batch_id",
        (query, batch_id),
    )
    return cur.fetchone() is not None


def record_counts(cur: psycopg2.extensions.cursor, query: str, batch_id: int, counts: dict[str, int],
                  max_event_time: datetime | None = None) -> None:
    cur.execute(
        "UPDATE stream_batch_commits SET row_counts = %s, max_event_time = %s WHERE query_name = %s AND batch_id = %s",
        (json.dumps(counts), max_event_time, query, batch_id),
    )


def latest_event_time(cur: psycopg2.extensions.cursor, query: str) -> datetime | None:
    """The latest event time this query has committed: the base of its watermark after a restart."""
    cur.execute("SELECT max(max_event_time) FROM stream_batch_commits WHERE query_name = %s", (query,))
    return cur.fetchone()[0]


def _copy_into_temp(cur: psycopg2.extensions.cursor, table: str, frame: pd.DataFrame, columns: list[str]) -> str:
    """COPY ``frame`` into a session-temporary twin of ``table`` (emptied at commit); returns its name.

    COPY is several times faster than INSERT ... VALUES for the 10-20k rows of a busy batch."""
    temp = f"incoming_{table}"
    cur.execute(f"CREATE TEMP TABLE IF NOT EXISTS {temp} (LIKE {table} INCLUDING DEFAULTS) ON COMMIT DELETE ROWS")
    buffer = io.BytesIO()  # Arrow's C++ CSV writer: ~5x faster than DataFrame.to_csv for timestamps
    pa_csv.write_csv(pa.Table.from_pandas(frame[columns], preserve_index=False), buffer,
                     pa_csv.WriteOptions(include_header=False, quoting_style="needed"))
    buffer.seek(0)
    cur.copy_expert(f"COPY {temp} ({', '.join(columns)}) FROM STDIN WITH (FORMAT csv)", buffer)
    return temp


INCOMING_TRANSACTIONS = "incoming_transactions"  # the raw batch's rows until its commit (_copy_into_temp)

# --- the tiles of the rows a batch stored --------------------------------------------------------------------
# A tile aggregates the transactions stored in its minute. The stream adds each batch's newly stored, on-time rows
# to their tiles in the statement that stores them: the duplicate check is the table's own key (exact, however
# late the duplicate), late rows are the ones the raw path flags (one watermark for rows and tiles), and the tiles
# commit with the rows and the batch's ledger row (exactly once together). Each aggregation of app.features.TILES
# has a batch form (over the stored rows) and a merge with the tile already stored (the batch's part added to it).
_BATCH = {
    "count": lambda column: "count(*)",
    "sum": lambda column: f"coalesce(sum(i.{column}), 0)",  # a label no row in the tile carries sums to 0
    "mean": lambda column: f"avg(i.{column})",
    "max": lambda column: f"max(i.{column})",
    "std": lambda column: f"coalesce(stddev_samp(i.{column}), 0)",
}


def _merge(aggregate: TileAggregate, tile: tuple[TileAggregate, ...], table: str) -> str:
    """The stored tile (``table``) and the batch's part (EXCLUDED) as one tile: sums add, maxima take the larger,
    means weigh by their counts and standard deviations combine by Chan's formula for pooled variance."""
    old, new = f"{table}.{aggregate.name}", f"EXCLUDED.{aggregate.name}"
    if aggregate.aggregation in ("count", "sum"):
        return f"{old} + {new}"
    if aggregate.aggregation == "max":
        return f"greatest({old}, {new})"
    count = next(a.name for a in tile if a.aggregation == "count")
    n_old, n_new = f"{table}.{count}", f"EXCLUDED.{count}"
    if aggregate.aggregation == "mean":
        return f"({old} * {n_old} + {new} * {n_new}) / ({n_old} + {n_new})"
    mean = next(a.name for a in tile if a.aggregation == "mean" and a.column == aggregate.column)
    m_old, m_new = f"{table}.{mean}", f"EXCLUDED.{mean}"
    squares = (f"{old} * {old} * ({n_old} - 1) + {new} * {new} * ({n_new} - 1) "
               f"+ ({m_new} - {m_old}) * ({m_new} - {m_old}) * {n_old} * {n_new} / ({n_old} + {n_new})")
    return f"sqrt(greatest({squares}, 0) / greatest({n_old} + {n_new} - 1, 1))"


def _tile_cte(entity: Entity) -> str:
    """The CTE adding the rows ``inserted`` stored to ``entity``'s tiles; the tile's length is the bind parameter
    ``window_s`` (seconds)."""
    table, key = TILE_TABLES[entity]
    tile = TILES[entity]
    names = [key, "window_start", "window_end", *(a.name for a in tile), "updated_at"]
    window = "make_interval(secs => %(window_s)s)"
    start = f"date_bin({window}, i.event_time, timestamptz 'epoch')"
    values = [f"i.{key}", start, f"{start} + {window}",
              *(_BATCH[a.aggregation](STORE_COLUMN_OF.get(a.column or "", a.column)) for a in tile),
              "clock_timestamp()"]  # when it became visible, not when the batch's transaction began
    merged = ", ".join(f"{a.name} = {_merge(a, tile, table)}" for a in tile)
    return (f"{entity}_tiles AS (INSERT INTO {table} ({', '.join(names)}) SELECT {', '.join(values)} "
            f"FROM inserted i WHERE NOT i.is_late GROUP BY 1, 2 "
            f"ON CONFLICT ({key}, window_start) DO UPDATE SET {merged}, updated_at = clock_timestamp() "
            f"RETURNING 1)")


def _check_tiles() -> None:
    """Means and standard deviations merge through their tile's count (and, for a deviation, its column's mean):
    a declaration without them fails at import, not in the stream."""
    for entity, tile in TILES.items():
        for a in tile:
            if a.aggregation in ("mean", "std") and not any(b.aggregation == "count" for b in tile):
                raise ValueError(f"{entity} tile: {a.name} needs a count in the same tile")
            if a.aggregation == "std" and not any(b.aggregation == "mean" and b.column == a.column for b in tile):
                raise ValueError(f"{entity} tile: {a.name} needs the mean of {a.column} in the same tile")


_check_tiles()
TILE_CTES: dict[Entity, str] = {entity: _tile_cte(entity) for entity in TILE_TABLES}


class StoredBatch(NamedTuple):
    inserted: int  # rows new to the table (a duplicate of a stored row is not)
    tiles: dict[str, int]  # tiles written per entity (with tiles=True)


def insert_transactions(cur: psycopg2.extensions.cursor, rows: pd.DataFrame, tiles: bool = False,
                        window_seconds: int = 60) -> StoredBatch:
    """Insert raw rows, skipping those already stored, in one statement; with ``tiles``, the rows it stored and
    that are not late are added to their ``window_seconds`` tiles in the same statement."""
    if rows.empty:
        return StoredBatch(0, {entity: 0 for entity in TILE_TABLES} if tiles else {})
    columns = list(TRANSACTION_COLUMNS)
    # Within one batch the same id may arrive twice: keep the first, as the table would.
    rows = rows.drop_duplicates("transaction_id")
    temp = _copy_into_temp(cur, "transactions", rows, columns)
    listed = ", ".join(columns)
    # Its one unique key is (transaction_id, event_time): the table is partitioned by event time (migration 0013),
    # and a resent message carries the same time. Country counts move with the rows actually inserted (not
    # duplicates), in the same statement and database transaction, so a replayed batch counts nothing twice. Late
    # rows are kept out, as the tiles keep them out.
    entities = [entity for entity in TILE_TABLES if tiles]
    ctes = "".join(f", {TILE_CTES[entity]}" for entity in entities)
    counts = "".join(f", (SELECT count(*) FROM {entity}_tiles)" for entity in entities)
    cur.execute(
        f"WITH inserted AS (INSERT INTO transactions ({listed}) SELECT {listed} FROM {temp} "
        f"ON CONFLICT DO NOTHING RETURNING *), "
        f"counted AS (INSERT INTO customer_countries (customer_id, country, transaction_count) "
        f"SELECT customer_id, country, count(*) FROM inserted WHERE NOT is_late GROUP BY 1, 2 "
        f"ON CONFLICT (customer_id, country) DO UPDATE "
        f"SET transaction_count = customer_countries.transaction_count + EXCLUDED.transaction_count){ctes} "
        f"SELECT (SELECT count(*) FROM inserted){counts}", {"window_s": window_seconds}
    )
    inserted, *tile_counts = cur.fetchone()
    return StoredBatch(int(inserted), dict(zip(entities, map(int, tile_counts), strict=True)))


def insert_labels(cur: psycopg2.extensions.cursor, rows: pd.DataFrame) -> tuple[int, int]:
    """Insert label events, skipping label ids already stored; returns (how many were new, how many of those name
    a transaction not stored yet: kept all the same, and counted)."""
    if rows.empty:
        return 0, 0
    columns = list(LABEL_COLUMNS)
    rows = rows.drop_duplicates("label_id")
    temp = _copy_into_temp(cur, "labels", rows, columns)
    listed = ", ".join(columns)
    cur.execute(
        f"WITH inserted AS (INSERT INTO labels ({listed}) SELECT {listed} FROM {temp} "
        f"ON CONFLICT (label_id) DO NOTHING RETURNING transaction_id) "
        f"SELECT count(*), count(*) FILTER (WHERE NOT EXISTS "
        f"(SELECT 1 FROM transactions t WHERE t.transaction_id = inserted.transaction_id)) FROM inserted"
    )
    inserted, unmatched = cur.fetchone()
    return int(inserted), int(unmatched)


# Both writers of fraud reports (the raw query: labels inside rows, and reports waiting for their transaction; the
# labels query: fraud label events) take this transaction-level advisory lock first, so neither misses the other's
# half: a label stored while its transaction is not yet committed is found by the raw query once it is.
FRAUD_REPORTS_LOCK = 7_352_001

_COUNT_REPORTS = """
    WITH candidate AS (
        SELECT transaction_id, min(reported_at) AS reported_at FROM candidate_reports GROUP BY 1
    ), before AS (
        SELECT f.transaction_id, f.merchant_id, f.reported_at FROM fraud_reports f JOIN candidate USING (transaction_id)
    ), after AS (
        INSERT INTO fraud_reports (transaction_id, merchant_id, reported_at)
        SELECT c.transaction_id, t.merchant_id, c.reported_at
        FROM candidate c LEFT JOIN transactions t USING (transaction_id)
        ON CONFLICT (transaction_id) DO UPDATE
            SET reported_at = least(fraud_reports.reported_at, EXCLUDED.reported_at),
                merchant_id = coalesce(fraud_reports.merchant_id, EXCLUDED.merchant_id)
            WHERE EXCLUDED.reported_at < fraud_reports.reported_at
               OR (fraud_reports.merchant_id IS NULL AND EXCLUDED.merchant_id IS NOT NULL)
        RETURNING transaction_id, merchant_id, reported_at
    ), moves AS (  -- +1 where a report now counts, -1 where an earlier-reported one replaced it
        SELECT merchant_id, date_trunc('minute', reported_at) AS minute, 1 AS delta FROM after
        WHERE merchant_id IS NOT NULL
        UNION ALL
        SELECT b.merchant_id, date_trunc('minute', b.reported_at), -1 FROM before b JOIN after USING (transaction_id)
        WHERE b.merchant_id IS NOT NULL
    )
    INSERT INTO merchant_fraud_reports (merchant_id, window_start, fraud_reports)
    SELECT merchant_id, minute, sum(delta) FROM moves GROUP BY 1, 2 HAVING sum(delta) <> 0
    ORDER BY 1, 2
    ON CONFLICT (merchant_id, window_start)
        DO UPDATE SET fraud_reports = merchant_fraud_reports.fraud_reports + EXCLUDED.fraud_reports
    RETURNING merchant_id, window_start
"""

def record_fraud_reports(cur: psycopg2.extensions.cursor, reports: pd.DataFrame, table: str | None = None) -> int:
    """Count fraud reports (transaction_id, reported_at) for their merchants, each transaction once, at its first
    report (``fraud_reports``, ``merchant_fraud_reports``); a report of a transaction not stored yet waits for it.
    ``table``: a temporary table of transactions this batch stored, whose waiting reports now count. Idempotent:
    a report seen again changes nothing. Returns how many tiles changed."""
    if not len(reports) and table is None:
        return 0
    cur.execute("SELECT pg_advisory_xact_lock(%s)", (FRAUD_REPORTS_LOCK,))
    cur.execute("CREATE TEMP TABLE IF NOT EXISTS candidate_reports (transaction_id uuid, reported_at timestamptz) "
                "ON COMMIT DELETE ROWS")
    if len(reports):
        buffer = io.BytesIO()
        pa_csv.write_csv(pa.Table.from_pandas(reports[["transaction_id", "reported_at"]], preserve_index=False),
                         buffer, pa_csv.WriteOptions(include_header=False))
        buffer.seek(0)
        cur.copy_expert("COPY candidate_reports (transaction_id, reported_at) FROM STDIN WITH (FORMAT csv)", buffer)
    if table is not None:
        cur.execute(f"INSERT INTO candidate_reports SELECT f.transaction_id, f.reported_at FROM fraud_reports f "
                    f"JOIN {table} i USING (transaction_id) WHERE f.merchant_id IS NULL")
    cur.execute(_COUNT_REPORTS)  # the table's triggers keep its running totals (migration 0009)
    return cur.rowcount


def upsert_tiles(cur: psycopg2.extensions.cursor, entity: Entity, tiles: pd.DataFrame) -> int:
    """Replace each (entity, window_start) tile with the batch's values: Spark emits whole-window aggregates."""
    if tiles.empty:
        return 0
    table, key = TILE_TABLES[entity]
    columns = [key, "window_start", "window_end", *(a.name for a in TILES[entity])]
    temp = _copy_into_temp(cur, table, tiles, columns)
    listed = ", ".join(columns)
    updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in columns[2:])
    cur.execute(
        f"INSERT INTO {table} ({listed}) SELECT {listed} FROM {temp} "
        f"ON CONFLICT ({key}, window_start) DO UPDATE SET {updates}, updated_at = clock_timestamp()"
    )
    return len(tiles)
