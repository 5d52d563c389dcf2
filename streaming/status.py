"""Where the streaming job stands: read from its commit rows in PostgreSQL and its progress log (no Spark)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from app import db, stream_progress
from app.config import Settings


def raw_query_name(settings: Settings) -> str:
    return f"{settings.stream_query_prefix}-raw"


def labels_query_name(settings: Settings) -> str:
    return f"{settings.stream_query_prefix}-labels"


def query_names(settings: Settings) -> tuple[str, ...]:
    """The job's queries: transactions (rows and their tiles), label events."""
    return raw_query_name(settings), labels_query_name(settings)


def progress_log(settings: Settings) -> Path:
    return stream_progress.progress_log_path(settings)


def checkpoint_dir(settings: Settings) -> Path:
    """Per query prefix, so a second job (a test, a replay) never shares Spark state with the main one."""
    return settings.checkpoints_dir / "stream" / settings.stream_query_prefix


@dataclass(frozen=True)
class QueryStatus:
    """A query's ledger across all its checkpoints: the last batch of the newest, totals over all."""

    name: str
    last_batch: int | None
    last_commit: datetime | None
    totals: dict[str, int]


def query_status(settings: Settings, name: str) -> QueryStatus:
    with db.connection(settings) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT max(batch_id), max(committed_at) FROM stream_batch_commits WHERE query_name LIKE %s "
            "AND committed_at = (SELECT max(committed_at) FROM stream_batch_commits WHERE query_name LIKE %s)",
            (f"{name}@%", f"{name}@%"),
        )
        last_batch, last_commit = cur.fetchone()
        cur.execute(
            "SELECT key, sum(value::bigint) FROM stream_batch_commits, jsonb_each_text(row_counts) "
            "WHERE query_name LIKE %s GROUP BY key ORDER BY key",
            (f"{name}@%",),
        )
        totals = {key: int(total) for key, total in cur.fetchall()}
    return QueryStatus(name, last_batch, last_commit, totals)


def late_rows_dropped(settings: Settings) -> int:
    """Rows Spark's window aggregation dropped behind the watermark, summed over the progress log."""
    return stream_progress.late_rows_dropped(settings)


def last_failure(log: Path) -> str | None:
    """The last query failure the job logged (Spark's error class and first sentence), if any."""
    if not log.exists():
        return None
    found = None
    with log.open(errors="replace") as lines:
        for line in lines:
            if "terminated with exception:" in line:
                found = line.split("terminated with exception:", 1)[1].strip()[:300]
    return found
