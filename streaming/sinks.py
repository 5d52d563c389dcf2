"""Where simulated messages go: a Kafka topic (transactions keyed by customer_id, label events by transaction_id:
each model's ``KEY_FIELD``) or, for transactions, a Parquet/CSV file with the same columns as the Kafka message."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from confluent_kafka import Producer

from app.config import Settings
from app.errors import UserError
from app.schemas import KafkaMessage, Transaction, kafka_values
from streaming.simulator import MESSAGE_COLUMNS


class Sink(Protocol):
    def write(self, frame: pd.DataFrame) -> None: ...
    def close(self) -> None: ...


class DeliveryError(UserError, RuntimeError):
    """Kafka did not take every message: said in one line, with the first reason it gave."""


class KafkaSink:
    """librdkafka producer; a full local queue is drained by polling rather than dropping messages. Idempotent
    with acks=all: while a broker is away, messages wait in the queue and are retried (up to
    ``message.timeout.ms``) without a duplicate or a reordering within a partition (tests/integration/
    test_streaming.py kills the broker mid-stream)."""

    def __init__(self, settings: Settings, topic: str | None = None, model: type[KafkaMessage] = Transaction) -> None:
        self.topic = topic or settings.kafka_topic
        self.model = model
        self.producer_servers = settings.kafka_bootstrap
        self._producer: Producer | None = Producer(
            {
                "bootstrap.servers": settings.kafka_bootstrap,
                "client.id": "riskray-simulator",
                "acks": "all",
                "enable.idempotence": True,
                "linger.ms": 20,
                "queue.buffering.max.messages": 1_000_000,
                "partitioner": "murmur2_random",  # the Java client's partitioner: same key, same partition
            }
        )
        self.failed = 0
        self.first_failure = ""

    @property
    def producer(self) -> Producer:
        if self._producer is None:
            raise RuntimeError(f"the sink to Kafka topic {self.topic} is closed")
        return self._producer

    def _on_delivery(self, error: object, _message: object) -> None:
        if error is not None:
            self.failed += 1
            self.first_failure = self.first_failure or str(error)

    def write(self, frame: pd.DataFrame) -> None:
        keys = [str(c).encode() for c in frame[self.model.KEY_FIELD].to_numpy()]
        for key, value in zip(keys, kafka_values(frame, self.model), strict=True):
            while True:
                try:
                    self.producer.produce(self.topic, value=value, key=key, on_delivery=self._on_delivery)
                    break
                except BufferError:
                    self.producer.poll(0.05)
        self.producer.poll(0)

    def flush(self, timeout_s: float = 60) -> None:
        """Wait until every message written so far is delivered (or fail saying how many were not)."""
        remaining = self.producer.flush(timeout_s)
        if remaining or self.failed:
            reason = self.first_failure or f"no answer from {self.producer_servers} in {timeout_s:g} s"
            raise DeliveryError(f"{remaining + self.failed} messages were not delivered to Kafka topic {self.topic}: "
                                f"{reason} (does the topic exist? `riskray stack up` creates the world's topics)")

    def close(self) -> None:
        """Deliver what is left, then let the producer go: left to the garbage collector, it can outlive a broker
        that stops and log reconnect errors. Idempotent."""
        if self._producer is not None:
            self.flush()
            self._producer = None


class FileSink:
    """Parquet or CSV by the file's suffix; rows are appended frame by frame."""

    def __init__(self, path: Path) -> None:
        if path.suffix not in {".parquet", ".csv"}:
            raise ValueError(f"output file must end in .parquet or .csv, not '{path.suffix or path.name}'")
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._parquet: pq.ParquetWriter | None = None
        self._csv_header = True

    def write(self, frame: pd.DataFrame) -> None:
        frame = frame[MESSAGE_COLUMNS]
        if self.path.suffix == ".csv":
            out = frame.assign(timestamp=frame["timestamp"].dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ"))
            out.to_csv(self.path, mode="w" if self._csv_header else "a", header=self._csv_header, index=False)
            self._csv_header = False
            return
        # one timestamp unit for every frame: pandas infers ns or us per frame, Parquet wants one file schema
        frame = frame.assign(timestamp=frame["timestamp"].astype("datetime64[us, UTC]"))
        table = pa.Table.from_pandas(frame, preserve_index=False)
        if self._parquet is None:
            self._parquet = pq.ParquetWriter(self.path, table.schema)
        self._parquet.write_table(table)

    def close(self) -> None:
        if self._parquet is not None:
            self._parquet.close()
