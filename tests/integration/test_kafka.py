from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pandas as pd
import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import ConfigResource, ConfigResourceType

from app.config import Settings
from app.operations.kafka import admin
from app.schemas import Transaction

from .stream_harness import read_topic, topic_ends

pytestmark = pytest.mark.integration


def test_message_produced_to_transactions_is_consumed_back_intact(stack: Settings) -> None:
    sent = Transaction(
        transaction_id=uuid.UUID("5f0c8a52-6d1e-4b7a-9c3d-2e8f1a4b6c70"), customer_id=4242, merchant_id=7,
        amount=19.99, currency="EUR", timestamp=datetime(2026, 11, 20, 12, 0, tzinfo=UTC), card_last_4="1234",
        is_fraud=0, country="FR", device_type="web",
    )
    producer = KafkaProducer(bootstrap_servers=stack.kafka_bootstrap, acks="all")
    metadata = producer.send(stack.kafka_topic, key=sent.kafka_key(), value=sent.kafka_value()).get(timeout=30)
    producer.close()

    consumer = KafkaConsumer(bootstrap_servers=stack.kafka_bootstrap, consumer_timeout_ms=10_000)
    partition = TopicPartition(stack.kafka_topic, metadata.partition)
    consumer.assign([partition])
    consumer.seek(partition, metadata.offset)
    record = next(iter(consumer))
    consumer.close()

    assert record.key == b"4242"
    assert Transaction.from_kafka_value(record.value) == sent


def test_the_products_producer_puts_each_customer_on_one_partition_as_the_java_client_would(
        stack: Settings) -> None:
    # The producer the product uses (confluent-kafka, streaming.sinks.KafkaSink), on a pinned day of the simulator;
    # the partition of each key must be the Java client's murmur2 choice (Spark and any JVM consumer agree on it)
    from kafka.partitioner.default import murmur2

    from streaming.simulator import Simulator, SimulatorConfig
    from streaming.sinks import KafkaSink

    frame = pd.concat(Simulator(SimulatorConfig(seed=20261206, customers=30, merchants=20))
                      .backfill(datetime(2026, 11, 1, tzinfo=UTC), 1))
    start = topic_ends(stack, stack.kafka_topic)
    sink = KafkaSink(stack)
    sink.write(frame)
    sink.close()  # flushed: every message is in the topic before the read takes its end offsets
    landed: dict[bytes, set[int]] = {}
    for record in read_topic(stack, stack.kafka_topic, start=start):
        landed.setdefault(record.key, set()).add(record.partition)

    keys = {str(c).encode() for c in frame["customer_id"]}
    assert set(landed) == keys and sum(map(len, landed.values())) == len(keys)
    assert {key: next(iter(p)) for key, p in landed.items()} == {
        key: (murmur2(key) & 0x7FFFFFFF) % len(start) for key in keys}


def test_topics_have_the_contracted_partitions_and_retention(stack: Settings) -> None:
    client = admin(stack)
    try:
        described = {t["name"]: t for t in client.describe_topics([stack.kafka_topic, stack.kafka_dlq_topic])}
        configs = client.describe_configs([ConfigResource(ConfigResourceType.TOPIC, stack.kafka_topic)])
    finally:
        client.close()
    assert len(described[stack.kafka_topic]["partitions"]) == 12
    assert stack.kafka_dlq_topic in described
    assert configs["topic"][stack.kafka_topic]["retention.ms"]["value"] == str(7 * 24 * 3600 * 1000)
