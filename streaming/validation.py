"""Validation of raw Kafka values against the one message model, for use inside Spark.

Spark's ``from_json`` only knows types; the contract's rules (ids > 0, amount > 0, ISO codes, a timezone on the
event time, no unknown fields) live in ``app.schemas.Transaction``. Running that model here keeps one set of
rules and gives the dead-letter topic the same reason text a user of the model sees.
"""

from __future__ import annotations

from collections.abc import Iterable

import pandas as pd

from app.schemas import MAX_MESSAGE_BYTES, MessageError, Transaction

Raw = bytes | bytearray | None


def message_error(key: Raw, value: Raw) -> str | None:
    """None for a valid message, else the reason naming what is at fault (the value's fields, or the key)."""
    if value is None or len(value) == 0:
        return "message: empty value"
    if len(value) > MAX_MESSAGE_BYTES:
        return f"message: {len(value)} bytes, above the bound of {MAX_MESSAGE_BYTES}"
    try:
        transaction = Transaction.from_kafka_value(bytes(value))
    except MessageError as error:
        return str(error)
    if key is None or len(key) == 0:
        return "key: missing (a transaction's key is its customer_id, which keeps a customer on one partition)"
    if bytes(key) != transaction.kafka_key():
        shown = bytes(key)[:40].decode("utf-8", "backslashreplace")
        return f"key: {shown!r} is not the customer_id {transaction.customer_id}"
    return None


def validation_errors(values: Iterable[Raw], keys: Iterable[Raw]) -> list[str | None]:
    """``message_error`` of each (key, value) pair."""
    return [message_error(key, value) for key, value in zip(keys, values, strict=True)]


def validation_udf():
    from pyspark.sql.functions import pandas_udf

    @pandas_udf("string")  # type: ignore[call-overload]
    def message_error_udf(keys: pd.Series, values: pd.Series) -> pd.Series:
        return pd.Series(validation_errors(values, keys), dtype=object)

    return message_error_udf
