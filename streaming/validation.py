"""Validation of raw Kafka values against their message model, for use inside Spark.

Spark's ``from_json`` only knows types; the contract's rules (ids > 0, amount > 0, ISO codes, a timezone on the
event time, no unknown fields) live in the message models of ``app.schemas`` (``Transaction``, ``LabelEvent``).
Running the model here keeps one set of rules and gives the dead-letter topic the same reason text a user of the
model sees.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import reduce

from app.schemas import MAX_MESSAGE_BYTES, NUMBER_BOUNDS, KafkaMessage, MessageError, Transaction, message_fields

Raw = bytes | bytearray | None

# why each message is keyed as it is, for the dead-letter reason of a message without its key
_KEY_REASON = {"customer_id": "which keeps a customer on one partition",
               "transaction_id": "which keeps a transaction's labels in order on one partition"}


def message_error(key: Raw, value: Raw, model: type[KafkaMessage] = Transaction) -> str | None:
    """None for a valid message, else the reason naming what is at fault (the value's fields, or the key)."""
    if value is None or len(value) == 0:
        return "message: empty value"
    if len(value) > MAX_MESSAGE_BYTES:
        return f"message: {len(value)} bytes, above the bound of {MAX_MESSAGE_BYTES}"
    try:
        message = model.from_kafka_value(bytes(value))
    except MessageError as error:
        return str(error)
    field = model.KEY_FIELD
    if key is None or len(key) == 0:
        return f"key: missing (the key is the {field}, {_KEY_REASON.get(field, 'as the contract says')})"
    if bytes(key) != message.kafka_key():
        shown = bytes(key)[:40].decode("utf-8", "backslashreplace")
        return f"key: {shown!r} is not the {field} {getattr(message, field)}"
    return None


def validation_errors(values: Iterable[Raw], keys: Iterable[Raw],
                      model: type[KafkaMessage] = Transaction) -> list[str | None]:
    """``message_error`` of each (key, value) pair."""
    return [message_error(key, value, model) for key, value in zip(keys, values, strict=True)]


# --- the same check in the JVM, for the common case ----------------------------------------------------------
# Running the model over every message costs a trip through a Python worker per row. Nearly every message is in the
# canonical form the producers write (``app.schemas.kafka_values``, ``Transaction.kafka_value``): the model's fields
# in its order, each once, JSON types as the schema says, no escapes. That form is one anchored regular expression
# derived from the same wire description (``app.schemas.message_fields``), checked in the JVM with the schema's
# bounds on the parsed values; it implies that the model accepts the message. Every other message still goes to
# the model itself, so the accepted set and the reasons stay exactly the model's
# (tests/integration/test_message_check_in_the_jvm.py).
_SPACE = "[ \\t\\n\\r]*"  # JSON's whitespace (Java's \\s has two more)
_JSON_INTEGER = "-?(?:0|[1-9][0-9]*)"
_JSON_NUMBER = r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?"
_FORMATS = {
    "uuid": "[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}",
    # RFC 3339 with an offset and at most microseconds, in years Spark and the model read alike
    "date-time": r"(?:19|20)[0-9]{2}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]{1,6})?"
                 r"(?:Z|[+-][0-9]{2}:[0-9]{2})",
}


def _value_regex(prop: dict) -> str | None:
    """What a field's JSON text must look like in the canonical form, or None if this check cannot tell."""
    kind = prop.get("type")
    if "enum" in prop:
        alternatives = "|".join(re.escape(str(v)) for v in prop["enum"])
        return f'"(?:{alternatives})"' if kind == "string" else f"(?:{alternatives})" if kind == "integer" else None
    if kind == "integer":
        return _JSON_INTEGER
    if kind == "number":
        return _JSON_NUMBER
    if kind == "string":
        if "format" in prop:
            body = _FORMATS.get(prop["format"])
        else:
            pattern = prop.get("pattern", "")
            body = pattern[1:-1] if pattern.startswith("^") and pattern.endswith("$") else None
        return f'"(?:{body})"' if body is not None else None
    return None


def canonical_regex(model: type[KafkaMessage] = Transaction) -> str | None:
    """The canonical form of a whole message, from the model's wire form (``app.schemas.message_fields``: its
    fields in order, with their JSON schema, an optional one present or left out; None if a field cannot be
    checked)."""
    fields = []
    for i, (name, prop) in enumerate(message_fields(model)):
        value = _value_regex(prop)
        if value is None:
            return None
        field = f'{_SPACE},{_SPACE}' * (i > 0) + f'"{re.escape(name)}"{_SPACE}:{_SPACE}{value}'
        fields.append(f"(?:{field})?" if prop.get("optional") else field)
    # Java's \\A and \\z: the whole text (its $ would also match before a final line terminator)
    return f"\\A{_SPACE}\\{{{_SPACE}" + "".join(fields) + f"{_SPACE}\\}}{_SPACE}\\z"


def canonical_message(key: str = "key", value: str = "value", parsed: str = "m",
                      model: type[KafkaMessage] = Transaction):
    """A Spark predicate over Kafka rows: true only for a message the model accepts under its key.

    ``parsed``: the struct ``from_json`` made of the value with the Spark schema, for the schema's bounds (the
    regex fixes the form, the bounds the values). Never null: a null comparison counts as "not canonical", and such
    a message goes to the model."""
    from pyspark.sql import functions as F

    regex = canonical_regex(model)
    if regex is None:
        return F.lit(False)
    raw = F.col(value)
    checks = [F.length(raw) <= MAX_MESSAGE_BYTES, raw.cast("string").rlike(regex)]
    for name, prop in message_fields(model):
        column = F.col(f"{parsed}.{name}")
        field_checks = []
        if prop.get("type") == "number":
            field_checks.append(~F.isnan(column) & (F.abs(column) < float("inf")))  # 1e400 reads as infinity
        for bound, (_, holds) in NUMBER_BOUNDS.items():
            if bound in prop:
                field_checks.append(holds(column, prop[bound]))
        if prop.get("optional"):  # left out (the regex fixed its form when present)
            checks.extend(column.isNull() | check for check in field_checks)
        else:
            checks.extend([column.isNotNull(), *field_checks])  # Spark read it too (a 30th of February reads null)
    # the key is the key field as KafkaMessage.kafka_key writes it
    checks.append(F.col(key) == F.col(f"{parsed}.{model.KEY_FIELD}").cast("string").cast("binary"))
    return F.coalesce(reduce(lambda a, b: a & b, checks), F.lit(False))
