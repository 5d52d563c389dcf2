"""The Spark Structured Streaming job: Kafka ``transactions`` and ``labels`` -> PostgreSQL feature store.

Two queries share one Spark application, one per topic:

- ``<prefix>-raw`` reads each ``transactions`` message once, for both outputs: it validates every message against
  the message model (invalid ones go to the dead-letter topic with the raw bytes and key, and headers naming the
  error and the source partition/offset) and stores the valid ones in ``transactions``, flagging as late those
  behind its watermark (the latest event time committed, minus ``stream_watermark_seconds``). The statement that
  stores them adds the rows it stored (a duplicate of a stored row is not: the table's key decides, however late
  it comes) and that are not late to their 1-minute tiles per customer and per merchant (``features``,
  ``merchant_features``; ``streaming.store_writer``). Rows, tiles and the batch's ledger row commit together.
- ``<prefix>-labels`` reads the ``labels`` topic: label events checked by their model like transactions (invalid
  ones to the labels' dead-letter topic), stored once per label_id in ``labels`` (a label whose transaction is not
  stored yet is kept and counted as unmatched).

Each query's batch is one database transaction with its own ledger row, so each is exactly-once. (Until 2026-12-07
a second, stateful query read the topic again for Spark's windowed aggregation; its state store, shuffle and second
read set the features' freshness, and it could not see which rows the raw path had stored.)
Run with ``python -m streaming.spark_job`` (``riskray stream start`` does it under supervisord).
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import threading
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from functools import reduce
from pathlib import Path

import pandas as pd
import psycopg2.extensions
from pyspark.errors import StreamingQueryException
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.streaming import StreamingQuery, StreamingQueryListener
from pyspark.sql.types import LongType

from app import db, stream_progress
from app.config import Settings, get_settings
from app.cpu_weight import BackgroundGroup
from app.labels import row_fraud_reports
from app.schemas import STORE_COLUMN_OF, KafkaMessage, LabelEvent, Transaction, message_fields
from streaming import store_writer
from streaming.dead_letters import DeadLetterProducer
from streaming.spark_schema import spark_schema
from streaming.status import (
    checkpoint_dir,
    labels_query_name,
    progress_log,
    raw_query_name,
)
from streaming.validation import canonical_message, validation_errors

log = logging.getLogger("riskray.stream")
EVENT_TIME = STORE_COLUMN_OF["timestamp"]  # the message's event time as the store names it


def build_session(settings: Settings) -> SparkSession:
    builder = SparkSession.builder.appName("riskray-stream")
    if settings.spark_master:
        # this process is the driver on this machine: Spark on loopback, the connector jars the bootstrap fetched
        jars = sorted((settings.jars_dir / "spark-kafka").glob("*.jar"))
        if not jars:
            raise RuntimeError(f"Spark's Kafka connector jars are missing in {settings.jars_dir / 'spark-kafka'}")
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
        builder = (
            builder.master(settings.spark_master)
            .config("spark.jars", ",".join(str(j) for j in jars))
            .config("spark.driver.memory", settings.spark_driver_memory)
            .config("spark.driver.host", "127.0.0.1")
            .config("spark.driver.bindAddress", "127.0.0.1")
            .config("spark.ui.enabled", "false")
            .config("spark.local.dir", str(settings.state_dir / "spark-tmp"))
        )
        if settings.spark_driver_java_options:  # unset, nothing overrides a spark-defaults.conf
            builder = builder.config("spark.driver.extraJavaOptions", settings.spark_driver_java_options)
    # else submitted by spark-submit (the Spark operator, cluster/base/spark): master, driver address and memory,
    # and the jars (in the image) come from the submission
    builder = (
        builder.config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        .config("spark.sql.streaming.metricsEnabled", "true")
    )
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("WARN")
    return spark


def kafka_source(spark: SparkSession, settings: Settings, topic: str | None = None) -> DataFrame:
    return (
        spark.readStream.format("kafka")
        .option("kafka.bootstrap.servers", settings.kafka_bootstrap)
        .option("subscribe", topic or settings.kafka_topic)
        .option("startingOffsets", "earliest")
        .option("maxOffsetsPerTrigger", settings.stream_max_offsets_per_trigger)
        .option("kafka.fetch.max.wait.ms", settings.stream_fetch_max_wait_ms)
        .option("failOnDataLoss", "false")  # retention may delete offsets a long-stopped job had not read
        .load()
    )


def parsed(source: DataFrame, model: type[KafkaMessage] = Transaction) -> DataFrame:
    """Kafka rows with the message fields parsed in the JVM by the Spark schema derived from the model, and whether
    the JVM vouches for the message (``canonical``: see ``canonical_message``)."""
    return (source.select("*", F.from_json(F.col("value").cast("string"), spark_schema(model)).alias("m"))
            .withColumn("canonical", canonical_message(model=model)))


# Times the stream can hold: the model takes years 1 to 9999, but a batch collected to pandas holds nanoseconds
# (1677 to 2262), and one far-off time in a batch failed the whole query (a fuzzed POST /labels sent year 3576).
STREAM_TIMES = ("1900-01-01 00:00:00", "2100-01-01 00:00:00")


def _in_stream(name: str, prop: dict) -> Column:
    """The parsed field, or null where it is a time outside STREAM_TIMES."""
    column = F.col(f"m.{name}")
    if prop.get("format") != "date-time":
        return column
    return F.when(column.between(F.lit(STREAM_TIMES[0]).cast("timestamp"), F.lit(STREAM_TIMES[1]).cast("timestamp")),
                  column)


def stream_fields(model: type[KafkaMessage] = Transaction) -> list[Column]:
    """The parsed message fields by name, a time outside STREAM_TIMES as null (fully_parsed then refuses it)."""
    return [_in_stream(name, prop).alias(name) for name, prop in message_fields(model)]


def fully_parsed(model: type[KafkaMessage] = Transaction) -> Column:
    """Guard for the rare value the model accepts but Spark's parser does not (a timestamp with 7 fractional
    digits, say), or the stream cannot hold (a time outside STREAM_TIMES): such a row goes to the dead-letter topic
    instead of failing the batch. An optional field may be null."""
    return reduce(lambda a, b: a & b, [_in_stream(name, prop).isNotNull() for name, prop in message_fields(model)
                                       if not prop.get("optional")])


def for_the_model(column: str) -> Column:
    """``column`` where the JVM cannot vouch for the message (``canonical_message``), else null: only those rows'
    bytes travel to Python to be checked by the model itself."""
    return F.when(F.col("canonical"), F.lit(None)).otherwise(F.col(column))


def as_utc(times: pd.Series) -> pd.Series:
    """Spark hands timestamps to pandas naive in the session time zone (UTC); make them explicit."""
    times = pd.to_datetime(times)
    return times.dt.tz_localize("UTC") if times.dt.tz is None else times.dt.tz_convert("UTC")


class LedgerName:
    """The name under which a query's batches are recorded: the query name plus its checkpoint's id.

    Spark numbers batches from 0 again for a new checkpoint; keyed by name alone, a deleted checkpoint would make
    the job skip every batch as "already committed". The id is in the checkpoint's metadata file, which Spark
    writes when the query starts, before the first batch."""

    def __init__(self, name: str, checkpoint: Path) -> None:
        self.name, self.checkpoint, self._value = name, checkpoint, ""

    def __str__(self) -> str:
        if not self._value:
            checkpoint_id = json.loads((self.checkpoint / "metadata").read_text())["id"]
            self._value = f"{self.name}@{checkpoint_id}"
        return self._value


def collected(batch: DataFrame, model: type[KafkaMessage]) -> pd.DataFrame:
    """One micro-batch of Kafka rows on the driver (one Spark job, Arrow), parsed in the JVM: the message fields,
    whether the JVM vouches for each message (``canonical``), and the key and value only of those it cannot."""
    return parsed(batch, model).select(for_the_model("key").alias("key"), for_the_model("value").alias("value"),
                                       "canonical", "topic", "partition", "offset",
                                       fully_parsed(model).alias("fully_parsed"), *stream_fields(model)).toPandas()


def rejections(source: pd.DataFrame, model: type[KafkaMessage]) -> pd.Series:
    """Per ``collected`` row, why the stream refuses it (None: kept). The message model checks what the JVM could
    not vouch for; a value the model accepts but Spark's schema or the stream's times cannot hold is refused too."""
    errors = pd.Series(None, index=source.index, dtype=object)
    check = ~source["canonical"].astype(bool)
    if check.any():
        errors[check] = validation_errors(source.loc[check, "value"], source.loc[check, "key"], model)
    unparsed = errors.isna() & ~source["fully_parsed"].astype(bool)
    errors[unparsed] = (f"message: valid for the model but not for the stream (Spark's schema, times from "
                        f"{STREAM_TIMES[0][:4]} to {int(STREAM_TIMES[1][:4]) - 1})")
    return errors


def checked_batch(batch: DataFrame, model: type[KafkaMessage], dead_letters: DeadLetterProducer
                  ) -> tuple[pd.DataFrame, int]:
    """One micro-batch ``collected`` and checked against ``model`` (``rejections``). Refused messages are sent to the
    dead-letter topic, acknowledged before this returns (a dead letter is sent at least once, never lost). Returns
    the valid rows (the message fields as the JVM parsed them, plus topic, partition and offset) and how many went
    to the dead-letter topic."""
    source = collected(batch, model)
    errors = rejections(source, model)
    bad = source[errors.notna()]
    for row, reason in zip(bad.itertuples(index=False), errors[errors.notna()], strict=True):
        dead_letters.send(row.key, row.value, reason, row.topic, int(row.partition), int(row.offset))
    dead_letters.flush()
    # Valid rows keep the JVM's parse (same schema, derived from the model): no second parse in Python.
    return source[errors.isna()], len(bad)


# --- raw query -----------------------------------------------------------------------------------------------
_background: BackgroundGroup | None = None  # set by main(): the stream's CPU group (app/cpu_weight.py)


@contextmanager
def _store(settings: Settings) -> Iterator[psycopg2.extensions.cursor]:
    """A cursor in one database transaction, its session in the stream's CPU group: the backend writing a batch (and
    running the running-total trigger) is the stream's work, weighed as background, not as a session of its own."""
    with db.connection(settings) as conn, conn.cursor() as cur:
        if _background is not None:
            _background.place(conn.get_backend_pid())
        yield cur


