"""Live traffic replayed from a simulated world, as the demo's clients send it.

A world's days are replayed chunk by chunk (``chunk_minutes`` of event time each), faster than real time but
never faster than the store keeps up: every chunk is produced to Kafka (the stream turns it into tiles and
labels) and scored over HTTP, half of it one request at a time on ``/predict``, half on ``/predict/batch``; the
next chunk waits until the store holds this one. A request therefore sees its customer's history up to the end
of the chunk before: one chunk of event time is the feature freshness the replay gives up for speed.

With a ``LabelFeed`` the traffic is live as a real client's: the rows go without their label, and after each chunk
the feed sends the label events reported by its end (the delay model's delays scaled to the replay's time).
"""

from __future__ import annotations

import contextlib
import itertools
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime

import httpx
import numpy as np
import pandas as pd

from app import db
from app.config import Settings
from app.schemas import PredictionRequest, Transaction
from streaming.label_feed import LabelFeed
from streaming.sinks import DeliveryError, KafkaSink

BATCH_REQUEST_ROWS = 250  # rows per /predict/batch call (Serve refuses more than RISKRAY_SERVE_MAX_BATCH)


# The request fields a transaction message fills: those the two contracts share, in the request's order (the window
# features a request may also carry are the store's to supply).
REQUEST_FIELDS: tuple[str, ...] = tuple(name for name in PredictionRequest.model_fields
                                        if name in Transaction.model_fields)


def _json(value: object) -> object:
    """A frame's cell as JSON takes it: a time as RFC 3339 text, a numpy number as a Python one."""
    if isinstance(value, datetime):
        return value.isoformat()
    return value.item() if isinstance(value, np.generic) else value


def request_body(row: pd.Series) -> dict:
    """A generated transaction as a /predict request (the raw fields serving accepts beside the required ones)."""
    return {name: _json(row[name]) for name in REQUEST_FIELDS}


@dataclass
class ReplayStats:
    produced: int = 0
    answered: int = 0  # predictions returned with HTTP 200
    failed: int = 0  # requests (or batch rows) that got no prediction: non-200 or no answer at all
    degraded: int = 0  # answered with default features (the store too slow or down)
    chunks: int = 0
    single_latencies_ms: list[float] = field(default_factory=list)
    batch_latencies_ms: list[float] = field(default_factory=list)
    batch_rows: int = 0
    freshness_s: list[float] = field(default_factory=list)  # tile written - chunk produced, per tile
    by_version: Counter[str] = field(default_factory=Counter)
    first_answer_of: dict[str, datetime] = field(default_factory=dict)  # model version -> event time it began
    failures: list[str] = field(default_factory=list)  # the first few, for the report
    outcomes: Counter[str] = field(default_factory=Counter)  # approve | review | decline, as answered
    unexplained: int = 0  # reviews and declines answered without a reason (there should be none)
    examples: dict[str, dict] = field(default_factory=dict)  # the first review and decline answered, as answered
    event_time: datetime | None = None  # end of the last chunk replayed
    seconds: float = 0.0

    def record_failure(self, what: str, rows: int = 1) -> None:
        self.failed += rows
        if len(self.failures) < 10:
            self.failures.append(what[:300])


def chunks(days: Iterator[pd.DataFrame], chunk_minutes: int) -> Iterator[tuple[pd.Timestamp, pd.DataFrame]]:
    """Consecutive event-time chunks over the days: (chunk end, its rows sorted by event time). A day's frame is
    not sorted, and a burst late in a day can spill past midnight: such rows go with the next day's chunk they fall
    in, so every row is replayed once and no chunk holds rows older than the one before."""
    carry: pd.DataFrame | None = None
    step = pd.Timedelta(minutes=chunk_minutes)
    for day in days:
        if carry is not None and not carry.empty:
            day = pd.concat([carry, day], ignore_index=True)
        if day.empty:
            continue
        day = day.sort_values("timestamp", kind="stable")
        start = day["timestamp"].iloc[0].floor("D")
        day_end = start + pd.Timedelta(days=1)
        for lo, hi in itertools.pairwise(pd.date_range(start, day_end, freq=step)):
            yield hi, day[(day["timestamp"] >= lo) & (day["timestamp"] < hi)]
        carry = day[day["timestamp"] >= day_end]
    if carry is not None and not carry.empty:  # the spill of the last day
        yield carry["timestamp"].iloc[-1].ceil(step), carry


