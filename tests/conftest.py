"""Shared test configuration: the stack-teardown test runs after every other test."""

from __future__ import annotations

import pytest


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # Stable sort: every test marked stack_teardown moves to the end, order otherwise unchanged.
    items.sort(key=lambda item: item.get_closest_marker("stack_teardown") is not None)
