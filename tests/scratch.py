"""The tests' scratch world (tests/scratch.env): made fresh when a session starts, removed when it ends.

Nothing here touches the store, topics, registered model or training folder of the real work: every name comes
from scratch.env, and :func:`guard` refuses to run against the real names.
"""

from __future__ import annotations

import os
from pathlib import Path

from app.config import Settings
from app.operations import world

ENV_FILE = Path(__file__).with_name("scratch.env")
HARNESS_TOPICS = "test-"  # the stream harness's own topics (tests/integration/stream_harness.py)


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
    guard(settings)
    world.fresh_topics(settings)
    world.remove_stream_state(settings)


def empty_tables(settings: Settings, *tables: str) -> None:
    """Scratch tables emptied, for a test whose assertions cover every row (the drift job reads the whole
    prediction log of a window, whichever test wrote it)."""
    guard(settings)
    world.empty_tables(settings, *tables)


def reset(settings: Settings) -> None:
    """A fresh scratch world on the running stack: empty migrated database, empty topics (the harness's own
    ``test-`` topics too), no stream state, no registered model, no training files."""
    guard(settings)
    world.reset(settings, topic_prefix=HARNESS_TOPICS)


def remove(settings: Settings) -> None:
    """Everything :func:`reset` made, gone (called before the stack stops)."""
    guard(settings)
    world.remove(settings, topic_prefix=HARNESS_TOPICS)
