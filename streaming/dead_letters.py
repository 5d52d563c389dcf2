"""The dead-letter topic: invalid messages keep their original key and bytes; the reason and where they came
from travel in headers (the convention of Kafka Connect's DLQ), so nothing about them is lost."""

from __future__ import annotations

from confluent_kafka import Producer

from app.config import Settings

ERROR_HEADER = "riskray.error"


class DeadLetterProducer:
    def __init__(self, settings: Settings, topic: str | None = None) -> None:
        self.topic = topic or settings.kafka_dlq_topic
        self.producer = Producer({"bootstrap.servers": settings.kafka_bootstrap, "client.id": "riskray-dlq",
                                  "acks": "all", "enable.idempotence": True})
        self.failures: list[str] = []

    def _on_delivery(self, error: object, _message: object) -> None:
        if error is not None:
            self.failures.append(str(error))

    def send(self, key: bytes | None, value: bytes | None, error: str, topic: str, partition: int,
             offset: int) -> None:
        headers = [(ERROR_HEADER, error.encode()), ("riskray.source.topic", topic.encode()),
                   ("riskray.source.partition", str(partition).encode()),
                   ("riskray.source.offset", str(offset).encode())]
        self.producer.produce(self.topic, key=key, value=value or b"", headers=headers,
                              on_delivery=self._on_delivery)

    def flush(self) -> None:
        """Block until every dead letter is acknowledged; raise if any was not (the batch then fails and is
        retried, so a dead letter is never lost: at-least-once)."""
        remaining = self.producer.flush(30)
        if remaining or self.failures:
            failures, self.failures = self.failures, []
            raise RuntimeError(f"{remaining} dead letters unacknowledged; failures: {failures[:3]}")
