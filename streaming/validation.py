"""Validation of raw Kafka values against the one message model, for use inside Spark.

Spark's ``from_json`` only knows types; the contract's rules (ids > 0, amount > 0, ISO codes, a timezone on the
event time, no unknown fields) live in ``app.schemas.Transaction``. Running that model here keeps one set of
rules and gives the dead-letter topic the same reason text a user of the model sees.
"""

from __future__ import annotations

from collections.abc import Iterable

import pandas as pd

from app.schemas import MessageError, Transaction


def validation_errors(values: Iterable[bytes | bytearray | None]) -> list[str | None]:
    """None for each valid message, else the reason naming the fields at fault."""
    errors: list[str | None] = []
    for value in values:
        if value is None or len(value) == 0:
            errors.append("message: empty value")
            continue
        try:
            Transaction.from_kafka_value(bytes(value))
            errors.append(None)
        except MessageError as error:
            errors.append(str(error))
    return errors


def validation_udf():
    from pyspark.sql.functions import pandas_udf

    @pandas_udf("string")  # type: ignore[call-overload]
    def message_error(values: pd.Series) -> pd.Series:
        return pd.Series(validation_errors(values), dtype=object)

    return message_error
