"""Shared test configuration: every test runs in the scratch world of tests/scratch.env, and the stack-teardown
test runs after every other test."""

from __future__ import annotations

import pytest

from tests import scratch


def pytest_configure(config: pytest.Config) -> None:
    # Before any test module reads settings (get_settings is cached), and inherited by every subprocess the
    # tests start: the riskray CLI, Spark jobs, Serve replicas deployed from here.
    scratch.apply()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # Stable sort: every test marked stack_teardown moves to the end, order otherwise unchanged.
    items.sort(key=lambda item: item.get_closest_marker("stack_teardown") is not None)
