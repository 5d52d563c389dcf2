"""Integration tests run against the real local stack (PostgreSQL, Kafka, Ray, MLflow on loopback).

The session fixture brings the stack up if it is not up already (``make test`` has usually done it), so
``pytest tests/integration`` also works on its own, then makes the tests' scratch world fresh (tests/scratch.py):
an empty migrated database, empty topics, no registered model. It is removed again when the session ends, or by
the stack-teardown test just before it stops the stack.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from app.config import Settings, get_settings
from tests import scratch

from .served_world import World, served
from .trained_model import Trained, train


@pytest.fixture(scope="session")
def settings() -> Settings:
    return get_settings()


@pytest.fixture(scope="session")
def stack(settings: Settings) -> Iterator[Settings]:
    from app.operations import manager, supervisor

    scratch.guard(settings)
    manager.up(settings, echo=lambda line: None)
    scratch.reset(settings)
    yield settings
    if supervisor.is_running(settings):  # the teardown test may have stopped it, after removing the world
        scratch.remove(settings)


@pytest.fixture(scope="session")
def airflow_stack(stack: Settings) -> Iterator[Settings]:
    """Airflow started as an operator starts it (`stack up --with airflow`), once: the tests that use it run
    together near the end (tests/conftest.py orders them), and it stops with them."""
    from app.operations import airflow, manager, supervisor

    manager.up(stack, echo=lambda line: None, groups=(airflow.GROUP,))
    yield stack
    if supervisor.is_running(stack):
        manager.stop_group(stack, airflow.GROUP, echo=lambda line: None)


@pytest.fixture(scope="session")
def trained(stack: Settings) -> Trained:
    """A version trained from the store (tests/integration/trained_model.py): the training tests' subject, the
    serving tests' model."""
    return train(stack)


@pytest.fixture(scope="session")
def served_world(stack: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """The pinned served world of the monitoring and retraining tests, built once (the suite's slowest setup)."""
    with served(stack, tmp_path_factory.mktemp("served-world")) as world:
        yield world
