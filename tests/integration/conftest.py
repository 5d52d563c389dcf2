"""Integration tests run against the real local stack (PostgreSQL, Kafka, Ray, MLflow on loopback).

The session fixture brings the stack up if it is not up already (``make test`` has usually done it), so
``pytest tests/integration`` also works on its own.
"""

from __future__ import annotations

import pytest

from app.config import Settings, get_settings


@pytest.fixture(scope="session")
def settings() -> Settings:
    return get_settings()


@pytest.fixture(scope="session")
def stack(settings: Settings) -> Settings:
    from app.stack import manager

    manager.up(settings, echo=lambda line: None)
    return settings
