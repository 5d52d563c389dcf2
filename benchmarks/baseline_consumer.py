"""Baseline for benchmarks/streaming_benchmark.py: the hand-rolled alternative to Spark — one Python process with
a librdkafka consumer, the same message model, 1-minute tiles kept in a dict, and the same store writer.

No watermark, no checkpointed state (a restart loses the in-memory tiles), no dedup beyond the raw table: it is
the "plain Kafka consumer service" riskray is measured against, not a product path.
Usage (by the benchmark): python benchmarks/baseline_consumer.py TOPIC GROUP SECONDS
"""

from __future__ import annotations

import sys
import time
from collections import defaultdict

import numpy as np
import pandas as pd
from confluent_kafka import Consumer

from app import db
from app.config import get_settings
from app.schemas import STORE_COLUMN_OF, Transaction
from streaming import store_writer
from streaming.validation import validation_errors


def main() -> None:
    topic, group, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
    settings = get_settings()
    consumer = Consumer({"bootstrap.servers": settings.kafka_bootstrap, "group.id": group,
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    consumer.subscribe([topic])
    # (kind, id, window_start) -> [count, sum, sum of squares, max, frauds, last event]
    tiles: dict[tuple[str, int, pd.Timestamp], list] = defaultdict(lambda: [0, 0.0, 0.0, 0.0, 0, None])
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        messages = [m for m in consumer.consume(num_messages=50_000, timeout=1.0) if m.error() is None]
        if not messages:
            continue
        values = [m.value() for m in messages]
        errors = validation_errors(values, [m.key() for m in messages])
        valid = [Transaction.from_kafka_value(v) for v, e in zip(values, errors, strict=True) if e is None]
        rows = pd.DataFrame([t.model_dump() for t in valid]).rename(columns=STORE_COLUMN_OF)
        # model_dump writes the time as the message does: no fraction when it is zero (one message in a million at
        # microsecond precision), so the format must not be inferred from the first row
        rows["event_time"] = pd.to_datetime(rows["event_time"], utc=True, format="ISO8601")
        rows["transaction_id"] = rows["transaction_id"].astype(str)
        rows["kafka_partition"], rows["kafka_offset"], rows["is_late"] = 0, 0, False
        touched: set[tuple[str, int, pd.Timestamp]] = set()
        starts = rows["event_time"].dt.floor("60s")
        for kind, ids in (("customer", rows["customer_id"]), ("merchant", rows["merchant_id"])):
            for key_id, start, amount, fraud, at in zip(ids, starts, rows["amount"], rows["is_fraud"],
                                                        rows["event_time"], strict=True):
                tile = tiles[(kind, key_id, start)]
                tile[0] += 1
                tile[1] += amount
                tile[2] += amount * amount
                tile[3] = max(tile[3], amount)
                tile[4] += fraud
                tile[5] = at if tile[5] is None else max(tile[5], at)
                touched.add((kind, key_id, start))
        with db.connection(settings) as conn, conn.cursor() as cur:
            store_writer.insert_transactions(cur, rows)
            for kind in ("customer", "merchant"):
                keys = [k for k in touched if k[0] == kind]
                values_ = np.array([tiles[k][:5] for k in keys], dtype=float).reshape(-1, 5)
                count, total, squares = values_[:, 0], values_[:, 1], values_[:, 2]
                variance = np.where(count > 1, (squares - total * total / np.maximum(count, 1)) /
                                    np.maximum(count - 1, 1), 0.0)
                frame = pd.DataFrame({
                    f"{kind}_id": [k[1] for k in keys], "window_start": [k[2] for k in keys],
                    "window_end": [k[2] + pd.Timedelta(minutes=1) for k in keys],
                    "transaction_count": count.astype(int), "amount_sum": total,
                    "avg_amount": total / np.maximum(count, 1), "max_amount": values_[:, 3],
                    "amount_std": np.sqrt(np.maximum(variance, 0)), "fraud_count": values_[:, 4].astype(int),
                    "last_event_at": [tiles[k][5] for k in keys],
                })
                store_writer.upsert_tiles(cur, kind, frame)
        consumer.commit(asynchronous=False)
    consumer.close()


if __name__ == "__main__":
    main()
