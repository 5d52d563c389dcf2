from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import ConfigResource, ConfigResourceType

from app.config import Settings
from app.operations.kafka import admin
from app.schemas import Transaction

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


def test_same_customer_always_lands_on_the_same_partition(stack: Settings) -> None:
    producer = KafkaProducer(bootstrap_servers=stack.kafka_bootstrap)
    partitions = {producer.send(stack.kafka_topic, key=b"99", value=b"{}").get(timeout=30).partition
                  for _ in range(5)}
    producer.close()
    assert len(partitions) == 1


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
