"""The stream job's progress log, a format shared by its writer (``streaming.spark_job``) and its readers
(``streaming.status``, ``monitoring.exporter``, the local stack): one JSON line per micro-batch of each query.

A record's fields: ``query``, ``batch_id``, ``timestamp`` (Spark's ISO time of the batch), ``input_rows``,
``input_rows_per_s``, ``processed_rows_per_s``, ``batch_ms``, ``phases_ms`` (Spark's ``durationMs``: where the batch's
time went, ``addBatch`` being the read and the write), ``watermark`` and ``late_rows_dropped`` (the transactions
query: rows behind its watermark, stored but kept out of the tiles), and ``end_offsets`` (how far into each topic
the batch read: ``{topic: {partition: offset}}``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from app.config import Settings

TAIL_BYTES = 1 << 20  # the last micro-batches of every query fit; the log itself grows for the job's life


def progress_log_path(settings: Settings) -> Path:
    """Per query prefix, in the state folder: a second job (a test, a replay) keeps its own log."""
    return settings.state_dir / "stream" / f"{settings.stream_query_prefix}-progress.jsonl"


def append(path: Path, record: dict[str, Any]) -> None:
    with path.open("a") as out:
        out.write(json.dumps(record) + "\n")


def late_rows_dropped(settings: Settings) -> int:
    """Rows kept out of the tiles as late (behind the stream's watermark), summed over the progress log."""
    path = progress_log_path(settings)
    if not path.exists():
        return 0
    total = 0
    with path.open() as lines:
        for line in lines:
            total += json.loads(line).get("late_rows_dropped", 0)
    return total


def last_batches(path: Path) -> dict[str, dict[str, Any]]:
    """The newest progress record of each query, from the end of the progress log."""
    if not path.exists():
        return {}
    with path.open("rb") as handle:
        handle.seek(max(path.stat().st_size - TAIL_BYTES, 0))
        lines = handle.read().splitlines()
    latest: dict[str, dict[str, Any]] = {}
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:  # the first line of the tail may be cut
            continue
        latest[record["query"]] = record
    return latest
