"""Code tests of the label maturity benchmark's pure helpers (benchmarks/label_maturity.py): first fraud reports,
the maturity curve and the known share."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pandas as pd
import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "label_maturity.py"


@pytest.fixture(scope="module")
def bench() -> ModuleType:  # loaded from its file: benchmarks/ is not a package
    spec = importlib.util.spec_from_file_location("label_maturity", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_first_fraud_report_days_takes_the_earliest_fraud_report(bench: ModuleType) -> None:
    t0 = pd.Timestamp("2026-01-05T00:00:00Z")
    transactions = pd.DataFrame({"transaction_id": ["a", "b", "c"], "timestamp": [t0, t0, t0]})
    events = pd.DataFrame({
        "transaction_id": ["a", "a", "b", "c"],
        "is_fraud": [1, 1, 0, 1],
        "reported_at": [t0 + pd.Timedelta(days=40), t0 + pd.Timedelta(hours=12), t0 + pd.Timedelta(days=2),
                        t0 + pd.Timedelta(days=7)],
    })
    days = bench.first_fraud_report_days(transactions, events)
    assert days[0] == pytest.approx(0.5)
    assert np.isnan(days[1])  # only a legitimate report: never reported as fraud
    assert days[2] == pytest.approx(7.0)


def test_maturity_curve_counts_among_reported_and_among_all(bench: ModuleType) -> None:
    of_reported, of_all = bench.maturity_curve(np.array([0.5, 3.0, 10.0, np.nan]), (1, 3, 30))
    np.testing.assert_allclose(of_reported, [1 / 3, 2 / 3, 1.0])
    np.testing.assert_allclose(of_all, [1 / 4, 2 / 4, 3 / 4])


def test_known_fraud_share_counts_only_true_frauds_known_as_fraud(bench: ModuleType) -> None:
    known = np.array([1.0, np.nan, 0.0, 1.0])
    truth = np.array([1, 1, 1, 0])
    assert bench.known_fraud_share(known, truth) == pytest.approx(1 / 3)
