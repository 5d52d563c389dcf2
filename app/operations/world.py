"""A world: the names one line of work keeps its data under (database, topics, stream queries, MLflow experiment
and registered model, work folders: all RISKRAY_* settings), made fresh or removed on the running stack.

The tests' scratch world (tests/scratch.py) and the demo's world (app/cli/demo) are made with these; the real
store is never reset by them (their callers guard the names).
"""

from __future__ import annotations

import contextlib
import shutil
import time

import httpx

from app.config import Settings


def empty_tables(settings: Settings, *tables: str) -> None:
    from psycopg2 import sql

    from app import db

    with db.connection(settings) as conn, conn.cursor() as cur:
        cur.execute(sql.SQL("TRUNCATE {}").format(sql.SQL(", ").join(map(sql.Identifier, tables))))


def delete_topics(settings: Settings, prefix: str | None = None) -> None:
    """The world's topics (and, with ``prefix``, every topic named so) deleted; returns once Kafka has."""
    from kafka.errors import UnknownTopicOrPartitionError

    from app.operations.kafka import admin

    client = admin(settings)
    try:
        mine = [t for t in client.list_topics()
                if t in settings.kafka_topics or (prefix and t.startswith(prefix))]
        if mine:
            with contextlib.suppress(UnknownTopicOrPartitionError):
                client.delete_topics(mine, timeout_ms=30_000)
        deadline = time.monotonic() + 60
        while set(mine) & set(client.list_topics()):  # deletion is asynchronous; creation must wait for it
            if time.monotonic() > deadline:
                raise RuntimeError(f"Kafka did not delete the topics {mine}")
            time.sleep(0.5)
    finally:
        client.close()


def fresh_topics(settings: Settings, prefix: str | None = None) -> None:
    from app.operations import kafka

    delete_topics(settings, prefix)
    kafka.provision(settings)


def delete_registered_model(settings: Settings) -> None:
    response = httpx.request("DELETE", f"{settings.mlflow_tracking_uri}/api/2.0/mlflow/registered-models/delete",
                             json={"name": settings.registered_model_name}, timeout=30)
    if response.status_code not in (200, 404) and "RESOURCE_DOES_NOT_EXIST" not in response.text:
        response.raise_for_status()


def remove_stream_state(settings: Settings) -> None:
    from streaming.status import checkpoint_dir, progress_log

    shutil.rmtree(checkpoint_dir(settings), ignore_errors=True)
    progress_log(settings).unlink(missing_ok=True)


def remove_local_state(settings: Settings, airflow_home: bool = True) -> None:
    remove_stream_state(settings)
    shutil.rmtree(settings.training_dir, ignore_errors=True)
    # prediction rows a killed replica left for its world's database: a fresh world has none to write
    shutil.rmtree(settings.serve_spool_dir, ignore_errors=True)
    if airflow_home:
        shutil.rmtree(settings.airflow_home, ignore_errors=True)  # task logs and generated secrets of earlier runs
    # alerts received earlier (Prometheus' own data stays: the running server holds it)
    (settings.monitoring_dir / "alerts.jsonl").unlink(missing_ok=True)


def reset(settings: Settings, topic_prefix: str | None = None, airflow: bool = True) -> None:
    """A fresh world on the running stack: empty migrated database, empty topics, no stream state, no registered
    model, no training files; with ``airflow``, no Airflow metadata either (Airflow must not be running: it
    migrates a fresh database when it starts)."""
    from app import migrate
    from app.operations import postgres

    postgres.create_database(settings, settings.postgres_db, fresh=True)
    if airflow:
        postgres.drop_database(settings, settings.airflow_db)
    migrate.upgrade(settings)
    fresh_topics(settings, topic_prefix)
    delete_registered_model(settings)
    remove_local_state(settings, airflow_home=airflow)


def remove(settings: Settings, topic_prefix: str | None = None) -> None:
    """Everything :func:`reset` made, gone (before the stack stops). Airflow stops first: a scheduler whose database
    vanishes under it crashes and then waits for its tasks until supervisord kills it (30 s)."""
    from app.operations import airflow, manager, postgres

    manager.stop_group(settings, airflow.GROUP, echo=lambda line: None)
    postgres.drop_database(settings, settings.postgres_db)
    postgres.drop_database(settings, settings.airflow_db)
    delete_topics(settings, topic_prefix)
    delete_registered_model(settings)
    remove_local_state(settings)
