"""Shared test configuration: every test runs in the scratch world of tests/scratch.env, in an order that keeps
the expensive parts together (see ``pytest_collection_modifyitems``)."""

from __future__ import annotations

import pytest

from tests import scratch


def pytest_configure(config: pytest.Config) -> None:
    # Before any test module reads settings (get_settings is cached), and inherited by every subprocess the
    # tests start: the riskray CLI, Spark jobs, Serve replicas deployed from here.
    scratch.apply()


def _stage(item: pytest.Item) -> int:
    if item.get_closest_marker("stack_teardown"):
        return 2
    if "served_world" in getattr(item, "fixturenames", ()):
        # The served world's Serve replicas stay deployed from its first user to the session's end and take
        # Ray CPUs that the training tests' two workers need: its users run after every other test.
        return 1
    return 0


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # Stable sort by stage: collection order otherwise unchanged.
    items.sort(key=_stage)
