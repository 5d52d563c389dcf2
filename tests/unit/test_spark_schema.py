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


def test_the_tile_writes_aggregate_and_merge_every_declared_tile_column_from_message_fields() -> None:
    from app.features import TILE_TABLES, TILES
    from streaming.store_writer import TILE_CTES

    for entity, tile in TILES.items():
        sql = TILE_CTES[entity]
        table, _ = TILE_TABLES[entity]
        for a in tile:
            assert f"{a.name} = " in sql, (entity, a.name)  # merged with the stored tile
            assert a.column is None or a.column in Transaction.model_fields
        assert f"INSERT INTO {table} " in sql
