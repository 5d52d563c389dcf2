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
    fixtures = getattr(item, "fixturenames", ())
    if item.get_closest_marker("after_stack_down"):
        return 5  # starts its own stack from nothing
    if item.get_closest_marker("stack_teardown"):
        return 4
    if "airflow_stack" in fixtures:
        return 2  # Airflow runs only while the tests that need it run
    if "served_world" in fixtures:
        # The served world's Serve replicas stay deployed from its first user to the session's end and take
        # Ray CPUs that the training tests' two workers need: its users run after every other test.
        return 1
    return 0


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # Stable sort by stage: collection order otherwise unchanged.
    items.sort(key=_stage)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    from tests.integration import faults

    if faults.RECORDED:
        terminalreporter.section("faults injected (measured)")
        for line in faults.table():
            terminalreporter.write_line(line)
