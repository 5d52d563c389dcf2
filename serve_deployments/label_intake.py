"""POST /labels: label events from an analyst tool or a case manager go into the ``labels`` topic, the same
exactly-once path as a producer's events (the stream stores each label_id once). The answer waits for Kafka's
acknowledgement of every event (acks=all, idempotent producer), so an accepted event is never lost; a replayed
request is harmless (same label_ids)."""

from __future__ import annotations

import threading

from app.config import Settings
from app.schemas import LabelEvent


class LabelsNotAcceptedError(RuntimeError):
    """Kafka did not acknowledge every event of a request; the client should retry the whole request."""


class LabelIntake:
    def __init__(self, settings: Settings, timeout_s: float = 10.0) -> None:
        self.settings = settings
        self.timeout_s = timeout_s
        self._producer = None
        self._lock = threading.Lock()

    @property
    def producer(self):  # type: ignore[no-untyped-def]
        from confluent_kafka import Producer

        with self._lock:
            if self._producer is None:  # built at the first request: a replica without labels needs no Kafka
                self._producer = Producer({
                    "bootstrap.servers": self.settings.kafka_bootstrap, "client.id": "riskray-serve-labels",
                    "acks": "all", "enable.idempotence": True, "linger.ms": 5,
                    "message.timeout.ms": int(self.timeout_s * 1000)})
            return self._producer

    def send(self, events: list[LabelEvent]) -> int:
        """Write ``events`` to the labels topic and wait for every acknowledgement; returns how many, or raises
        LabelsNotAcceptedError naming what Kafka said."""
        failures: list[str] = []

        def delivered(error: object, _message: object) -> None:
            if error is not None:
                failures.append(str(error))

        producer = self.producer
        for event in events:
            producer.produce(self.settings.kafka_labels_topic, key=event.kafka_key(), value=event.kafka_value(),
                             on_delivery=delivered)
        remaining = producer.flush(self.timeout_s)
        if remaining or failures:
            reason = failures[0] if failures else f"Kafka at {self.settings.kafka_bootstrap} did not answer"
            raise LabelsNotAcceptedError(
                f"{remaining or len(failures)} of {len(events)} label events not acknowledged: {reason}; nothing is "
                "lost by sending the same request again")
        return len(events)
