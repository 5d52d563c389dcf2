"""The store's day partitions and their retention (``transactions`` by event time, ``predictions`` by answer time;
migration 0013 made them).

``maintain`` is what the nightly maintenance runs (``riskray db maintain``): it makes the days ahead, moves rows
that waited in a table's DEFAULT partition into their day, and drops the days its retention has passed, each as one
file (a DROP TABLE, not a DELETE). Retention may not go below what riskray itself reads back
(``minimum_retention``): the label maturity curve looks at transactions the label horizon plus the accuracy window
old, training rebuilds a period's history windows point in time from raw rows, and the accuracy and drift checks
read the predictions of their windows. A setting under its minimum is refused, naming the reader that needs more.
"""

from __future__ import annotations

import math
from datetime import UTC, date, datetime, timedelta

import psycopg2.extensions
from psycopg2 import sql
from pydantic import BaseModel

from app import db
from app.config import ENV_PREFIX, Settings
from app.errors import UserError
from app.features import LONG_WINDOWS_DAYS
from app.labels import maturity_days

# table -> its partition key (the time a row belongs to)
PARTITIONED: dict[str, str] = {"transactions": "event_time", "predictions": "predicted_at"}
RETENTION_SETTING = {"transactions": "store_transactions_retention_days",
                     "predictions": "store_predictions_retention_days"}


class RetentionTooShortError(UserError):
    """A retention setting under what riskray reads back."""


class Need(BaseModel):
    days: int
    reader: str  # who reads that far back, for the refusal


def minimum_retention(settings: Settings) -> dict[str, Need]:
    """Per table, the shortest retention that drops nothing riskray still reads, and who reads that far back."""
    training = settings.train_days + max(LONG_WINDOWS_DAYS) + maturity_days(settings) + settings.compare_days
    transaction_needs = [
        Need(days=math.ceil(settings.label_horizon_days + settings.accuracy_window_days),
             reader="the label maturity curve (label_horizon_days + accuracy_window_days)"),
        Need(days=math.ceil(training), reader="training (train_days + the longest history window + the label "
                                               "maturity + compare_days)"),
    ]
    prediction_needs = [
        Need(days=math.ceil(settings.accuracy_window_days), reader="realised accuracy (accuracy_window_days)"),
        Need(days=math.ceil(settings.drift_window_days), reader="the drift check (drift_window_days)"),
    ]
    return {"transactions": max(transaction_needs, key=lambda n: n.days),
            "predictions": max(prediction_needs, key=lambda n: n.days)}


def retention(settings: Settings) -> dict[str, int]:
    """Each table's retention in days, refused (RetentionTooShortError naming the variable) under its minimum."""
    minimums = minimum_retention(settings)
    days = {table: int(getattr(settings, setting)) for table, setting in RETENTION_SETTING.items()}
    for table, need in minimums.items():
        if days[table] < need.days:
            variable = f"{ENV_PREFIX}{RETENTION_SETTING[table].upper()}"
            raise RetentionTooShortError(
                f"{variable}={days[table]} is under the {need.days} days {need.reader} reads back from "
                f"{table}; set it to at least {need.days}")
    return days


class TablePartitions(BaseModel):
    table: str
    retention_days: int
    created: list[str]  # day partitions made (ahead, or for rows that waited in DEFAULT)
    dropped: list[str]  # day partitions past retention
    moved_from_default: int  # rows moved out of DEFAULT into the day made for them
    deleted_from_default: int  # rows in DEFAULT older than retention
    left_in_default: int  # rows still in DEFAULT: days beyond the ones made ahead
    partitions: int  # day partitions after the run
    oldest_day: date | None


class MaintenanceReport(BaseModel):
    now: datetime
    dry_run: bool
    tables: list[TablePartitions]


def _days(cur: psycopg2.extensions.cursor, table: str) -> dict[date, str]:
    """The table's day partitions by day (named ``<table>_YYYYMMDD``)."""
    cur.execute("SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                "WHERE i.inhparent = %s::regclass AND c.relname <> %s", (table, f"{table}_default"))
    return {datetime.strptime(name.rsplit("_", 1)[1], "%Y%m%d").date(): name for (name,) in cur.fetchall()}


def _maintain_table(cur: psycopg2.extensions.cursor, table: str, keep_days: int, now: datetime, ahead: int,
                    dry_run: bool) -> TablePartitions:
    key = PARTITIONED[table]
    today = now.astimezone(UTC).date()
    first_kept = today - timedelta(days=keep_days)  # a day wholly before it is past retention
    cutoff = datetime.combine(first_kept, datetime.min.time(), UTC)
    existing = _days(cur, table)
    # rows that waited in DEFAULT for a day that is kept and now has (or gets) a partition
    cur.execute(f"SELECT ({key} AT TIME ZONE 'UTC')::date AS day, count(*) FROM {table}_default "
                f"WHERE {key} >= %s GROUP BY 1", (cutoff,))
    waiting = dict(cur.fetchall())
    wanted = {today + timedelta(days=d) for d in range(ahead + 1)}
    wanted |= {day for day in waiting if day <= today + timedelta(days=ahead)}
    created = sorted(day for day in wanted if day not in existing)
    expired = sorted(day for day in existing if day < first_kept)
    moved = sum(waiting.get(day, 0) for day in created)
    left = sum(n for day, n in waiting.items() if day > today + timedelta(days=ahead))
    cur.execute(f"SELECT count(*) FROM {table}_default WHERE {key} < %s", (cutoff,))
    deleted = cur.fetchone()[0]
    if not dry_run:
        for day in created:
            cur.execute("SELECT riskray_day_partition(%s, %s)", (table, day))
        for day in expired:
            # one file per day: no row-by-row delete, no bloat
            cur.execute(sql.SQL("DROP TABLE {}").format(sql.Identifier(existing[day])))
        cur.execute(f"DELETE FROM {table}_default WHERE {key} < %s", (cutoff,))
        # autovacuum analyses each day but never the parent, whose statistics plan the joins across days
        cur.execute(f"ANALYZE {table}")
    kept = (set(existing) - set(expired)) | set(created)
    return TablePartitions(table=table, retention_days=keep_days, created=[f"{table}_{d:%Y%m%d}" for d in created],
                           dropped=[existing[d] for d in expired], moved_from_default=moved,
                           deleted_from_default=deleted, left_in_default=left, partitions=len(kept),
                           oldest_day=min(kept) if kept else None)


def maintain(settings: Settings, now: datetime | None = None, dry_run: bool = False) -> MaintenanceReport:
    """Make the days ahead, move DEFAULT's waiting rows into their days, drop the days past retention; one database
    transaction per table. ``now`` (default: the clock) decides which days are ahead and which have expired."""
    keep = retention(settings)  # refuses a retention under its minimum before anything is touched
    now = (now or datetime.now(UTC)).astimezone(UTC)
    tables = []
    for table in PARTITIONED:
        with db.connection(settings) as conn, conn.cursor() as cur:
            tables.append(_maintain_table(cur, table, keep[table], now, settings.store_partitions_ahead_days,
                                          dry_run))
            if dry_run:
                conn.rollback()
    return MaintenanceReport(now=now, dry_run=dry_run, tables=tables)