def wait_for_stored_labels(settings: Settings, label_ids: list[str], timeout_s: float = 120) -> int:
    """Until the store holds every one of these label events, or the timeout; how many it holds."""
    deadline = time.monotonic() + timeout_s
    while True:
        with db.connection(settings) as conn, conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM labels WHERE label_id = ANY(%s::uuid[])", (label_ids,))
            stored = int(cur.fetchone()[0])
        if stored >= len(label_ids) or time.monotonic() > deadline:
            return stored
        time.sleep(0.5)


class Replay:
    """Replays chunks until they run out or :meth:`stop` is called (at a chunk boundary)."""

    def __init__(self, settings: Settings, api_url: str, concurrency: int = 8, store_timeout_s: float = 180,
                 labels: LabelFeed | None = None) -> None:
        self.settings = settings
        self.labels = labels
        self.api = httpx.Client(base_url=api_url, timeout=60,
                                limits=httpx.Limits(max_connections=concurrency + 2))
        self.pool = ThreadPoolExecutor(concurrency, thread_name_prefix="replay")
        self.sink: KafkaSink | None = KafkaSink(settings)
        self.store_timeout_s = store_timeout_s
        self.stats = ReplayStats()
        self._stop = threading.Event()
        self._lock = threading.Lock()

    def stop(self) -> None:
        self._stop.set()

    def close(self) -> None:
        """Idempotent. The producer goes too: left to the garbage collector it outlives the broker a demo stops and
        logs reconnect errors."""
        self.pool.shutdown(wait=True, cancel_futures=True)
        self.api.close()
        if self.sink is not None:
            self.sink.producer.flush(10)  # best effort: every chunk was flushed (and checked) when it was sent
            self.sink = None
        if self.labels is not None:
            with contextlib.suppress(DeliveryError):  # each release was flushed and checked when it was sent
                self.labels.sink.close()

    def run(self, source: Iterator[tuple[pd.Timestamp, pd.DataFrame]],
            on_chunk: Callable[[ReplayStats], None] = lambda stats: None,
            until: pd.Timestamp | None = None, min_chunk_seconds: float = 0.0) -> ReplayStats:
        """Chunks of ``source`` until it ends, :meth:`stop` is called or the chunk ending at ``until`` is done; each
        chunk takes at least ``min_chunk_seconds`` (a steadier pace while something else runs beside)."""
        began = time.monotonic()
        for end, rows in source:
            if self._stop.is_set():
                break
            chunk_began = time.monotonic()
            self._replay_chunk(end, rows)
            on_chunk(self.stats)
            if until is not None and end >= until:
                break
            self._stop.wait(max(0.0, min_chunk_seconds - (time.monotonic() - chunk_began)))
        self.stats.seconds += time.monotonic() - began
        return self.stats

    def _replay_chunk(self, end: pd.Timestamp, rows: pd.DataFrame) -> None:
        if not rows.empty:
            assert self.sink is not None, "the replay is closed"
            self.sink.write(rows if self.labels is None else self.labels.without_labels(rows))
            self.sink.flush()
            self.stats.produced += len(rows)
            produced_at = time.time()
            singles, batched = rows.iloc[0::2], rows.iloc[1::2]
            futures = [self.pool.submit(self._predict_one, row) for _, row in singles.iterrows()]
            for offset in range(0, len(batched), BATCH_REQUEST_ROWS):
                self._predict_batch(batched.iloc[offset:offset + BATCH_REQUEST_ROWS])
            for future in futures:
                future.result()
            start = rows["timestamp"].min().floor("min")
            self._wait_for_store(start, end, len(rows))
            self._record_freshness(start, end, produced_at)
        self.release_labels(end)
        self.stats.chunks += 1
        self.stats.event_time = end.to_pydatetime()

    def release_labels(self, until: pd.Timestamp) -> int:
        """Send the label events reported by ``until`` (of the transactions replayed so far); how many."""
        if self.labels is None:
            return 0
        sent = self.labels.release(until)
        if sent:
            self.labels.sink.flush()
        return sent

    def wait_for_labels(self, timeout_s: float = 120) -> int:
        """Until the store holds every label event sent so far (the labels query triggers every few seconds);
        how many it holds."""
        return 0 if self.labels is None else wait_for_stored_labels(self.settings, self.labels.sent_ids, timeout_s)

    def _answered(self, answer: dict, event_time: pd.Timestamp) -> None:
        with self._lock:
            self.stats.answered += 1
            self.stats.degraded += bool(answer.get("features_degraded"))
            version = str(answer.get("model_version"))
            self.stats.by_version[version] += 1
            self.stats.first_answer_of.setdefault(version, event_time.to_pydatetime(warn=False))
            outcome = str(answer.get("outcome"))
            self.stats.outcomes[outcome] += 1
            if outcome in ("review", "decline"):
                self.stats.unexplained += not answer.get("reasons")
                self.stats.examples.setdefault(outcome, {k: answer.get(k) for k in (
                    "model_version", "fraud_probability", "outcome", "reasons")})

    def _predict_one(self, row: pd.Series) -> None:
        began = time.perf_counter()
        try:
            response = self.api.post("/predict", json=request_body(row))
        except httpx.HTTPError as error:
            with self._lock:
                self.stats.record_failure(f"/predict: {type(error).__name__}: {error}")
            return
        took = (time.perf_counter() - began) * 1000
        with self._lock:
            self.stats.single_latencies_ms.append(took)
        if response.status_code != 200:
            with self._lock:
                self.stats.record_failure(f"/predict: HTTP {response.status_code}: {response.text}")
            return
        self._answered(response.json(), row["timestamp"])

    def _predict_batch(self, rows: pd.DataFrame) -> None:
        began = time.perf_counter()
        try:
            response = self.api.post("/predict/batch", json=[request_body(row) for _, row in rows.iterrows()])
        except httpx.HTTPError as error:
            self.stats.record_failure(f"/predict/batch: {type(error).__name__}: {error}", len(rows))
            return
        self.stats.batch_latencies_ms.append((time.perf_counter() - began) * 1000)
        if response.status_code != 200:
            self.stats.record_failure(f"/predict/batch: HTTP {response.status_code}: {response.text}", len(rows))
            return
        self.stats.batch_rows += len(rows)
        for answer, stamp in zip(response.json()["predictions"], rows["timestamp"], strict=True):
            self._answered(answer, stamp)

    def _wait_for_store(self, start: pd.Timestamp, end: pd.Timestamp, expected: int) -> None:
        """Until the chunk's rows are in ``transactions`` and counted in the customer tiles."""
        deadline = time.monotonic() + self.store_timeout_s
        while True:
            with db.connection(self.settings) as conn, conn.cursor() as cur:
                cur.execute("SELECT count(*) FROM transactions WHERE event_time >= %s AND event_time < %s",
                            (start, end))
                raw = int(cur.fetchone()[0])
                cur.execute("SELECT coalesce(sum(transaction_count), 0) FROM features "
                            "WHERE window_start >= %s AND window_start < %s", (start, end))
                tiled = int(cur.fetchone()[0])
            if raw >= expected and tiled >= expected:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"the store holds {raw} transactions and {tiled} tiled of the {expected} produced "
                                   f"for {start:%Y-%m-%d %H:%M} .. {end:%H:%M} after {self.store_timeout_s:.0f} s: "
                                   "is the streaming job running? (`riskray stream status`)")
            time.sleep(0.25)

    def _record_freshness(self, start: pd.Timestamp, end: pd.Timestamp, produced_at: float) -> None:
        with db.connection(self.settings) as conn, conn.cursor() as cur:
            cur.execute("SELECT extract(epoch FROM updated_at) FROM features WHERE window_start >= %s "
                        "AND window_start < %s", (start, end))
            written = np.array([float(r[0]) for r in cur.fetchall()])
        self.stats.freshness_s.extend(np.maximum(written - produced_at, 0.0).tolist())
