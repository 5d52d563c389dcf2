"""The vectorised point-in-time history equals a row-by-row reading of its definition."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from app.features import HISTORY, LONG_WINDOWS_DAYS, history_span
from app.labels import row_fraud_reports
from app.model_inputs import FEATURES, HISTORY_COLUMNS, model_inputs
from app.point_in_time import history_frame, with_counts_before

DELAY_DAYS = 2


def _transactions(n: int = 1_500, seed: int = 3) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    start = datetime(2026, 11, 1, tzinfo=UTC)
    # clustered times so several rows share a customer-minute, some share an instant
    seconds = np.sort(rng.integers(0, 12 * 86_400, size=n)).astype(np.float64)
    seconds[rng.random(n) < 0.3] //= 60
    seconds[10] = seconds[11]
    frame = pd.DataFrame({
        "customer_id": rng.integers(1, 25, size=n),
        "merchant_id": rng.integers(1, 10, size=n),
        "amount": np.round(rng.lognormal(3.5, 0.8, size=n), 2),
        "timestamp": pd.to_datetime(start) + pd.to_timedelta(np.round(seconds, 3), unit="s"),
        "is_fraud": (rng.random(n) < 0.1).astype(int),
        "country": rng.choice(["DE", "FR", "US"], size=n, p=[0.7, 0.2, 0.1]),
    })
    frame.loc[11, "customer_id"] = frame.loc[10, "customer_id"]
    return frame.sample(frac=1.0, random_state=1).reset_index(drop=True)  # history must not need sorted input


def _naive(frame: pd.DataFrame, i: int) -> dict[str, float]:
    row = frame.loc[i]
    t = row["timestamp"]
    floor = t.floor("min")
    cust = frame[frame["customer_id"] == row["customer_id"]]
    merch = frame[frame["merchant_id"] == row["merchant_id"]]
    earlier = cust[cust["timestamp"] < t]
    minute = earlier[earlier["timestamp"] >= floor]["amount"]
    out = {
        "minute_count": len(minute), "minute_sum": minute.sum(),
        "minute_max": minute.max() if len(minute) else np.nan,
        "minute_std": minute.std(ddof=1) if len(minute) > 1 else 0.0,
    }
    for d in LONG_WINDOWS_DAYS:
        window = earlier[earlier["timestamp"] >= floor - timedelta(days=d)]
        out[f"cust_count_{d}d"] = len(window)
        out[f"cust_amount_sum_{d}d"] = window["amount"].sum()
        m = merch[(merch["timestamp"] < t) & (merch["timestamp"] >= floor - timedelta(days=d))]
        out[f"merchant_count_{d}d"] = len(m)
        # the merchant's frauds reported (the label delay after each) in [floor - d days, floor)
        reported = merch.loc[merch["is_fraud"] == 1, "timestamp"] + timedelta(days=DELAY_DAYS)
        out[f"merchant_fraud_reports_{d}d"] = int(((reported >= floor - timedelta(days=d)) & (reported < floor)).sum())
    countries = earlier["country"].value_counts()
    out["cust_country_count"] = countries.get(row["country"], 0)
    out["cust_top_country_count"] = countries.max() if len(countries) else 0
    out["cust_total_count"] = len(earlier)
    return out


def test_history_matches_the_definition_row_by_row() -> None:
    frame = _transactions()
    history = history_frame(frame, label_delay_days=DELAY_DAYS)
    assert list(history.columns) == list(HISTORY_COLUMNS)
    for i in range(0, len(frame), 7):
        expected = _naive(frame, i)
        for name, value in expected.items():
            assert history.loc[i, name] == pytest.approx(value, rel=1e-9, abs=1e-6, nan_ok=True), (i, name)


def test_history_never_uses_the_transactions_own_label() -> None:
    frame = _transactions()
    flipped = frame.assign(is_fraud=1 - frame["is_fraud"])
    # flipping every label within the delay of the last day changes nothing for rows of that day
    recent = frame["timestamp"] >= frame["timestamp"].max() - timedelta(days=DELAY_DAYS - 1)
    frame_mixed = frame.assign(is_fraud=np.where(recent, flipped["is_fraud"], frame["is_fraud"]))
    a = history_frame(frame, DELAY_DAYS)[recent]
    b = history_frame(frame_mixed, DELAY_DAYS)[recent]
    pd.testing.assert_frame_equal(a, b)


def test_model_inputs_cover_every_feature_and_let_request_values_win() -> None:
    frame = _transactions(200)
    frame["device_type"] = "web"
    frame["currency"] = "EUR"
    history = history_frame(frame, DELAY_DAYS)
    raw = {c: frame[c].to_numpy() for c in ("amount", "country", "device_type", "currency")}
    raw["timestamp"] = frame["timestamp"].to_numpy(dtype="datetime64[us]")
    inputs = model_inputs(raw, {c: history[c].to_numpy() for c in history.columns})
    assert set(inputs) == set(FEATURES)
    assert all(len(v) == len(frame) for v in inputs.values())
    supplied = np.full(len(frame), np.nan)
    supplied[0] = 9
    overridden = model_inputs(raw, {c: history[c].to_numpy() for c in history.columns},
                              overrides={"transaction_count": supplied})
    assert overridden["transaction_count"][0] == 9
    np.testing.assert_array_equal(overridden["transaction_count"][1:], inputs["transaction_count"][1:])


LIFETIME = [w.name for w in HISTORY if w.span == "lifetime"]


def _long_history(days: int = 45) -> pd.DataFrame:
    rng = np.random.default_rng(5)
    n = 3_000
    seconds = np.sort(rng.integers(0, days * 86_400, size=n))
    return pd.DataFrame({
        "customer_id": rng.integers(1, 30, size=n), "merchant_id": rng.integers(1, 8, size=n),
        "amount": np.round(rng.lognormal(3.5, 0.8, size=n), 2),
        "timestamp": pd.to_datetime(datetime(2026, 10, 1, tzinfo=UTC)) + pd.to_timedelta(seconds, unit="s"),
        "is_fraud": (rng.random(n) < 0.1).astype(int),
        "country": rng.choice(["DE", "FR", "US"], size=n, p=[0.6, 0.3, 0.1]),
    })


def test_a_snapshot_reaching_back_history_span_days_gives_every_day_window_in_full() -> None:
    frame = _long_history()
    since = frame["timestamp"].max() - timedelta(days=3)
    snapshot = frame[frame["timestamp"] >= since - timedelta(days=history_span())]
    labelled = snapshot["timestamp"] >= since
    windows = [name for name in HISTORY_COLUMNS if name not in LIFETIME]
    # fraud reports are read by their report time, whatever their transaction's age (the store's, for training)
    reports = row_fraud_reports(frame, DELAY_DAYS)
    pd.testing.assert_frame_equal(history_frame(snapshot, DELAY_DAYS, reports)[labelled][windows],
                                  history_frame(frame, DELAY_DAYS).loc[snapshot.index[labelled], windows])


def test_lifetime_counts_of_a_snapshot_with_its_counts_from_before_equal_a_history_read_from_the_start() -> None:
    frame = _long_history()
    first = frame["timestamp"].min() + timedelta(days=20)
    before, snapshot = frame[frame["timestamp"] < first], frame[frame["timestamp"] >= first]
    counts = before.groupby(["customer_id", "country"]).size().rename("transaction_count").reset_index()
    full = history_frame(frame, DELAY_DAYS).loc[snapshot.index, LIFETIME]
    pd.testing.assert_frame_equal(history_frame(with_counts_before(snapshot, counts), DELAY_DAYS)[LIFETIME], full)
    # what training counted before: only the snapshot, as if every customer had started with it
    assert (history_frame(snapshot, DELAY_DAYS)[LIFETIME] != full).any().all()


def test_top_country_counts_every_earlier_transaction_at_one_instant() -> None:
    at = pd.Timestamp("2026-11-01T00:00:00Z")
    frame = pd.DataFrame({"customer_id": 1, "merchant_id": [1, 2, 3, 4], "amount": 5.0, "is_fraud": 0,
                          "timestamp": [at, at, at + timedelta(hours=1), at + timedelta(hours=2)],
                          "country": ["DE", "DE", "FR", "FR"]})
    history = history_frame(frame, DELAY_DAYS)
    assert history["cust_top_country_count"].tolist() == [0, 0, 2, 2]
    assert history["cust_country_count"].tolist() == [0, 0, 0, 1]
