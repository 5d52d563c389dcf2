"""The stream's check of each message in the JVM (``streaming.validation.canonical_message``) against the model
itself, in a real Spark session, for transactions and label events: whatever the JVM vouches for the model
accepts, every simulated message is vouched for, and the stream's valid set (JVM first, the model for the rest) is
exactly the model's."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from pyspark.sql import SparkSession
from pyspark.sql.types import BinaryType, IntegerType, LongType, StringType, StructField, StructType

from app.config import Settings
from app.schemas import MAX_MESSAGE_BYTES, KafkaMessage, LabelEvent, Transaction
from streaming.simulator import Simulator, SimulatorConfig, message_values
from streaming.validation import message_error

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def spark(settings: Settings) -> Iterator[SparkSession]:
    from streaming.spark_job import build_session

    session = build_session(settings.model_copy(update={"spark_master": "local[1]"}))
    yield session
    session.stop()


def _value(**changes: object) -> bytes:
    fields = {"transaction_id": str(uuid.UUID(int=7, version=4)), "customer_id": 42, "merchant_id": 3,
              "amount": 10.5, "currency": "EUR", "timestamp": "2026-11-29T08:00:00.250Z", "card_last_4": "1234",
              "is_fraud": 0, "country": "DE", "device_type": "pos", **changes}
    return json.dumps({k: v for k, v in fields.items() if v is not ...}).encode()


def _edge_cases() -> list[tuple[bytes | None, bytes | None]]:
    """Messages the model accepts in a form the producers never write, and every kind of bad one."""
    good = _value()
    values = [
        good, _value(is_fraud=...), _value(is_fraud=None),  # live: no label, or an explicit null
        _value(amount=10), _value(is_fraud=True), _value(timestamp=1764403200), _value(currency="\\u0045UR"),
        _value(transaction_id=str(uuid.UUID(int=7, version=4)).upper()), _value(transaction_id=uuid.UUID(int=9).hex),
        _value(timestamp="2026-11-29T08:00:00.1234567Z"), _value(timestamp="2026-11-29 08:00:00Z"),
        _value(timestamp="2026-11-29T08:00Z"), _value(timestamp="2026-11-29T10:00:00+02:00"),
        _value(timestamp="2026-11-29T08:00:00"), _value(timestamp="2026-02-30T08:00:00Z"),
        _value(timestamp="2026-13-01T08:00:00Z"), _value(timestamp="2026-11-29T24:00:00Z"),
        _value(timestamp="2026-11-29T08:00:60Z"), _value(timestamp="2026-11-29T08:00:00+25:00"),
        _value(timestamp="1900-02-29T08:00:00Z"), _value(timestamp="tomorrow"),
        _value(timestamp="3576-01-01T00:00:00Z"), _value(timestamp="1850-01-01T00:00:00Z"),  # beyond the stream's
        _value(amount="ten"), _value(amount="NaN"), _value(amount="Infinity"), _value(amount=-1), _value(amount=0),
        _value(amount=1_000_000), _value(amount=1_000_000.01), _value(amount="12.5"),
        good.replace(b'"amount": 10.5', b'"amount": 1e400'), good.replace(b'"amount": 10.5', b'"amount": NaN'),
        _value(customer_id=0), _value(customer_id=-5), _value(customer_id=42.0), _value(customer_id="42"),
        _value(customer_id=2**64), _value(merchant_id=None), _value(merchant_id=...), _value(is_fraud=2),
        _value(is_fraud="0"), _value(is_fraud=1.0), _value(card_last_4=1234), _value(card_last_4="123"),
        _value(card_last_4="12345"), _value(currency="eur"), _value(currency="EURO"), _value(country=12),
        _value(country="D"), _value(device_type="phone"), _value(device_type="POS"), _value(device_type=["pos"]),
        _value(transaction_id="not-a-uuid"), _value(transaction_id=7), _value(extra="field"),
        good.replace(b'{"transaction_id"', b'{"amount": -3, "transaction_id"'),  # a duplicated key
        good.replace(b'"card_last_4": "1234"', b'"card_last_4": "12\\"34"'),
        good.replace(b'"pos"', b'"p\xe9s"'), good[:-1], b"[1, 2]", b"null", b"", b"x" * (MAX_MESSAGE_BYTES + 1),
        json.dumps({**json.loads(good), "device_type": "pos" + " " * MAX_MESSAGE_BYTES}).encode(),
        json.dumps(dict(reversed(json.loads(good).items()))).encode(),  # another field order: the model decides
        b" \n" + good + b"\r\n", b"\x0c" + good, good + "\u2028".encode(), good + b"\n{}",
        good.replace(b", ", b",\x0b"),
    ]
    cases: list[tuple[bytes | None, bytes | None]] = [(b"42", v) for v in values]
    cases += [(None, good), (b"", good), (b"43", good), (b"042", good), (b"42 ", good), (b"42", None)]
    return cases


_TRANSACTION = str(uuid.UUID(int=8, version=4))


def _label(**changes: object) -> bytes:
    fields = {"label_id": str(uuid.UUID(int=5, version=4)), "transaction_id": _TRANSACTION, "is_fraud": 1,
              "source": "chargeback", "reported_at": "2026-11-29T08:00:00.250Z", "reason_code": "10.4",
              "case_id": "case-17", **changes}
    return json.dumps({k: v for k, v in fields.items() if v is not ...}).encode()


def _label_edge_cases() -> list[tuple[bytes | None, bytes | None]]:
    good = _label()
    values = [
        good, _label(reason_code=..., case_id=...), _label(case_id=...), _label(reason_code=None),
        _label(is_fraud=0), _label(is_fraud=2), _label(is_fraud="1"), _label(is_fraud=...), _label(source="rumour"),
        _label(source="Chargeback"), _label(reported_at="2026-11-29T08:00:00"), _label(reported_at="soon"),
        _label(reported_at="2026-11-29T10:00:00+02:00"), _label(reported_at=1764403200),
        _label(reported_at="3576-01-01T00:00:00Z"),
        _label(reason_code=""), _label(reason_code="10 4"), _label(reason_code="x" * 13), _label(case_id="a b"),
        _label(case_id="c" * 65), _label(label_id="nope"), _label(label_id=...), _label(extra=1),
        json.dumps(dict(reversed(json.loads(good).items()))).encode(), b"{}", b"null", b"",
    ]
    cases: list[tuple[bytes | None, bytes | None]] = [(_TRANSACTION.encode(), v) for v in values]
    cases += [(None, good), (b"", good), (_TRANSACTION.upper().encode(), good), (b"42", good)]
    return cases


def _checked(spark: SparkSession, cases: list[tuple[bytes | None, bytes | None]],
             model: type[KafkaMessage] = Transaction) -> list[tuple[bool, bool, bool]]:
    """(vouched for in the JVM, accepted by the stream's filter, parsed by Spark's schema) per case."""
    from streaming.spark_job import collected, rejections

    # the Kafka source's columns: the case's number stands in for its offset
    schema = StructType([StructField("offset", LongType()), StructField("key", BinaryType()),
                         StructField("value", BinaryType()), StructField("topic", StringType()),
                         StructField("partition", IntegerType())])
    frame = spark.createDataFrame([(i, k, v, "t", 0) for i, (k, v) in enumerate(cases)], schema)
    rows = collected(frame, model).sort_values("offset", ignore_index=True)
    assert rows["offset"].tolist() == list(range(len(cases)))
    accepted = rejections(rows, model).isna()
    return [(bool(c), bool(a), bool(p)) for c, a, p in zip(rows["canonical"], accepted, rows["fully_parsed"],
                                                            strict=True)]


@pytest.mark.parametrize("model", [Transaction, LabelEvent], ids=lambda m: m.__name__)
def test_the_jvm_vouches_only_for_messages_the_model_accepts_and_the_stream_keeps_exactly_the_models_set(
        spark: SparkSession, model: type[KafkaMessage]) -> None:
    cases = _edge_cases() if model is Transaction else _label_edge_cases()
    checked = _checked(spark, cases, model)
    wrong = []
    for (key, value), (canonical, stream_accepts, spark_parses) in zip(cases, checked, strict=True):
        model_says = message_error(key, value, model)
        if canonical and model_says is not None:
            wrong.append(f"JVM vouched for {key!r} {(value or b'')[:200]!r}: the model says {model_says}")
        # a value the model accepts but Spark's schema cannot hold (is_fraud: true, 7 fractional digits) goes to the
        # dead-letter topic, saying so: as before the JVM check
        if stream_accepts != (model_says is None and spark_parses):
            wrong.append(f"stream {'accepts' if stream_accepts else 'refuses'} {key!r} {(value or b'')[:200]!r}: "
                         f"the model says {model_says}")
    assert not wrong, "\n".join(wrong)
    assert checked[0][0], "the plain good message is canonical"
    assert sum(c for c, _, _ in checked) >= 3, "a few of the model-accepted variants are canonical too"


def test_every_simulated_message_is_vouched_for_in_the_jvm(spark: SparkSession) -> None:
    frame = next(iter(Simulator(SimulatorConfig(seed=5, customers=200, merchants=40)).backfill(
        datetime(2026, 11, 1, tzinfo=UTC), 1))).head(2000)
    cases = [(str(c).encode(), v) for c, v in zip(frame["customer_id"], message_values(frame), strict=True)]
    assert all(canonical for canonical, _, _ in _checked(spark, cases))


def test_every_simulated_label_event_is_vouched_for_in_the_jvm(spark: SparkSession) -> None:
    from streaming.label_delays import LabelDelayConfig, label_events, label_keys, label_values

    frame = next(iter(Simulator(SimulatorConfig(seed=5, customers=2000, merchants=100)).backfill(
        datetime(2026, 11, 1, tzinfo=UTC), 1)))
    events = label_events(frame, LabelDelayConfig(seed=5))
    assert len(events) > 20 and {"analyst", "dispute", "chargeback"} <= set(events["source"])
    checked = _checked(spark, list(zip(label_keys(events), label_values(events), strict=True)), LabelEvent)
    assert all(canonical for canonical, _, _ in checked)