class RawWriter:
    """foreachBatch of the raw query: one Spark job pulls the batch's Kafka rows to the driver (Arrow), where the
    message model validates those the JVM could not vouch for (``canonical_message``; no Python UDF round trip).
    Invalid ones go to the dead-letter topic, valid ones to ``transactions`` and, unless late, into their tiles.
    Keeps the stream's watermark (latest event time committed, minus the delay) to flag late rows; it is read back
    from the batch ledger, so it survives restarts."""

    def __init__(self, settings: Settings, checkpoint: Path) -> None:
        self.settings = settings
        self.ledger = LedgerName(raw_query_name(settings), checkpoint)
        self.delay = timedelta(seconds=settings.stream_watermark_seconds)
        self.latest: datetime | None = None
        self._resumed = False
        self.late_rows: dict[int, int] = {}  # batch id -> late rows, until the progress log has taken them
        self.dead_letters = DeadLetterProducer(settings)
        # Derived once, not per batch: pandas widens integer columns to float when invalid rows hold nulls.
        optional = {name for name, prop in message_fields(Transaction) if prop.get("optional")}
        self.integer_columns = [STORE_COLUMN_OF.get(f.name, f.name) for f in spark_schema().fields
                                if isinstance(f.dataType, LongType) and f.name not in optional]
        self.optional_integers = [STORE_COLUMN_OF.get(f.name, f.name) for f in spark_schema().fields
                                  if isinstance(f.dataType, LongType) and f.name in optional]

    def __call__(self, batch: DataFrame, batch_id: int) -> None:
        started = time.monotonic()
        query = str(self.ledger)
        with _store(self.settings) as cur:
            if not self._resumed:
                self.latest, self._resumed = store_writer.latest_event_time(cur, query), True
            if not store_writer.claim_batch(cur, query, batch_id):
                log.info("%s batch %d already committed; skipped", query, batch_id)
                return
            valid, dead = checked_batch(batch, Transaction, self.dead_letters)
            collected_at = time.monotonic()  # collected and checked: the check is most of it only without the JVM's
            rows = valid.rename(columns={**STORE_COLUMN_OF, **store_writer.KAFKA_SOURCE_COLUMNS})
            rows[EVENT_TIME] = as_utc(rows[EVENT_TIME])
            rows[self.integer_columns] = rows[self.integer_columns].astype("int64")
            rows[self.optional_integers] = rows[self.optional_integers].astype("Int64")  # a label or NULL
            watermark = self.watermark()
            rows["is_late"] = (rows[EVENT_TIME] < watermark) if watermark is not None else False
            validated_at = time.monotonic()
            stored = store_writer.insert_transactions(cur, rows, tiles=True,
                                                      window_seconds=self.settings.stream_window_seconds)
            # the frauds labelled inside these rows, and the reports that waited for these transactions
            reports = row_fraud_reports(rows.rename(columns={EVENT_TIME: "timestamp"}), self.settings.label_delay_days)
            # (an empty batch stored nothing: no table of its rows to look in)
            store_writer.record_fraud_reports(cur, reports, table=store_writer.INCOMING_TRANSACTIONS if len(rows)
                                              else None)
            counts = {"valid": len(rows), "inserted": stored.inserted, "duplicates": len(rows) - stored.inserted,
                      "dlq": dead, "late": int(rows["is_late"].sum()) if len(rows) else 0,
                      **{f"{entity}_tiles": n for entity, n in stored.tiles.items()}}
            latest = self.latest
            if len(rows):
                newest = rows[EVENT_TIME].max().to_pydatetime()
                latest = newest if latest is None else max(latest, newest)
            store_writer.record_counts(cur, query, batch_id, counts, latest)
        self.latest = latest
        self.late_rows[batch_id] = counts["late"]
        phases = {"collect_s": round(collected_at - started, 2), "prepare_s": round(validated_at - collected_at, 2),
                  "store_s": round(time.monotonic() - validated_at, 2)}
        log.info("%s batch %d: %s %s in %.2f s", query, batch_id, counts, phases, time.monotonic() - started)

    def watermark(self) -> datetime | None:
        """Rows with an earlier event time are late: stored, flagged, kept out of the tiles."""
        return self.latest - self.delay if self.latest is not None else None


