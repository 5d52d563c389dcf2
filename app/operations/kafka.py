"""The single-node KRaft Kafka broker of the local stack, run from the jars the bootstrap fetched."""

from __future__ import annotations

import base64
import contextlib
import subprocess
import uuid
from pathlib import Path

from kafka import KafkaAdminClient
from kafka.admin import NewTopic
from kafka.errors import TopicAlreadyExistsError

from app.config import PROJECT_ROOT, Settings
from app.operations.errors import StackError
from app.operations.supervisor import Program

LOG4J_CONFIG = PROJECT_ROOT / "cluster" / "local" / "kafka" / "log4j2.properties"
MS_PER_DAY = 24 * 3600 * 1000


def jars_dir(settings: Settings) -> Path:
    return settings.jars_dir / "kafka-broker"


def data_dir(settings: Settings) -> Path:
    return settings.state_dir / "kafka" / "data"


def config_file(settings: Settings) -> Path:
    return settings.state_dir / "kafka" / "server.properties"


def server_properties(settings: Settings) -> dict[str, str]:
    broker = f"PLAINTEXT://{settings.kafka_host}:{settings.kafka_port}"
    controller = f"{settings.kafka_host}:{settings.kafka_controller_port}"
    return {
        "process.roles": "broker,controller",
        "node.id": "1",
        "controller.quorum.voters": f"1@{controller}",
        "listeners": f"{broker},CONTROLLER://{controller}",
        "advertised.listeners": broker,
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "log.dirs": str(data_dir(settings)),
        "num.partitions": "1",
        "auto.create.topics.enable": "false",
        "offsets.topic.replication.factor": "1",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "share.coordinator.state.topic.replication.factor": "1",
        "share.coordinator.state.topic.min.isr": "1",
        "group.initial.rebalance.delay.ms": "0",
    }


def _java(settings: Settings, main: str, *args: str, heap_mb: int) -> list[str]:
    classpath = str(jars_dir(settings) / "*")
    return [
        settings.java_bin, f"-Xms{min(heap_mb, 256)}m", f"-Xmx{heap_mb}m", "-XX:+UseG1GC",
        f"-Dlog4j2.configurationFile={LOG4J_CONFIG}", "-cp", classpath, main, *args,
    ]


def new_cluster_id() -> str:
    """A random cluster id as Kafka's own `Uuid.randomUuid` makes it.

    Its URL-safe base64 form must not start with '-': the storage tool's argument parser would read it as an
    option (`--cluster-id: expected one argument`), which failed one start in 64.
    """
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


def prepare(settings: Settings) -> None:
    """Write server.properties; format the storage directory on first start."""
    if not any(jars_dir(settings).glob("kafka_2.13-*.jar")):
        raise StackError(f"Kafka broker jars missing in {jars_dir(settings)} (run `make bootstrap`)")
    path = config_file(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{key}={value}\n" for key, value in server_properties(settings).items()))
    if (data_dir(settings) / "meta.properties").exists():
        return
    command = _java(settings, "kafka.tools.StorageTool", "format", "-t", new_cluster_id(), "-c", str(path), heap_mb=256)
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise StackError(f"formatting Kafka storage failed: {(result.stderr or result.stdout).strip()[-300:]}")


def program(settings: Settings) -> Program:
    return Program(
        name="kafka",
        command=_java(settings, "kafka.Kafka", str(config_file(settings)), heap_mb=settings.kafka_heap_mb),
        stopwaitsecs=60,  # a controlled shutdown flushes logs and moves leadership
    )


def admin(settings: Settings) -> KafkaAdminClient:
    return KafkaAdminClient(
        bootstrap_servers=settings.kafka_bootstrap,
        client_id="riskray-stack",
        request_timeout_ms=5000,
    )


def check(settings: Settings) -> None:
    client = admin(settings)
    try:
        client.list_topics()
    finally:
        client.close()


def topics(settings: Settings) -> list[NewTopic]:
    retention = str(settings.kafka_retention_days * MS_PER_DAY)
    return [
        NewTopic(settings.kafka_topic, settings.kafka_partitions, 1, topic_configs={"retention.ms": retention}),
        NewTopic(settings.kafka_dlq_topic, 1, 1, topic_configs={"retention.ms": retention}),
        NewTopic(settings.kafka_labels_topic, settings.kafka_labels_partitions, 1,
                 topic_configs={"retention.ms": retention}),
        NewTopic(settings.kafka_labels_dlq_topic, 1, 1, topic_configs={"retention.ms": retention}),
    ]


def provision(settings: Settings) -> None:
    """Create the transactions and labels topics and their dead-letter topics. Idempotent."""
    client = admin(settings)
    try:
        existing = set(client.list_topics())
        for topic in topics(settings):
            if topic.name in existing:
                continue
            with contextlib.suppress(TopicAlreadyExistsError):  # created meanwhile by someone else
                client.create_topics([topic])
    finally:
        client.close()


def missing_topics(settings: Settings) -> list[str]:
    client = admin(settings)
    try:
        existing = set(client.list_topics())
    finally:
        client.close()
    return [t.name for t in topics(settings) if t.name not in existing]
