"""Runs the real Spark streaming job against the real broker and database, on topics and query names of its
own, so tests never disturb each other or the main job."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd
from confluent_kafka import Producer
from kafka.admin import NewTopic

from app import db
from app.config import Settings
from app.operations.kafka import admin
from streaming.status import labels_query_name, progress_log, raw_query_name
from tests import scratch

if TYPE_CHECKING:
    from kafka import TopicPartition
    from kafka.consumer.fetcher import ConsumerRecord

    from streaming.simulator import DriftConfig


class StreamHarness:
    def __init__(self, settings: Settings, log_dir: Path, stack_names: bool = False, **environment: str) -> None:
        """Topics and query names of its own, unless ``stack_names``: then the stack's (scratch) topics and
        queries, so what the stack watches (the exporter) sees this job; those topics are emptied and the stack's
        stream state removed first, so no earlier test's messages reach this job."""
        tag = uuid.uuid4().hex[:8]
        self.environment = environment
        self.settings = settings if stack_names else settings.model_copy(update={
            "kafka_topic": f"test-{tag}.transactions",
            "kafka_dlq_topic": f"test-{tag}.transactions.dlq",
            "kafka_labels_topic": f"test-{tag}.labels",
            "kafka_labels_dlq_topic": f"test-{tag}.labels.dlq",
            "stream_query_prefix": f"test-{tag}",
        })
        self.log_path = log_dir / f"stream-{tag}.log"
        self.process: subprocess.Popen[bytes] | None = None
        if stack_names:
            scratch.fresh_stream(settings)
        else:
            client = admin(settings)
            try:
                client.create_topics([NewTopic(self.settings.kafka_topic, 12, 1),
                                      NewTopic(self.settings.kafka_dlq_topic, 1, 1),
                                      NewTopic(self.settings.kafka_labels_topic, 3, 1),
                                      NewTopic(self.settings.kafka_labels_dlq_topic, 1, 1)])
            finally:
                client.close()
        self.producer = Producer({"bootstrap.servers": settings.kafka_bootstrap, "partitioner": "murmur2_random"})

    # --- the job ------------------------------------------------------------------------------------------
    def start(self) -> None:
        env = {
            **os.environ,
            "RISKRAY_KAFKA_TOPIC": self.settings.kafka_topic,
            "RISKRAY_KAFKA_DLQ_TOPIC": self.settings.kafka_dlq_topic,
            "RISKRAY_KAFKA_LABELS_TOPIC": self.settings.kafka_labels_topic,
            "RISKRAY_KAFKA_LABELS_DLQ_TOPIC": self.settings.kafka_labels_dlq_topic,
            "RISKRAY_STREAM_QUERY_PREFIX": self.settings.stream_query_prefix,
            **self.environment,
        }
        log = self.log_path.open("ab")
        self.process = subprocess.Popen([sys.executable, "-m", "streaming.spark_job"], env=env, stdout=log,
                                        stderr=subprocess.STDOUT, start_new_session=True)

    def kill(self) -> None:
        """SIGKILL the driver and everything it started (the JVM, Python workers): no chance to clean up."""
        assert self.process is not None
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=30)

    def assert_alive(self) -> None:
        assert self.process is not None and self.process.poll() is None, self.log_path.read_text()[-3000:]

    # --- input --------------------------------------------------------------------------------------------
    def send(self, messages: Iterable[tuple[bytes | None, bytes | None]], topic: str | None = None) -> None:
        """Messages (key, value) to the transactions topic, or ``topic``; returns once Kafka has them all."""
        for key, value in messages:
            while True:
                try:
                    self.producer.produce(topic or self.settings.kafka_topic, key=key, value=value)
                    break
                except BufferError:  # the local queue (100,000 messages) is full: let deliveries drain it
                    self.producer.poll(0.5)
        assert self.producer.flush(60) == 0

    # --- observation --------------------------------------------------------------------------------------
    def committed_batches(self) -> int:
        """Batches of the transactions query (rows and tiles) committed so far."""
        name = raw_query_name(self.settings)
        with db.connection(self.settings) as conn, conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM stream_batch_commits WHERE query_name LIKE %s", (f"{name}@%",))
            return cur.fetchone()[0]

    def watermark(self) -> pd.Timestamp | None:
        """The transactions query's watermark after its latest batch: rows behind it are late."""
        path = progress_log(self.settings)
        if not path.exists():
            return None
        marks = [json.loads(line)["watermark"] for line in path.read_text().splitlines()
                 if json.loads(line)["query"] == raw_query_name(self.settings)]
        marks = [pd.Timestamp(m) for m in marks if m]
        return max(marks) if marks else None

    def send_labels(self, events: pd.DataFrame) -> None:
        """Label events (the LabelEvent columns) to the labels topic, in the wire form producers write."""
        from app.schemas import LabelEvent, kafka_values

        keys = [str(t).encode() for t in events[LabelEvent.KEY_FIELD]]
        self.send(zip(keys, kafka_values(events, LabelEvent), strict=True), topic=self.settings.kafka_labels_topic)

    def caught_up(self) -> bool:
        """Every query has committed a batch that read to the end of every partition of its topic: whatever was
        sent is in the store, and no later batch can change it (Spark reports progress after a batch commits)."""
        from kafka import KafkaConsumer, TopicPartition

        path = progress_log(self.settings)
        if not path.exists():
            return False
        s = self.settings
        topic_of = {raw_query_name(s): s.kafka_topic, labels_query_name(s): s.kafka_labels_topic}
        latest: dict[str, dict] = {}
        for line in path.read_text().splitlines():
            record = json.loads(line)
            if record.get("end_offsets") and record["query"] in topic_of:
                latest[record["query"]] = record["end_offsets"].get(topic_of[record["query"]], {})
        consumer = KafkaConsumer(bootstrap_servers=s.kafka_bootstrap)
        try:
            ends = {}
            for topic in set(topic_of.values()):
                partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
                ends[topic] = {str(tp.partition): offset for tp, offset in consumer.end_offsets(partitions).items()}
        finally:
            consumer.close()
        # a query whose topic is still empty has nothing to catch up on (an idle query reports no progress)
        return all(all(latest.get(q, {}).get(p, 0) >= end for p, end in ends[topic].items())
                   for q, topic in topic_of.items())

    def wait_until(self, condition: Callable[[], bool], timeout_s: float, what: str,
                   progress: Callable[[], str] | None = None) -> None:
        """``progress``: what the failure message says was reached instead."""
        deadline = time.monotonic() + timeout_s
        while not condition():
            self.assert_alive()
            if time.monotonic() > deadline:
                reached = f" ({progress()})" if progress else ""
                raise AssertionError(f"timed out waiting for {what}{reached}; the job's last reports:\n"
                                     + "\n".join(self.reports()[-8:]) + f"\nlog: {self.log_path}")
            time.sleep(0.5)

    def reports(self) -> list[str]:
        """The job's own log lines (batches, late rows dropped), without Spark's and Py4J's."""
        if not self.log_path.exists():
            return []
        return [line for line in self.log_path.read_text(errors="replace").splitlines() if "riskray.stream" in line]


