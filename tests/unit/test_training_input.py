"""Bad training or scoring input stops with one line naming the problem, before any Ray or MLflow work."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from tests.helpers import riskray as run


def _good(n: int = 40) -> pd.DataFrame:
    return pd.DataFrame({
        "transaction_id": [f"00000000-0000-4000-8000-{i:012d}" for i in range(n)],
        "customer_id": [1 + i % 5 for i in range(n)], "merchant_id": [1 + i % 3 for i in range(n)],
        "amount": [10.0 + i for i in range(n)], "currency": "EUR",
        "timestamp": pd.date_range("2026-01-01", periods=n, freq="min", tz="UTC").strftime("%Y-%m-%dT%H:%M:%SZ"),
        "card_last_4": "4242", "is_fraud": [int(i % 10 == 0) for i in range(n)], "country": "DE",
        "device_type": "web",
    })


@pytest.mark.parametrize(("change", "message"), [
    (lambda f: f.drop(columns=["amount", "country"]), "missing column(s) amount, country"),
    (lambda f: f.assign(amount=["abc"] + [1.0] * (len(f) - 1)), "column 'amount' must be a number; row 0 has 'abc'"),
    (lambda f: f.assign(customer_id=[1.5] + [1] * (len(f) - 1)), "column 'customer_id' must be an integer; row 0"),
    (lambda f: f.assign(timestamp="yesterday"), "column 'timestamp' must be ISO 8601 times; row 0 has 'yesterday'"),
    (lambda f: f.assign(is_fraud=2), "column 'is_fraud' must be 0 or 1; row 0 has 2"),
    # the message model's bounds, the cap included: a file holds what the stream would have accepted
    (lambda f: f.assign(merchant_id=[0] + [1] * (len(f) - 1)), "column 'merchant_id' must be > 0 and <= "),
    (lambda f: f.assign(amount=[1.0] * (len(f) - 1) + [2e6]),
     "column 'amount' must be > 0 and <= 1000000; row 39 has 2000000.0"),
])
def test_bad_training_file_is_an_error_naming_the_file_and_what_is_wrong(tmp_path: Path, change, message: str) -> None:
    from training.data import TrainingDataError, read_file

    path = tmp_path / "transactions.csv"
    change(_good()).to_csv(path, index=False)
    with pytest.raises(TrainingDataError) as error:
        read_file(path)
    assert str(error.value).startswith(f"{path}: ") and message in str(error.value)


@pytest.mark.parametrize(("change", "message"), [
    (lambda f: f.drop(columns=["amount", "country"]), "missing column(s) amount, country"),
    (lambda f: f.assign(is_fraud=0), "no positive labels (is_fraud = 1)"),
])
def test_bad_training_file_is_one_line_from_the_cli_before_anything_starts(tmp_path: Path, change,
                                                                           message: str) -> None:
    path = tmp_path / "transactions.csv"
    change(_good()).to_csv(path, index=False)
    # an unreachable MLflow and Ray prove nothing was started before the check
    result = run("train", "--from-file", str(path), timeout=120, RISKRAY_MLFLOW_PORT="1", RISKRAY_RAY_GCS_PORT="1")
    assert result.returncode == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert message in lines[0]
    assert lines[0].startswith(f"riskray: {path}")


def test_missing_scoring_file_is_one_line(tmp_path: Path) -> None:
    result = run("score", "--from-file", str(tmp_path / "nope.parquet"), "--out", str(tmp_path / "s.parquet"))
    assert result.returncode == 1
    assert result.stderr.strip() == f"riskray: {tmp_path / 'nope.parquet'}: no such file"
