"""The tests' scratch world (tests/scratch.env): made fresh when a session starts, removed when it ends.

Nothing here touches the store, topics, registered model or training folder of the real work: every name comes
from scratch.env, and :func:`guard` refuses to run against the real names.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from pathlib import Path

import httpx

from app.config import Settings

ENV_FILE = Path(__file__).with_name("scratch.env")


def environment() -> dict[str, str]:
    """The variables of scratch.env (the Makefile sources the same file)."""
    pairs = {}
    for line in ENV_FILE.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            pairs[key] = value
    return pairs


def apply() -> None:
    """Point this process (and every subprocess it starts) at the scratch world."""
    os.environ.update(environment())


def guard(settings: Settings) -> None:
    """Stop before a test could write into the real store or registry."""
    for name in ("postgres_db", "registered_model_name", "kafka_topic", "mlflow_experiment", "airflow_db"):
        value = Settings.model_fields[name].default
        if getattr(settings, name) == value:
            raise RuntimeError(f"tests would use the real {name} {value!r}: run them through `make test` "
                               f"(or with {ENV_FILE} in the environment)")


def fresh_stream(settings: Settings) -> None:
    """The stack's (scratch) topics empty and its streaming job without state, for a test that runs the job
    under the stack's own names: whatever earlier tests sent to the topic stays out of its first batch."""
    from app.stack import kafka

    guard(settings)
    _delete_topics(settings, harness_topics=False)
    kafka.provision(settings)
    _remove_stream_state(settings)


def empty_tables(settings: Settings, *tables: str) -> None:
    """Scratch tables emptied, for a test whose assertions cover every row (the drift job reads the whole
    prediction log of a window, whichever test wrote it)."""
    from psycopg2 import sql

    from app import db

    guard(settings)
    with db.connection(settings) as conn, conn.cursor() as cur:
        cur.execute(sql.SQL("TRUNCATE {}").format(sql.SQL(", ").join(map(sql.Identifier, tables))))


def _delete_topics(settings: Settings, harness_topics: bool = True) -> None:
    from kafka.errors import UnknownTopicOrPartitionError

    from app.stack.kafka import admin

    client = admin(settings)
    try:
        mine = [t for t in client.list_topics()
                if t in (settings.kafka_topic, settings.kafka_dlq_topic) or (harness_topics and t.startswith("test-"))]
        if mine:
            with contextlib.suppress(UnknownTopicOrPartitionError):
                client.delete_topics(mine, timeout_ms=30_000)
        deadline = time.monotonic() + 60
        while set(mine) & set(client.list_topics()):  # deletion is asynchronous; creation must wait for it
            if time.monotonic() > deadline:
                raise RuntimeError(f"Kafka did not delete the scratch topics {mine}")
            time.sleep(0.5)
    finally:
        client.close()


def _delete_registered_model(settings: Settings) -> None:
    response = httpx.request("DELETE", f"{settings.mlflow_tracking_uri}/api/2.0/mlflow/registered-models/delete",
                             json={"name": settings.registered_model_name}, timeout=30)
    if response.status_code not in (200, 404) and "RESOURCE_DOES_NOT_EXIST" not in response.text:
        response.raise_for_status()


def _remove_stream_state(settings: Settings) -> None:
    from streaming.status import checkpoint_dir, progress_log

    shutil.rmtree(checkpoint_dir(settings), ignore_errors=True)
    progress_log(settings).unlink(missing_ok=True)


def _remove_local_state(settings: Settings) -> None:
    _remove_stream_state(settings)
    shutil.rmtree(settings.training_dir, ignore_errors=True)
    shutil.rmtree(settings.airflow_home, ignore_errors=True)  # task logs and generated secrets of earlier sessions
    # alerts received in an earlier session (Prometheus' own data stays: the running server holds it)
    (settings.monitoring_dir / "alerts.jsonl").unlink(missing_ok=True)


def reset(settings: Settings) -> None:
    """A fresh scratch world on the running stack: empty migrated database, empty topics, no stream state,
    no registered model, no training files."""
    from app import migrate
    from app.stack import kafka, postgres

    guard(settings)
    postgres.create_database(settings, settings.postgres_db, fresh=True)
    postgres.drop_database(settings, settings.airflow_db)  # Airflow migrates a fresh one when it starts
    migrate.upgrade(settings)
    _delete_topics(settings)
    kafka.provision(settings)
    _delete_registered_model(settings)
    _remove_local_state(settings)


def remove(settings: Settings) -> None:
    """Everything :func:`reset` made, gone (called before the stack stops)."""
    from app.stack import postgres

    guard(settings)
    postgres.drop_database(settings, settings.postgres_db)
    postgres.drop_database(settings, settings.airflow_db)
    _delete_topics(settings)
    _delete_registered_model(settings)
    _remove_local_state(settings)
