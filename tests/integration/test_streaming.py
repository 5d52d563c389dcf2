"""The data path for real: Kafka -> Spark Structured Streaming -> PostgreSQL, with duplicates, late events,
malformed messages, and a SIGKILLed driver."""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
from kafka import KafkaConsumer

from app.config import Settings
from streaming.simulator import message_values

from .stream_harness import (
    WORLD_END,
    StreamHarness,
    assert_same_features,
    expected_features,
    expected_merchant_features,
    stored_features,
    stored_merchant_features,
    stored_transactions,
)

pytestmark = pytest.mark.integration


@pytest.fixture()
def harness(stack: Settings, tmp_path: Path) -> Iterator[StreamHarness]:
    job = StreamHarness(stack, tmp_path)
    yield job
    job.stop()


# Known sets start from a fixed moment, never the clock: the stream keys on event time only.
START = (WORLD_END - timedelta(minutes=30)).replace(second=0, microsecond=0)


def transactions(customers: list[int], start: datetime, minutes: int, per_minute: int, seed: int) -> pd.DataFrame:
    """A known set: every customer has ``per_minute`` (+-2) transactions in each of ``minutes`` windows, at five
    merchants whose ids, like the customers', no other test uses; transaction ids, too, are the world's own (the
    raw path keeps one row per id across the table)."""
    rng = random.Random(f"{seed}:{customers[0]}")
    merchants = [customers[0] + 10**6 + i for i in range(5)]
    rows = []
    for customer in customers:
        for minute in range(minutes):
            for _ in range(max(1, per_minute + rng.randint(-2, 2))):
                rows.append({
                    "transaction_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                    "customer_id": customer, "merchant_id": rng.choice(merchants),
                    "amount": round(rng.uniform(1, 500), 2), "currency": "EUR",
                    "timestamp": pd.Timestamp(start + timedelta(minutes=minute, seconds=rng.uniform(0, 59.9))),
                    "card_last_4": "4242", "is_fraud": int(rng.random() < 0.1), "country": "DE",
                    "device_type": rng.choice(["pos", "web", "mobile"]),
                })
    frame = pd.DataFrame(rows).sort_values("timestamp", ignore_index=True)
    frame["timestamp"] = pd.to_datetime(frame["timestamp"], utc=True)
    return frame


def as_messages(frame: pd.DataFrame) -> list[tuple[bytes, bytes]]:
    return list(zip((str(c).encode() for c in frame["customer_id"]), message_values(frame), strict=True))


def fresh_customers(count: int, block: int) -> list[int]:
    """Customer ids of their own for each ``block`` (one per test and parameter), unused by the simulator."""
    return [10**12 + block * 10**6 + i for i in range(count)]


MALFORMED = [
    (b"1", b"\x00\xffnot json at all"),
    (b"2", b'{"transaction_id": "8d1f5c2e-4b7a-4c1e-9a55-2f0c2a7b9e10", "customer_id": 0, "merchant_id": 3, '
           b'"amount": 10.0, "currency": "EUR", "timestamp": "2026-11-29T08:00:00Z", "card_last_4": "1234", '
           b'"is_fraud": 0, "country": "DE", "device_type": "pos"}'),
    (b"3", b'{"transaction_id": "0c6f1a7e-9b2d-4f3a-8e61-5d4c3b2a1f00", "customer_id": 5, "merchant_id": 3, '
           b'"currency": "EUR", "timestamp": "2026-11-29T08:00:00Z", "card_last_4": "1234", "is_fraud": 0, '
           b'"country": "DE", "device_type": "pos"}'),
    (b"4", None),
]


