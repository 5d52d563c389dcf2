from __future__ import annotations

from pyspark.sql.types import DoubleType, LongType, StringType, TimestampType

from app.schemas import Transaction
from streaming.spark_schema import spark_schema


def test_spark_schema_has_exactly_the_message_fields_in_order() -> None:
    assert spark_schema().fieldNames() == list(Transaction.model_fields)


def test_spark_types_follow_the_model() -> None:
    types = {field.name: field.dataType for field in spark_schema().fields}
    assert types["transaction_id"] == StringType()
    assert types["customer_id"] == LongType()
    assert types["merchant_id"] == LongType()
    assert types["amount"] == DoubleType()
    assert types["timestamp"] == TimestampType()
    assert types["is_fraud"] == LongType()
    assert types["device_type"] == StringType()


def test_every_spark_field_is_nullable_so_bad_rows_reach_the_dlq_instead_of_failing_the_batch() -> None:
    assert all(field.nullable for field in spark_schema().fields)


def test_the_tile_aggregation_reads_what_the_tile_declarations_aggregate() -> None:
    from app.features import TILES
    from streaming.spark_job import TILE_AGGREGATES, TILE_INPUTS

    declared = {a for tile in TILES.values() for a in tile}
    assert set(TILE_AGGREGATES) == declared
    assert set(TILE_INPUTS) == {a.column for a in declared if a.column is not None}
    assert set(TILE_INPUTS) <= set(Transaction.model_fields)
