"""Helper process for benchmarks: produce label events at a rate beside the transactions, print the run's stats as
JSON. The events name seeded transaction ids that were never produced: the stream pays the same lookup for each
(its transaction stored or not) and keeps them all, counted unmatched."""

from __future__ import annotations

import json
import sys
import time
import uuid
from datetime import UTC, datetime

import numpy as np
from confluent_kafka import Producer

from app.config import get_settings
from app.schemas import LabelSource

if __name__ == "__main__":
    topic, rate, duration, seed = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
    rng = np.random.default_rng(seed)
    producer = Producer({"bootstrap.servers": get_settings().kafka_bootstrap, "acks": "all",
                         "enable.idempotence": True, "linger.ms": 20})
    sources = [s.value for s in LabelSource if s != LabelSource.BACKFILL]
    began, sent = time.monotonic(), 0
    while (elapsed := time.monotonic() - began) < duration:
        for _ in range(int(rate * elapsed) - sent):
            transaction = uuid.UUID(int=int(rng.integers(0, 2**63)), version=4)
            source = sources[int(rng.integers(0, len(sources)))]
            value = json.dumps({"label_id": str(uuid.uuid5(transaction, source)), "transaction_id": str(transaction),
                                "is_fraud": int(source != "confirmed_legitimate"), "source": source,
                                "reported_at": datetime.now(UTC).isoformat().replace("+00:00", "Z")})
            while True:
                try:
                    producer.produce(topic, key=str(transaction).encode(), value=value.encode())
                    break
                except BufferError:
                    producer.poll(0.05)
            sent += 1
        producer.poll(0)
        time.sleep(0.02)
    seconds = time.monotonic() - began
    assert producer.flush(60) == 0
    print(json.dumps({"events": sent, "seconds": seconds, "rate": sent / seconds}))