def test_known_transactions_become_exact_windows_with_duplicates_late_events_and_dead_letters(
    harness: StreamHarness,
) -> None:
    customers = fresh_customers(5, block=1)
    start = START
    on_time = transactions(customers, start, minutes=4, per_minute=5, seed=1)
    # One event well ahead pushes the watermark past the first windows, so the late ones below are late.
    ahead = transactions(customers[:1], start + timedelta(minutes=8), minutes=1, per_minute=2, seed=2)
    ahead = ahead.head(1)
    duplicates = on_time.sample(3, random_state=0)
    harness.send(as_messages(on_time) + as_messages(ahead) + as_messages(duplicates) + MALFORMED)
    harness.start()

    valid = pd.concat([on_time, ahead], ignore_index=True)
    settings = harness.settings
    harness.wait_until(lambda: len(stored_transactions(settings, customers)) == len(valid), 180, "raw rows")
    wanted_mark = pd.Timestamp(start + timedelta(minutes=7, seconds=50))
    harness.wait_until(lambda: (harness.features_watermark() or pd.Timestamp(0, tz=UTC)) >= wanted_mark, 60,
                       "the watermark to pass the first windows")

    late = transactions(customers[1:2], start + timedelta(minutes=1), minutes=1, per_minute=3, seed=3)
    harness.send(as_messages(late))
    everything = pd.concat([valid, late], ignore_index=True)
    harness.wait_until(lambda: len(stored_transactions(settings, customers)) == len(everything), 60, "late rows")

    expected = expected_features(valid)  # late rows are stored raw but never counted in a window
    harness.wait_until(lambda: len(stored_features(settings, customers)) == len(expected), 60, "feature rows")
    harness.wait_until(harness.caught_up, 60, "both queries past every message")  # nothing may change any more
    assert_same_features(stored_features(settings, customers), expected)
    merchants = sorted(valid["merchant_id"].unique().tolist())
    assert_same_features(stored_merchant_features(settings, merchants), expected_merchant_features(valid))

    stored = stored_transactions(settings, customers)
    assert sorted(stored["transaction_id"]) == sorted(everything["transaction_id"]), "duplicates stored once"
    assert set(stored.loc[stored["is_late"], "transaction_id"]) == set(late["transaction_id"])

    consumer = KafkaConsumer(settings.kafka_dlq_topic, bootstrap_servers=settings.kafka_bootstrap,
                             auto_offset_reset="earliest", consumer_timeout_ms=10_000)
    letters = list(consumer)
    consumer.close()
    assert len(letters) == len(MALFORMED)
    by_key = {record.key: record for record in letters}
    for key, value in MALFORMED:
        headers = dict(by_key[key].headers)
        assert by_key[key].value == (value or b"")
        assert {"riskray.error", "riskray.source.partition", "riskray.source.offset"} <= set(headers)
    assert dict(by_key[b"2"].headers)["riskray.error"].startswith(b"customer_id: Input should be greater than 0")
    assert b"amount: Field required" in dict(by_key[b"3"].headers)["riskray.error"]
    assert dict(by_key[b"4"].headers)["riskray.error"] == b"message: empty value"


@pytest.mark.parametrize(("output_mode", "state_store"), [("update", "hdfs"), ("append", "rocksdb")])
def test_sigkilled_driver_restarts_without_double_counting_or_losing_rows(
    stack: Settings, tmp_path: Path, output_mode: str, state_store: str
) -> None:
    harness = StreamHarness(stack, tmp_path, RISKRAY_STREAM_OUTPUT_MODE=output_mode,
                            RISKRAY_SPARK_STATE_STORE=state_store)
    try:
        _kill_and_restart(harness, closing=output_mode == "append", block=10 if output_mode == "update" else 20)
    finally:
        harness.stop()


def _kill_and_restart(harness: StreamHarness, closing: bool, block: int) -> None:
    customers = fresh_customers(40, block)
    start = START
    all_rows = transactions(customers, start, minutes=6, per_minute=4, seed=5)
    chunks = [all_rows[all_rows["timestamp"] < pd.Timestamp(start + timedelta(minutes=m + 1))]
              .loc[lambda f, m=m: f["timestamp"] >= pd.Timestamp(start + timedelta(minutes=m))] for m in range(6)]

    harness.start()
    harness.send(as_messages(chunks[0]))
    harness.send(as_messages(chunks[1]))
    harness.wait_until(lambda: harness.committed_batches(raw=False) >= 1 and harness.committed_batches() >= 1, 180,
                       "first committed batches")
    harness.send(as_messages(chunks[2]))
    time.sleep(0.7)  # mid-stream: the chunk may be half processed
    harness.kill()

    harness.send(as_messages(chunks[3]))
    harness.start()
    for chunk in chunks[4:]:
        harness.send(as_messages(chunk))
        time.sleep(1)
    if closing:  # append mode emits a window once the watermark passes its end: push it past the last one
        closer = transactions(fresh_customers(1, block + 1), start + timedelta(minutes=9), minutes=1, per_minute=3,
                              seed=9)
        harness.send(as_messages(closer))

    settings = harness.settings
    expected = expected_features(all_rows)
    harness.wait_until(lambda: len(stored_transactions(settings, customers)) >= len(all_rows), 180, "raw rows")
    harness.wait_until(lambda: len(stored_features(settings, customers)) == len(expected), 120, "feature rows")
    harness.wait_until(lambda: stored_features(settings, customers)["transaction_count"].sum() == len(all_rows),
                       60, "final window counts")
    harness.wait_until(harness.caught_up, 60, "both queries past every message")
    assert_same_features(stored_features(settings, customers), expected)
    assert len(stored_transactions(settings, customers)) == len(all_rows)
