"""`riskray simulate` and `riskray stream start|status|stop` as an operator runs them, on the main topic."""

from __future__ import annotations

import os
import time
from pathlib import Path

import psutil
import pytest
from kafka import KafkaConsumer, TopicPartition

from app.config import Settings
from app.cpu_weight import BackgroundGroup
from streaming.simulate import run_live
from streaming.simulator import Simulator, SimulatorConfig
from streaming.sinks import KafkaSink
from streaming.status import query_status, raw_query_name
from tests.helpers import riskray

from .stream_harness import StreamHarness

pytestmark = pytest.mark.integration
SEED = 20261202


def _end_offsets(settings: Settings, topic: str) -> int:
    consumer = KafkaConsumer(bootstrap_servers=settings.kafka_bootstrap)
    partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)]
    total = sum(consumer.end_offsets(partitions).values())
    consumer.close()
    return total


def test_simulator_keeps_its_rate_and_every_event_reaches_kafka(stack: Settings, tmp_path: Path) -> None:
    topic = StreamHarness(stack, tmp_path).settings.kafka_topic  # a fresh 12-partition topic
    stats = run_live(Simulator(SimulatorConfig(seed=SEED, customers=2000, merchants=200)), KafkaSink(stack, topic),
                     rate=3000, duration_s=8)
    # the rate of the produce loop, which paces itself by the clock (the final flush is timed apart)
    assert stats.rate == pytest.approx(3000, rel=0.05), f"{stats.events} events in {stats.seconds:.2f} s"
    assert _end_offsets(stack, topic) == stats.events


def _assert_the_stream_and_its_writing_sessions_are_background_work(settings: Settings) -> None:
    """The job, its JVM and the database sessions that wrote its batches weigh as background CPU work
    (app/cpu_weight.py), where this machine lets a process create CPU groups."""
    if not os.access(settings.cpu_cgroup_root, os.W_OK):
        return  # the job runs at its priority only (logged); nothing to see here
    members = {p.info["name"] for p in psutil.process_iter(["name"]) if p.pid in BackgroundGroup(settings).members()}
    assert "java" in members and "postgres" in members, members  # the JVM, and a backend that wrote a batch
    assert any(name.startswith("python") for name in members), members  # the driver, where foreachBatch runs


def test_stream_start_status_stop(stack: Settings) -> None:
    before = query_status(stack, raw_query_name(stack)).totals.get("valid", 0)
    in_topic = _end_offsets(stack, stack.kafka_topic)
    started = riskray("stream", "start")
    assert started.returncode == 0, started.stderr
    try:
        simulated = riskray("simulate", "--rate", "200", "--duration", "3", "--seed", str(SEED))
        assert simulated.returncode == 0, simulated.stderr
        # what reached Kafka (the simulator keeps back a card-testing burst's rows whose time has not come yet)
        sent = _end_offsets(stack, stack.kafka_topic) - in_topic
        assert sent > 400, simulated.stdout
        deadline = time.monotonic() + 120
        while query_status(stack, raw_query_name(stack)).totals.get("valid", 0) < before + sent:
            assert time.monotonic() < deadline, riskray("stream", "status").stdout
            time.sleep(1)
        status = riskray("stream", "status")
        assert status.returncode == 0
        assert "RUNNING" in status.stdout and raw_query_name(stack) in status.stdout
        _assert_the_stream_and_its_writing_sessions_are_background_work(stack)
    finally:
        stopped = riskray("stream", "stop")
    assert stopped.returncode == 0
    assert riskray("stream", "status").returncode == 1
