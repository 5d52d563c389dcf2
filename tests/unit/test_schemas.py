from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta, timezone

import pytest

from app.schemas import DeviceType, MessageError, Transaction


def make(**overrides: object) -> dict:
    message = {
        "transaction_id": str(uuid.uuid4()),
        "customer_id": 17,
        "merchant_id": 301,
        "amount": 42.5,
        "currency": "EUR",
        "timestamp": "2026-11-29T08:15:00Z",
        "card_last_4": "0042",
        "is_fraud": 0,
        "country": "DE",
        "device_type": "pos",
    }
    message.update(overrides)
    return message


def test_message_round_trips_through_kafka_bytes() -> None:
    original = Transaction.model_validate(make())
    again = Transaction.from_kafka_value(original.kafka_value())
    assert again == original
    assert original.kafka_key() == b"17"
    assert json.loads(original.kafka_value())["timestamp"] == "2026-11-29T08:15:00Z"


def test_event_time_with_offset_is_normalised_to_utc() -> None:
    txn = Transaction.model_validate(make(timestamp="2026-11-29T10:15:00+02:00"))
    assert txn.timestamp == datetime(2026, 11, 29, 8, 15, tzinfo=UTC)
    assert txn.timestamp.utcoffset() == timedelta(0)


def test_naive_timestamp_is_rejected_because_event_time_must_be_unambiguous() -> None:
    with pytest.raises(MessageError, match="timestamp"):
        Transaction.from_kafka_value(json.dumps(make(timestamp="2026-11-29T08:15:00")))


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("customer_id", 0),
        ("merchant_id", -3),
        ("amount", 0),
        ("amount", "lots"),
        ("currency", "euro"),
        ("country", "Germany"),
        ("card_last_4", "12a4"),
        ("is_fraud", 2),
        ("device_type", "toaster"),
        ("transaction_id", "not-a-uuid"),
        ("customer_id", "17"),
        ("amount", "42.5"),
        ("is_fraud", "1"),
    ],
)
def test_invalid_field_is_named_in_the_error(field: str, value: object) -> None:
    with pytest.raises(MessageError) as caught:
        Transaction.from_kafka_value(json.dumps(make(**{field: value})))
    assert str(caught.value).startswith(f"{field}:")


def test_missing_field_and_unknown_field_are_both_reported() -> None:
    message = make(colour="red")
    del message["amount"]
    with pytest.raises(MessageError) as caught:
        Transaction.from_kafka_value(json.dumps(message))
    assert "amount: Field required" in str(caught.value)
    assert "colour: Extra inputs are not permitted" in str(caught.value)


def test_non_json_bytes_fail_validation_with_a_reason() -> None:
    with pytest.raises(MessageError, match="Invalid JSON"):
        Transaction.from_kafka_value(b"\x00\xffnot json")


def test_device_types_are_the_documented_set() -> None:
    assert {d.value for d in DeviceType} == {"pos", "web", "mobile", "atm"}


def test_non_utc_offsets_compare_equal_after_normalisation() -> None:
    a = Transaction.model_validate(make(timestamp=datetime(2026, 1, 1, 12, tzinfo=timezone(timedelta(hours=5)))))
    b = Transaction.model_validate(make(transaction_id=str(a.transaction_id), timestamp="2026-01-01T07:00:00Z"))
    assert a == b


# --- the HTTP API's request: accepts what its JSON Schema calls valid, rejects what it calls invalid -----------
REQUEST = {"amount": 12.5, "merchant_id": 3, "customer_id": 7}


@pytest.mark.parametrize("body", [
    {**REQUEST, "merchant_id": 1762.0}, {**REQUEST, "customer_id": 7.0, "transaction_count": 2.0},
    {**REQUEST, "amount": 12}, {**REQUEST, "avg_amount": 0}, {**REQUEST, "timestamp": "2026-11-29T10:00:00+01:00"},
])
def test_requests_the_schema_calls_valid_are_accepted(body: dict) -> None:
    from pydantic import TypeAdapter

    from app.schemas import PredictionRequest

    assert PredictionRequest.model_validate_json(json.dumps(body)).customer_id == 7
    assert TypeAdapter(list[PredictionRequest]).validate_python([body])[0].merchant_id in (3, 1762)  # FastAPI's way


@pytest.mark.parametrize(("body", "field"), [
    ({**REQUEST, "merchant_id": 3.5}, "merchant_id"), ({**REQUEST, "customer_id": "7"}, "customer_id"),
    ({**REQUEST, "customer_id": True}, "customer_id"), ({**REQUEST, "amount": "12.5"}, "amount"),
    ({**REQUEST, "transaction_count": "2"}, "transaction_count"), ({**REQUEST, "timestamp": 1764410400}, "timestamp"),
    ({**REQUEST, "timestamp": "2026-11-29T10:00:00"}, "timestamp"),
])
def test_requests_the_schema_calls_invalid_are_rejected_naming_the_field(body: dict, field: str) -> None:
    from pydantic import ValidationError

    from app.schemas import PredictionRequest

    with pytest.raises(ValidationError) as raised:
        PredictionRequest.model_validate_json(json.dumps(body))
    assert [error["loc"][0] for error in raised.value.errors()] == [field]


def test_the_schema_of_ids_is_json_schemas_integer_with_its_bounds() -> None:
    from app.schemas import PredictionRequest

    properties = PredictionRequest.model_json_schema()["properties"]
    assert properties["customer_id"] == {"exclusiveMinimum": 0, "maximum": 2**53 - 1, "title": "Customer Id",
                                         "type": "integer"}
    assert properties["timestamp"]["anyOf"][0] == {"format": "date-time", "type": "string"}


# --- the message's wire form: one derivation from the model, for producers and the stream's canonical check ------
def _frame_of(messages: list[dict]):
    import pandas as pd

    frame = pd.DataFrame(messages)
    frame["timestamp"] = pd.to_datetime(frame["timestamp"], utc=True, format="ISO8601")
    return frame


def test_kafka_values_write_each_message_in_the_models_field_order_and_read_back_as_the_model() -> None:
    from app.schemas import kafka_values

    messages = [make(), make(customer_id=3, amount=7.0, timestamp="2026-11-29T10:15:00.5+02:00", is_fraud=1)]
    values = kafka_values(_frame_of(messages))
    for value, message in zip(values, messages, strict=True):
        assert list(json.loads(value)) == list(Transaction.model_fields)
        assert Transaction.from_kafka_value(value) == Transaction.model_validate(message)


def test_kafka_values_are_in_the_canonical_form_the_stream_vouches_for() -> None:
    import re

    from app.schemas import kafka_values
    from streaming.validation import canonical_regex

    regex = canonical_regex()
    assert regex is not None
    python_regex = re.compile(regex.replace("\\z", "\\Z"))  # Java's end of input is Python's \Z
    for value in kafka_values(_frame_of([make(), make(amount=1_000_000.0, device_type="atm")])):
        assert python_regex.match(value.decode()), value
    assert not python_regex.match(json.dumps(dict(reversed(make().items()))))  # another order is not canonical


def test_the_store_names_message_fields_by_one_mapping() -> None:
    from app.schemas import MESSAGE_STORE_COLUMNS
    from streaming.store_writer import TRANSACTION_COLUMNS

    stored = dict(zip(Transaction.model_fields, MESSAGE_STORE_COLUMNS, strict=True))
    assert stored["timestamp"] == "event_time" and stored["amount"] == "amount"
    assert TRANSACTION_COLUMNS[:len(MESSAGE_STORE_COLUMNS)] == MESSAGE_STORE_COLUMNS