# --- labels query --------------------------------------------------------------------------------------------
class LabelWriter:
    """foreachBatch of the labels query: label events checked by their model (invalid ones to the labels'
    dead-letter topic) and stored once per label_id, in one database transaction with the batch's ledger row."""

    def __init__(self, settings: Settings, checkpoint: Path) -> None:
        self.settings = settings
        self.ledger = LedgerName(labels_query_name(settings), checkpoint)
        self.dead_letters = DeadLetterProducer(settings, settings.kafka_labels_dlq_topic)

    def __call__(self, batch: DataFrame, batch_id: int) -> None:
        started = time.monotonic()
        query = str(self.ledger)
        with _store(self.settings) as cur:
            if not store_writer.claim_batch(cur, query, batch_id):
                log.info("%s batch %d already committed; skipped", query, batch_id)
                return
            valid, dead = checked_batch(batch, LabelEvent, self.dead_letters)
            rows = valid.rename(columns=store_writer.KAFKA_SOURCE_COLUMNS)
            rows["reported_at"] = as_utc(rows["reported_at"])
            inserted, unmatched = store_writer.insert_labels(cur, rows)
            frauds = rows[rows["is_fraud"] == 1]
            store_writer.record_fraud_reports(cur, frauds[["transaction_id", "reported_at"]])
            counts = {"valid": len(rows), "inserted": inserted, "duplicates": len(rows) - inserted, "dlq": dead,
                      "unmatched": unmatched}
            store_writer.record_counts(cur, query, batch_id, counts)
        log.info("%s batch %d: %s in %.2f s", query, batch_id, counts, time.monotonic() - started)


