"""Spark's view of the Kafka message, derived from the one pydantic model in app.schemas.

Types follow the model's JSON schema, so adding or changing a field in ``Transaction`` changes the Spark schema
with it. Every field is nullable here: ``from_json`` yields nulls for what it cannot parse, and the job sends
such rows to the dead-letter topic after checking them against the model's constraints.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from pyspark.sql.types import (
    BooleanType,
    DataType,
    DoubleType,
    LongType,
    StringType,
    StructField,
    StructType,
    TimestampType,
)

from app.schemas import Transaction, json_fields


def spark_type(prop: dict[str, Any]) -> DataType:
    json_type = prop.get("type")
    if json_type == "string":
        return TimestampType() if prop.get("format") == "date-time" else StringType()
    if json_type == "integer":
        return LongType()
    if json_type == "number":
        return DoubleType()
    if json_type == "boolean":
        return BooleanType()
    raise TypeError(f"no Spark type for JSON schema {prop}")


def spark_schema(model: type[BaseModel] = Transaction) -> StructType:
    return StructType([StructField(name, spark_type(prop), nullable=True) for name, prop in json_fields(model)])
