"""The data path for real: Kafka -> Spark Structured Streaming -> PostgreSQL, transactions and label events, with
duplicates, late events, malformed messages, and a SIGKILLed driver."""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
from confluent_kafka import Producer

from app import db, labels
from app.config import Settings
from app.schemas import LabelEvent
from streaming.simulator import message_values

from .stream_harness import (
    WORLD_END,
    StreamHarness,
    assert_same_features,
    expected_features,
    expected_merchant_features,
    read_topic,
    stored_features,
    stored_merchant_features,
    stored_transactions,
)

pytestmark = pytest.mark.integration

SEED = 20261205  # the broker-kill test's world
# The fault tests are about loss, not lateness: nothing they send may turn late. (They send a minute of event time in
# one burst over 12 partitions; a batch boundary, or a stop, cuts it at different times per partition, and under the
# 10 s default the rest of that minute turned late.)
GENEROUS_WATERMARK_S = str(3 * 86_400)


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


def _message(customer_id: int, **changes: object) -> bytes:
    """A valid message of a customer no test streams, with ``changes`` to its fields."""
    import json

    fields = {"transaction_id": str(uuid.UUID(int=customer_id, version=4)), "customer_id": customer_id,
              "merchant_id": 3, "amount": 10.0, "currency": "EUR", "timestamp": "2026-11-29T08:00:00Z",
              "card_last_4": "1234", "is_fraud": 0, "country": "DE", "device_type": "pos", **changes}
    return json.dumps(fields).encode()


# key, value, the start of the reason the dead letter must carry
MALFORMED_MORE = [
    (b"5", _message(5, device_type="caf\u00e9").decode().replace("\\u00e9", "\u00e9").encode("latin-1"),
     "message: Invalid JSON: invalid unicode"),  # Latin-1, not UTF-8
    (b"6", b'{"transaction_id": "\xc3\x28"}', "message: Invalid JSON"),  # an invalid UTF-8 sequence
    (b"7", _message(7, card_last_4="1" * 70_000), "message: 70"),  # oversized
    (b"8", _message(8, amount="ten", is_fraud="no"), "amount: Input should be a valid number"),  # wrong types
    (b"9", b"[1, 2, 3]", "message: Input should be an object"),  # JSON, not an object
    (b"10", b'"a transaction"', "message: Input should be an object"),
    (None, _message(11), "key: missing"),  # no key
    (b"999", _message(12), "key: '999' is not the customer_id 12"),  # another customer's key
]


def _label(transaction_id: str, is_fraud: int, source: str, reported_at: datetime, n: int, **more: str) -> dict:
    return {"label_id": str(uuid.UUID(int=(SEED << 64) + n, version=4)), "transaction_id": transaction_id,
            "is_fraud": is_fraud, "source": source, "reported_at": pd.Timestamp(reported_at), **more}


def _label_message(n: int, **changes: object) -> bytes:
    import json

    fields = {"label_id": str(uuid.UUID(int=(SEED << 64) + n, version=4)),
              "transaction_id": str(uuid.UUID(int=n, version=4)), "is_fraud": 1, "source": "dispute",
              "reported_at": "2026-11-29T08:00:00Z", **changes}
    return json.dumps(fields).encode()


# label messages the stream must refuse: key, value, the start of the reason in the labels' dead-letter topic
MALFORMED_LABELS = [
    (b"k1", b"not json", "message: Invalid JSON"),
    (str(uuid.UUID(int=2, version=4)).encode(), _label_message(2, is_fraud=2), "is_fraud: Input should be 0 or 1"),
    (str(uuid.UUID(int=3, version=4)).encode(), _label_message(3, source="hearsay"), "source: Input should be"),
    (str(uuid.UUID(int=4, version=4)).encode(), _label_message(4, reported_at="2026-11-29T08:00:00"),
     "reported_at: Input should have timezone info"),
    (b"someone-else", _label_message(5), "key: 'someone-else' is not the transaction_id"),
]