# --- progress ------------------------------------------------------------------------------------------------
def _offsets(value: object) -> dict | None:
    """A Kafka source's offsets as Spark reports them (a JSON string or already parsed)."""
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return None
    return value if isinstance(value, dict) else None


class ProgressLog(StreamingQueryListener):
    """One JSON line per micro-batch: rows, durations, and for the raw query its watermark and the rows it kept out
    of the tiles as late (Spark reports progress after the batch's writer has returned)."""

    def __init__(self, path: Path, raw: RawWriter) -> None:
        self.path, self.raw = path, raw
        path.parent.mkdir(parents=True, exist_ok=True)

    def onQueryStarted(self, event) -> None:  # noqa: N802 - Spark's listener API
        log.info("query %s started", event.name)

    def onQueryProgress(self, event) -> None:  # noqa: N802
        p = event.progress
        raw = p.name == self.raw.ledger.name
        dropped = self.raw.late_rows.pop(p.batchId, 0) if raw else 0
        watermark = self.raw.watermark() if raw else None
        record = {
            "query": p.name, "batch_id": p.batchId, "timestamp": p.timestamp, "input_rows": p.numInputRows,
            "input_rows_per_s": p.inputRowsPerSecond, "processed_rows_per_s": p.processedRowsPerSecond,
            "batch_ms": p.batchDuration, "phases_ms": dict(p.durationMs),
            "watermark": watermark.isoformat() if watermark else None, "late_rows_dropped": dropped,
            # how far into the topic the batch read, {topic: {partition: offset}}: lag = the topic's end - this
            "end_offsets": _offsets(p.sources[0].endOffset) if p.sources else None,
        }
        stream_progress.append(self.path, record)
        if dropped:
            log.warning("%s batch %d kept %d late rows (behind watermark %s) out of the tiles", p.name, p.batchId,
                        dropped, record["watermark"])

    def onQueryIdle(self, event) -> None:  # noqa: N802
        pass

    def onQueryTerminated(self, event) -> None:  # noqa: N802
        log.info("query %s terminated%s", event.id, f": {event.exception}" if event.exception else "")


