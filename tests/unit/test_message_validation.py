"""The stream's check of each Kafka message (streaming/validation.py): the value against the message model, the
size bound, and the key against the customer it carries. Every reason names what is at fault."""

from __future__ import annotations

import json
import uuid

from app.schemas import MAX_MESSAGE_BYTES
from streaming.validation import message_error, validation_errors


def _value(**changes: object) -> bytes:
    fields = {"transaction_id": str(uuid.UUID(int=7, version=4)), "customer_id": 42, "merchant_id": 3,
              "amount": 10.0, "currency": "EUR", "timestamp": "2026-11-29T08:00:00Z", "card_last_4": "1234",
              "is_fraud": 0, "country": "DE", "device_type": "pos", **changes}
    return json.dumps(fields).encode()


def test_a_valid_message_under_its_customers_key_passes() -> None:
    assert message_error(b"42", _value()) is None
    assert message_error(bytearray(b"42"), bytearray(_value())) is None  # as Spark hands them over


def test_every_kind_of_bad_message_gets_a_reason_naming_its_fault() -> None:
    cases = {
        (b"42", None): "message: empty value",
        (b"42", b"x" * (MAX_MESSAGE_BYTES + 1)): f"message: {MAX_MESSAGE_BYTES + 1} bytes, above the bound",
        (b"42", _value(device_type="caf\u00e9").replace(b"\\u00e9", b"\xe9")): "message: Invalid JSON",
        (b"42", b"[1, 2]"): "message: Input should be an object",
        (b"42", _value(amount="ten")): "amount: Input should be a valid number",
        (None, _value()): "key: missing",
        (b"", _value()): "key: missing",
        (b"43", _value()): "key: '43' is not the customer_id 42",
    }
    for (key, value), reason in cases.items():
        assert (message_error(key, value) or "").startswith(reason), (key, reason, message_error(key, value))


def test_validation_errors_pairs_keys_with_values() -> None:
    assert validation_errors([_value(), b"[]"], [b"42", b"42"]) == [None, "message: Input should be an object"]