def test_known_transactions_become_exact_windows_with_duplicates_late_events_and_dead_letters(
    harness: StreamHarness,
) -> None:
    customers = fresh_customers(5, block=1)
    start = START
    on_time = transactions(customers, start, minutes=4, per_minute=5, seed=1)
    # a third as a live client sends them: no label (left out of the message); the tiles count their fraud as 0
    on_time["is_fraud"] = on_time["is_fraud"].astype(float).where(on_time.index % 3 != 0)
    # One event well ahead pushes the watermark past the first windows, so the late ones below are late.
    ahead = transactions(customers[:1], start + timedelta(minutes=8), minutes=1, per_minute=2, seed=2)
    ahead = ahead.head(1)
    duplicates = on_time.sample(3, random_state=0)
    harness.send(as_messages(on_time) + as_messages(ahead) + as_messages(duplicates) + MALFORMED
                 + [(key, value) for key, value, _ in MALFORMED_MORE])
    harness.start()

    valid = pd.concat([on_time, ahead], ignore_index=True)
    settings = harness.settings
    harness.wait_until(lambda: len(stored_transactions(settings, customers)) == len(valid), 180, "raw rows")
    wanted_mark = pd.Timestamp(start + timedelta(minutes=7, seconds=50))
    harness.wait_until(lambda: (harness.watermark() or pd.Timestamp(0, tz=UTC)) >= wanted_mark, 60,
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

    dead = len(MALFORMED) + len(MALFORMED_MORE)
    letters = read_topic(settings, settings.kafka_dlq_topic, until=lambda records: len(records) >= dead)
    assert len(letters) == dead
    by_key = {record.key: record for record in letters}
    for key, value, reason in MALFORMED_MORE:  # each kept whole, with its reason
        assert by_key[key].value == value
        assert dict(by_key[key].headers)["riskray.error"].decode().startswith(reason), (key, by_key[key].headers)
    for key, value in MALFORMED:
        headers = dict(by_key[key].headers)
        assert by_key[key].value == (value or b"")
        assert {"riskray.error", "riskray.source.partition", "riskray.source.offset"} <= set(headers)
    assert dict(by_key[b"2"].headers)["riskray.error"].startswith(b"customer_id: Input should be greater than 0")
    assert b"amount: Field required" in dict(by_key[b"3"].headers)["riskray.error"]
    assert dict(by_key[b"4"].headers)["riskray.error"] == b"message: empty value"
    live = on_time.loc[on_time["is_fraud"].isna(), "transaction_id"]
    assert stored.set_index("transaction_id").loc[live, "is_fraud"].isna().all(), "stored without a label"


def test_label_events_are_stored_once_with_their_history_kept_and_bad_ones_in_the_dead_letter_topic(
    harness: StreamHarness,
) -> None:
    customers = fresh_customers(3, block=2)
    sold = transactions(customers, START, minutes=2, per_minute=3, seed=4).assign(is_fraud=None)  # live: no label
    first, second, third = sold["transaction_id"].iloc[:3]
    t0 = START + timedelta(days=1)
    events = pd.DataFrame([
        _label(first, 1, "analyst", t0, 1),
        _label(second, 1, "dispute", t0, 2, reason_code="10.4", case_id="case-2"),
        _label(second, 1, "chargeback", t0 + timedelta(days=30), 3, reason_code="10.4"),
        _label(third, 1, "dispute", t0, 4),  # a false dispute, resolved below
        _label(third, 0, "confirmed_legitimate", t0 + timedelta(days=9), 5),
        _label(str(uuid.UUID(int=(SEED << 64) + 99, version=4)), 1, "chargeback", t0, 6),  # no such transaction
    ])
    harness.send(as_messages(sold))
    harness.send_labels(events.iloc[[5, 4, 3]])  # out of report order, and before the rest
    harness.start()
    settings = harness.settings
    harness.wait_until(lambda: len(stored_transactions(settings, customers)) == len(sold), 180, "raw rows")
    harness.send_labels(events)  # all again: three of them duplicates
    harness.send_labels(events.iloc[[0]])
    harness.send([(k, v) for k, v, _ in MALFORMED_LABELS], topic=settings.kafka_labels_topic)
    harness.wait_until(harness.caught_up, 120, "every query past every message")

    with db.connection(settings) as conn, conn.cursor() as cur:  # the scratch store holds other tests' labels too
        cur.execute("SELECT label_id::text FROM labels WHERE label_id = ANY(%s::uuid[]) ORDER BY 1",
                    (events["label_id"].tolist(),))
        assert [r[0] for r in cur.fetchall()] == sorted(events["label_id"]), "each event stored once"
        ids = events["transaction_id"].tolist()
        before, between, after = (labels.known_at(cur, ids, at, settings.label_delay_days).set_index(
            "transaction_id") for at in (t0 - timedelta(seconds=1), t0 + timedelta(days=1), t0 + timedelta(days=31)))
    assert before.empty, "nothing known before the first report"
    assert between["is_fraud"].to_dict() == {first: 1, second: 1, third: 1, ids[5]: 1}
    assert between.loc[second, "source"] == "dispute"
    assert after["is_fraud"].to_dict() == {first: 1, second: 1, third: 0, ids[5]: 1}  # the false dispute resolved
    assert after.loc[second, "source"] == "chargeback"
    with db.connection(settings) as conn, conn.cursor() as cur:
        cur.execute("SELECT key, sum(value::bigint) FROM stream_batch_commits, jsonb_each_text(row_counts) "
                    "WHERE query_name LIKE %s GROUP BY key", (f"{settings.stream_query_prefix}-labels@%",))
        totals = {key: int(total) for key, total in cur.fetchall()}
        cur.execute("SELECT transaction_id::text FROM labels l WHERE label_id = ANY(%s::uuid[]) AND NOT EXISTS "
                    "(SELECT 1 FROM transactions t WHERE t.transaction_id = l.transaction_id)",
                    (events["label_id"].tolist(),))
        orphans = [r[0] for r in cur.fetchall()]
    assert orphans == [ids[5]], "a label for a transaction never stored is kept"
    # 3 + 6 + 1 sent, 6 distinct; counted unmatched when stored: the unknown transaction's, and those of the first
    # three whose transaction the raw query had not stored yet (its batch and theirs run side by side)
    assert (totals["valid"], totals["inserted"], totals["duplicates"]) == (10, 6, 4), totals
    assert totals["dlq"] == len(MALFORMED_LABELS) and 1 <= totals["unmatched"] <= 3, totals

    letters = {record.key: record for record in read_topic(
        settings, settings.kafka_labels_dlq_topic, until=lambda records: len(records) >= len(MALFORMED_LABELS))}
    assert len(letters) == len(MALFORMED_LABELS)
    for key, value, reason in MALFORMED_LABELS:  # each kept whole, with its reason
        assert letters[key].value == value
        assert dict(letters[key].headers)["riskray.error"].decode().startswith(reason), letters[key].headers


def test_sigkilled_driver_restarts_without_double_counting_or_losing_rows(stack: Settings, tmp_path: Path) -> None:
    harness = StreamHarness(stack, tmp_path, RISKRAY_STREAM_WATERMARK_SECONDS=GENEROUS_WATERMARK_S)
    try:
        _kill_and_restart(harness, block=10)
    finally:
        harness.stop()


def labels_for(frame: pd.DataFrame, every: int = 10) -> pd.DataFrame:
    """A label event for every ``every``-th transaction (the label-to-transaction ratio the stream is measured at),
    reported an hour after it; ids pinned by the transactions'."""
    part = frame.iloc[::every]
    return pd.DataFrame({
        "label_id": [str(uuid.uuid5(uuid.NAMESPACE_OID, f"label:{t}")) for t in part["transaction_id"]],
        "transaction_id": part["transaction_id"].astype(str).to_numpy(),
        "is_fraud": part["is_fraud"].fillna(0).astype(int).to_numpy(), "source": "analyst",
        "reported_at": pd.to_datetime(part["timestamp"], utc=True) + pd.Timedelta(hours=1)})


def stored_label_ids(settings: Settings, label_ids: list[str]) -> list[str]:
    with db.connection(settings) as conn, conn.cursor() as cur:
        cur.execute("SELECT label_id::text FROM labels WHERE label_id = ANY(%s::uuid[])", (label_ids,))
        return [r[0] for r in cur.fetchall()]


def _kill_and_restart(harness: StreamHarness, block: int) -> None:
    customers = fresh_customers(40, block)
    start = START
    all_rows = transactions(customers, start, minutes=6, per_minute=4, seed=5)
    chunks = [all_rows[all_rows["timestamp"] < pd.Timestamp(start + timedelta(minutes=m + 1))]
              .loc[lambda f, m=m: f["timestamp"] >= pd.Timestamp(start + timedelta(minutes=m))] for m in range(6)]
    events = [labels_for(chunk) for chunk in chunks]  # label events flow beside the transactions, chunk by chunk

    harness.start()
    harness.send(as_messages(chunks[0]))
    harness.send_labels(events[0])
    harness.send(as_messages(chunks[1]))
    harness.send_labels(events[1])
    harness.wait_until(lambda: harness.committed_batches() >= 1, 180, "first committed batches")
    harness.send(as_messages(chunks[2]))
    harness.send_labels(events[2])
    # killed at a point of the stream the pinned seed picks: once that many rows of the three chunks are stored
    sent = len(chunks[0]) + len(chunks[1]) + len(chunks[2])
    kill_at = random.Random(f"kill:{block}").randrange(len(chunks[0]) + 1, sent)
    harness.wait_until(lambda: len(stored_transactions(harness.settings, customers)) >= kill_at, 120,
                       f"{kill_at} stored rows, the kill point")
    harness.kill()

    harness.send(as_messages(chunks[3]))
    harness.send_labels(events[3])
    restarted = time.monotonic()
    harness.start()
    for chunk, chunk_labels in zip(chunks[4:], events[4:], strict=True):
        harness.send(as_messages(chunk))
        harness.send_labels(chunk_labels)
        time.sleep(1)

    settings = harness.settings
    expected = expected_features(all_rows)
    harness.wait_until(lambda: len(stored_transactions(settings, customers)) >= len(all_rows), 180, "raw rows")
    harness.wait_until(lambda: len(stored_features(settings, customers)) == len(expected), 120, "feature rows")
    recovery = time.monotonic() - restarted  # the restart -> every row stored (the last chunks are sent 1 s apart)
    harness.wait_until(lambda: stored_features(settings, customers)["transaction_count"].sum() == len(all_rows),
                       60, "final window counts")
    harness.wait_until(harness.caught_up, 60, "both queries past every message")
    assert_same_features(stored_features(settings, customers), expected)
    stored = stored_transactions(settings, customers)["transaction_id"]
    assert sorted(stored) == sorted(all_rows["transaction_id"]), "every produced id stored exactly once"
    label_ids = pd.concat(events)["label_id"].tolist()
    assert sorted(stored_label_ids(settings, label_ids)) == sorted(label_ids), "every label event stored once"
    from .faults import record

    record(f"Spark driver SIGKILLed after {kill_at} stored rows, label events flowing",
           "restarted from its checkpoint; every id and label event stored once, windows equal a recomputation", 0,
           recovery)


def test_a_sigkilled_broker_restarted_mid_stream_loses_and_doubles_nothing(stack: Settings, tmp_path: Path) -> None:
    """The simulator's producer (idempotent, acks=all) keeps producing while the broker is SIGKILLed and restarted;
    the Spark job rides it out. Every produced id is stored once and the windows equal a recomputation."""
    import os
    import signal
    import threading

    from app.operations import manager, supervisor
    from streaming.sinks import KafkaSink

    from .faults import record
    from .stream_harness import recent_transactions

    harness = StreamHarness(stack, tmp_path, RISKRAY_STREAM_WATERMARK_SECONDS=GENEROUS_WATERMARK_S)
    frame = recent_transactions(SEED, 1, customers=80, merchants=30, block=40)
    chunks = [frame.iloc[i::40].sort_values("timestamp") for i in range(40)]
    events = labels_for(frame)
    sink = KafkaSink(harness.settings)
    labels_sink = Producer({"bootstrap.servers": stack.kafka_bootstrap, "acks": "all", "enable.idempotence": True})
    produced = threading.Event()

    def produce() -> None:  # a steady producer, as the simulator's live mode writes; label events beside
        for i, chunk in enumerate(chunks):
            sink.write(chunk)
            for _, event in events.iloc[i::len(chunks)].iterrows():
                message = LabelEvent.model_validate(event.to_dict())
                labels_sink.produce(harness.settings.kafka_labels_topic, key=message.kafka_key(),
                                    value=message.kafka_value())
            labels_sink.poll(0)
            time.sleep(0.25)
        sink.flush(120)
        assert labels_sink.flush(120) == 0
        produced.set()

    try:
        harness.start()
        harness.wait_until(lambda: harness.committed_batches() >= 1, 180, "the job's first batch")
        producer = threading.Thread(target=produce)
        producer.start()
        time.sleep(2)  # mid-production
        pid = supervisor.rpc(stack).supervisor.getProcessInfo("kafka")["pid"]
        os.kill(pid, signal.SIGKILL)
        killed = time.monotonic()
        time.sleep(3)
        supervisor.start(stack, "kafka")
        manager.wait_healthy(stack, "kafka")
        producer.join(timeout=300)
        assert produced.is_set() and sink.failed == 0, f"{sink.failed} messages not delivered"
        customers = [int(c) for c in frame["customer_id"].unique()]
        harness.wait_until(lambda: len(stored_transactions(harness.settings, customers)) >= len(frame), 240,
                           f"{len(frame)} stored rows")
        recovery = time.monotonic() - killed  # the kill -> every produced row stored (production spans ~10 s)
        harness.wait_until(harness.caught_up, 120, "every query past every message")
        harness.assert_alive()
    finally:
        sink.close() if produced.is_set() else None
        harness.stop()
    stored = stored_transactions(harness.settings, customers)["transaction_id"]
    assert sorted(stored) == sorted(frame["transaction_id"]), "every produced id stored exactly once"
    assert_same_features(stored_features(harness.settings, customers), expected_features(frame))
    label_ids = events["label_id"].tolist()
    assert sorted(stored_label_ids(harness.settings, label_ids)) == sorted(label_ids), "label events stored once"
    record("Kafka broker SIGKILLed mid-stream with label events flowing, restarted 3 s later (time: kill to the "
           "last row stored)", "producers queued and retried (idempotent, acks=all); Spark resumed by itself; every "
           "id and label event stored once, windows equal a recomputation", 0, recovery)


def remount_read_only(folder: Path, patience: float = 60.0) -> None:
    """The kernel refuses to make a mount read-only while a file on it is open for writing ("mount point is busy"):
    the running job writes its offset and state files one at a time, so a retry finds a moment between two."""
    import subprocess

    deadline = time.monotonic() + patience
    while True:
        result = subprocess.run(["mount", "-o", "remount,ro", str(folder)], capture_output=True, text=True)
        if result.returncode == 0:
            return
        if "busy" not in result.stderr or time.monotonic() > deadline:
            raise AssertionError(f"cannot remount {folder} read-only: {result.stderr.strip()}")
        time.sleep(0.02)


def test_a_full_then_read_only_checkpoint_folder_stops_the_job_clearly_and_a_restart_loses_nothing(
    stack: Settings, tmp_path: Path
) -> None:
    """The checkpoint folder on a small tmpfs of its own: filled up, then remounted read-only. Each time the job
    stops with one line naming the folder and the fault; restarted once it is writable again, it stores every
    transaction once and the windows equal a recomputation."""
    import errno
    import os
    import subprocess

    from streaming.status import checkpoint_dir

    from .faults import record

    harness = StreamHarness(stack, tmp_path, RISKRAY_STREAM_WATERMARK_SECONDS=GENEROUS_WATERMARK_S)
    folder = checkpoint_dir(harness.settings)
    folder.mkdir(parents=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=32m", "tmpfs", str(folder)], check=True)
    customers = fresh_customers(20, block=50)
    rows = transactions(customers, START, minutes=6, per_minute=3, seed=11)
    minute = [pd.Timestamp(START + timedelta(minutes=m)) for m in (2, 4)]
    parts = [rows[rows["timestamp"] < minute[0]],
             rows[(rows["timestamp"] >= minute[0]) & (rows["timestamp"] < minute[1])],
             rows[rows["timestamp"] >= minute[1]]]
    settings = harness.settings

    def stored() -> int:
        return len(stored_transactions(settings, customers))

    def stops_saying(what: str) -> None:
        assert harness.process is not None
        harness.process.wait(timeout=300)  # it stops by itself
        said = [line for line in harness.log_path.read_text(errors="replace").splitlines()
                if line.startswith("query ") and "stopped: its checkpoint folder" in line]  # the exit message
        assert said and f"checkpoint folder {folder} {what}" in said[-1] and "nothing is lost" in said[-1], said

    recoveries = []
    try:
        harness.start()
        harness.send(as_messages(parts[0]))
        harness.wait_until(lambda: stored() == len(parts[0]), 180, "the first part stored")

        filler = folder / "filler"
        fill = os.open(filler, os.O_WRONLY | os.O_CREAT)  # the disk fills up (unbuffered: no flush to fail later)
        try:
            while True:
                os.write(fill, b"\0" * (1 << 16))
        except OSError as error:
            assert error.errno == errno.ENOSPC
        finally:
            os.close(fill)
        harness.send(as_messages(parts[1]))
        stops_saying("is full (No space left on device)")
        filler.unlink()  # space returns
        restarted = time.monotonic()
        harness.start()
        harness.wait_until(lambda: stored() == len(parts[0]) + len(parts[1]), 180, "the second part stored")
        recoveries.append(time.monotonic() - restarted)

        remount_read_only(folder)
        harness.send(as_messages(parts[2]))
        stops_saying("is read-only (Read-only file system)")
        subprocess.run(["mount", "-o", "remount,rw", str(folder)], check=True)
        restarted = time.monotonic()
        harness.start()
        harness.wait_until(lambda: stored() == len(rows), 180, "every part stored")
        recoveries.append(time.monotonic() - restarted)
        expected = expected_features(rows)
        harness.wait_until(lambda: stored_features(settings, customers)["transaction_count"].sum() == len(rows), 120,
                           "final window counts")
        harness.wait_until(harness.caught_up, 60, "both queries past every message")
    finally:
        harness.stop()
        subprocess.run(["umount", "-l", str(folder)], check=False)
    assert sorted(stored_transactions(settings, customers)["transaction_id"]) == sorted(rows["transaction_id"])
    assert_same_features(stored_features(settings, customers), expected)
    record("Spark checkpoint folder full (tmpfs filled)", "job stopped with one line naming the folder; restarted "
           "once space returned, every id stored once", 0, recoveries[0])
    record("Spark checkpoint folder read-only (remounted ro)", "job stopped with one line naming the folder; "
           "restarted once writable, every id stored once", 0, recoveries[1])