def topic_ends(settings: Settings, topic: str) -> dict[TopicPartition, int]:
    """Each partition's end offset now: where a later read of what is sent from now on starts."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=settings.kafka_bootstrap)
    try:
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        assert partitions, f"no topic {topic}"
        return consumer.end_offsets(partitions, timeout_ms=30_000)
    finally:
        consumer.close()


def read_topic(settings: Settings, topic: str, start: dict[TopicPartition, int] | None = None,
               until: Callable[[list[ConsumerRecord]], bool] = lambda records: True, timeout_s: float = 30
               ) -> list[ConsumerRecord]:
    """The records of ``topic`` from ``start`` (default its beginning) up to its end as it is when the read starts,
    and on until ``until(records)`` holds: a state that cannot un-happen, where a read that ends after a silence
    waits out the whole silence every time."""
    from kafka import KafkaConsumer, TopicPartition

    deadline = time.monotonic() + timeout_s

    def left_ms() -> int:
        left = deadline - time.monotonic()
        assert left > 0, f"{topic}: {len(records)} records read in {timeout_s:.0f} s"
        return int(left * 1000)

    records: list[ConsumerRecord] = []
    consumer = KafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, enable_auto_commit=False)
    try:
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        assert partitions, f"no topic {topic}"
        consumer.assign(partitions)
        if start:
            for tp in partitions:
                consumer.seek(tp, start[tp])
        else:
            consumer.seek_to_beginning(*partitions)
        ends = consumer.end_offsets(partitions, timeout_ms=left_ms())

        def at_end(tp: TopicPartition) -> bool:
            position = consumer.position(tp, timeout_ms=left_ms())  # None: not known yet
            return position is not None and position >= ends[tp]

        while not (all(at_end(tp) for tp in partitions) and until(records)):
            for batch in consumer.poll(timeout_ms=min(500, left_ms())).values():
                records.extend(batch)
        return records
    finally:
        consumer.close()


def _query(settings: Settings, sql: str, params: tuple) -> pd.DataFrame:
    with db.connection(settings) as conn, conn.cursor() as cur:
        cur.execute(sql, params)
        return pd.DataFrame(cur.fetchall(), columns=[c.name for c in cur.description])


def stored_transactions(settings: Settings, customer_ids: list[int]) -> pd.DataFrame:
    return _query(settings, "SELECT transaction_id::text, customer_id, amount, event_time, is_fraud, is_late "
                            "FROM transactions WHERE customer_id = ANY(%s)", (customer_ids,))


def stored_features(settings: Settings, customer_ids: list[int]) -> pd.DataFrame:
    return _query(settings, "SELECT customer_id, window_start, transaction_count, amount_sum, avg_amount, max_amount, "
                            "amount_std, fraud_count FROM features WHERE customer_id = ANY(%s) "
                            "ORDER BY customer_id, window_start", (customer_ids,))


def stored_merchant_features(settings: Settings, merchant_ids: list[int]) -> pd.DataFrame:
    return _query(settings, "SELECT merchant_id, window_start, transaction_count, fraud_count FROM merchant_features "
                            "WHERE merchant_id = ANY(%s) ORDER BY merchant_id, window_start", (merchant_ids,))


def expected_merchant_features(transactions: pd.DataFrame) -> pd.DataFrame:
    frame = transactions.assign(window_start=pd.to_datetime(transactions["timestamp"], utc=True).dt.floor("60s"))
    out = frame.groupby(["merchant_id", "window_start"]).agg(
        transaction_count=("amount", "size"), fraud_count=("is_fraud", "sum")).reset_index()
    return out.sort_values(["merchant_id", "window_start"], ignore_index=True)


def expected_features(transactions: pd.DataFrame) -> pd.DataFrame:
    """An independent pandas computation of 1-minute customer windows (sample std, 0 for one row)."""
    frame = transactions.assign(window_start=pd.to_datetime(transactions["timestamp"], utc=True).dt.floor("60s"))
    grouped = frame.groupby(["customer_id", "window_start"])
    out = grouped.agg(
        transaction_count=("amount", "size"), amount_sum=("amount", "sum"), avg_amount=("amount", "mean"),
        max_amount=("amount", "max"), amount_std=("amount", lambda a: a.std(ddof=1) if len(a) > 1 else 0.0),
        fraud_count=("is_fraud", "sum"),
    ).reset_index()
    return out.sort_values(["customer_id", "window_start"], ignore_index=True)


def assert_same_features(actual: pd.DataFrame, expected: pd.DataFrame) -> None:
    actual = actual.assign(window_start=pd.to_datetime(actual["window_start"], utc=True))
    actual = actual.sort_values([actual.columns[0], "window_start"], ignore_index=True)
    pd.testing.assert_frame_equal(actual, expected, check_dtype=False, check_exact=False, rtol=1e-9, atol=1e-9)


# --- history streamed into the store, then probe transactions it has not seen -----------------------------------
# Every streamed world ends here: a fixed moment, never the clock, so a seed gives the same transactions in any run.
WORLD_END = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


def recent_transactions(seed: int, days: int, customers: int, merchants: int, block: int,
                        drift: DriftConfig | None = None) -> pd.DataFrame:
    """Simulated transactions of the ``days`` days before WORLD_END, sorted by event time. Customer and merchant
    ids are moved to the range of ``block`` (one per test), so no two tests share an entity in the store, whatever
    their seeds. ``drift``: the simulator's drift switch (amounts and fraud mix change from its ``at``)."""
    from streaming.simulator import DriftConfig, Simulator, SimulatorConfig

    simulator = Simulator(SimulatorConfig(seed=seed, customers=customers, merchants=merchants,
                                          compromised_cards_per_day=3, compromised_merchants_per_day=2,
                                          drift=drift or DriftConfig()))
    frame = pd.concat(list(simulator.backfill(WORLD_END - timedelta(days=days), days + 1)), ignore_index=True)
    frame = frame[frame["timestamp"] < pd.Timestamp(WORLD_END)].drop(columns="scenario")
    offset = 2 * 10**12 + block * 10**6  # apart from the ranges of tests/integration/test_streaming.py
    frame["customer_id"] += offset
    frame["merchant_id"] += offset
    frame["timestamp"] = frame["timestamp"].astype("datetime64[us, UTC]")
    return frame.sort_values("timestamp", ignore_index=True)