def start_queries(spark: SparkSession, settings: Settings, raw_writer: RawWriter) -> list[StreamingQuery]:
    checkpoints = checkpoint_dir(settings)
    trigger = {"processingTime": f"{settings.stream_trigger_seconds} seconds"}
    # Two tasks instead of one per Kafka partition: on local[2], twelve small tasks per batch cost more in
    # scheduling than in work.
    parallelism = spark.sparkContext.defaultParallelism
    raw = (
        kafka_source(spark, settings).coalesce(parallelism).writeStream.queryName(raw_query_name(settings))
        .foreachBatch(raw_writer)
        .option("checkpointLocation", str(checkpoints / "raw"))
        .trigger(**trigger)
        .start()
    )
    labels = (
        kafka_source(spark, settings, settings.kafka_labels_topic).coalesce(1).writeStream
        .queryName(labels_query_name(settings))
        .foreachBatch(LabelWriter(settings, checkpoints / "labels"))
        .option("checkpointLocation", str(checkpoints / "labels"))
        .trigger(processingTime=f"{settings.stream_labels_trigger_seconds} seconds")
        .start()
    )
    return [raw, labels]


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    logging.getLogger("py4j").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message="PySpark does not yet fully support pandas", category=FutureWarning)
    settings = get_settings()
    global _background
    _background = BackgroundGroup(settings)
    _background.enter()  # before the JVM starts: it and Spark's Python workers inherit the group
    spark = build_session(settings)
    raw_writer = RawWriter(settings, checkpoint_dir(settings) / "raw")
    spark.streams.addListener(ProgressLog(progress_log(settings), raw_writer))
    queries = start_queries(spark, settings, raw_writer)
    log.info("streaming %s and %s -> feature store", settings.kafka_topic, settings.kafka_labels_topic)

    stopping = threading.Event()
    # The handler only sets a flag: calling into py4j from a signal handler while the main thread is inside a
    # py4j call corrupts the gateway connection.
    signal.signal(signal.SIGTERM, lambda signum, _frame: stopping.set())
    signal.signal(signal.SIGINT, lambda signum, _frame: stopping.set())
    while not stopping.is_set() and all(query.isActive for query in queries):
        try:
            spark.streams.awaitAnyTermination(timeout=1)
        except StreamingQueryException:
            break  # a query failed: reported below, once the others have stopped
        spark.streams.resetTerminated()
    if stopping.is_set():
        log.info("stopping queries at a batch boundary")
    for query in queries:
        query.stop()
    for query in queries:
        if query.exception():
            message = failure_message(query.name, str(query.exception()), checkpoint_dir(settings))
            log.error("%s", message)
            raise SystemExit(message)
    spark.stop()


# What a full or read-only checkpoint folder looks like in Spark's exception, and what to tell the operator.
_STORAGE_FAULTS = {"No space left on device": "is full", "Read-only file system": "is read-only",
                   "Permission denied": "is not writable"}


def failure_message(query: str, exception: str, checkpoints: Path) -> str:
    """One clear line for a failed query. A checkpoint folder that cannot be written stops the job; nothing is
    lost, because Kafka offsets advance only with a checkpointed batch: the restart re-reads what was not."""
    # "Permission denied" is also what a database says; the file system's comes in a Java file exception
    from_files = any(kind in exception for kind in ("IOException", "FSError", "AccessDenied", "FileNotFound"))
    for symptom, state in _STORAGE_FAULTS.items():
        if symptom in exception and (from_files or symptom != "Permission denied"):
            return (f"query {query} stopped: its checkpoint folder {checkpoints} {state} ({symptom}). Make it "
                    "writable (free space) and start the job again: it resumes from its last committed batch, "
                    "and nothing is lost")
    return f"query {query} failed: {exception.splitlines()[0] if exception else 'unknown error'}"


if __name__ == "__main__":
    main()