def probes_after(frame: pd.DataFrame, cutoff: pd.Timestamp, count: int) -> pd.Index:
    """Transactions after the cutoff that are the first after it for both their customer and their merchant:
    a store holding only what came before the cutoff then knows exactly their history."""
    later = frame[frame["timestamp"] >= cutoff]
    firsts = later.drop_duplicates("customer_id").index.intersection(later.drop_duplicates("merchant_id").index)
    return firsts[:count]


def stream_into_store(harness: StreamHarness, history: pd.DataFrame, timeout_s: float = 240) -> None:
    """Send ``history`` through Kafka and the running Spark job; return once every row is in the customer tiles
    and the customer country counts."""
    from streaming.simulator import message_values

    harness.send(zip((str(c).encode() for c in history["customer_id"]), message_values(history), strict=True))
    customers = [int(c) for c in history["customer_id"].unique()]

    def stored() -> bool:
        with db.connection(harness.settings) as conn, conn.cursor() as cur:
            cur.execute("SELECT coalesce(sum(transaction_count), 0) FROM features WHERE customer_id = ANY(%s)",
                        (customers,))
            tiles = cur.fetchone()[0]
            cur.execute("SELECT coalesce(sum(transaction_count), 0) FROM customer_countries "
                        "WHERE customer_id = ANY(%s)", (customers,))
            return tiles == len(history) and cur.fetchone()[0] == len(history)

    harness.wait_until(stored, timeout_s, f"{len(history)} transactions in tiles and country counts")
