"""Data expectations on the simulator: valid messages, determinism, and each fraud scenario doing what it says."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from app.schemas import Transaction
from streaming.simulate import RunStats, live_tick_s, run_live
from streaming.simulator import SCENARIOS, DriftConfig, ScenarioShares, Simulator, SimulatorConfig, message_values

START = datetime(2026, 10, 1, tzinfo=UTC)


MONTH = SimulatorConfig(seed=7, customers=10_000, merchants=1_000)


@pytest.fixture(scope="module")
def month() -> pd.DataFrame:
    """~1M transactions (~6,300 fraud): each scenario's share measured within a few per cent (measured: within 7 %)."""
    simulator = Simulator(MONTH)
    return pd.concat(simulator.backfill(START, 30), ignore_index=True)


def test_every_generated_message_satisfies_the_contract() -> None:
    frame = next(Simulator(SimulatorConfig(customers=300, merchants=50)).backfill(START, 1))
    for value in message_values(frame):
        Transaction.from_kafka_value(value)


def test_same_seed_gives_the_same_transactions() -> None:
    first = next(Simulator(SimulatorConfig(seed=3, customers=200, merchants=40)).backfill(START, 1))
    second = next(Simulator(SimulatorConfig(seed=3, customers=200, merchants=40)).backfill(START, 1))
    pd.testing.assert_frame_equal(first, second)


def test_fraud_share_per_scenario_matches_its_configuration(month: pd.DataFrame) -> None:
    shares = ScenarioShares()
    measured = month["scenario"].value_counts(normalize=True)
    assert len(month) > 900_000
    for name in SCENARIOS:
        expected = getattr(shares, name)
        tolerance = 0.25 if name == "card_testing" else 0.12  # bursts of ~10 rows make card testing lumpier
        assert measured[name] == pytest.approx(expected, rel=tolerance), name
    assert 0.005 <= month["is_fraud"].mean() <= 0.01


def test_a_switched_off_scenario_produces_nothing() -> None:
    simulator = Simulator(SimulatorConfig(customers=2000, merchants=200, shares=ScenarioShares(card_testing=0)))
    frame = pd.concat(simulator.backfill(START, 3))
    assert "card_testing" not in set(frame["scenario"])


def test_every_transaction_at_a_compromised_merchant_is_fraud(month: pd.DataFrame) -> None:
    simulator = Simulator(MONTH)
    day = month[month["timestamp"].dt.date == (START + timedelta(days=10)).date()]
    day_number = int((START + timedelta(days=10)).timestamp() // 86400)
    compromised_ids = simulator.world.merchant_ids[simulator.compromised_merchants(day_number)]
    at_compromised = day[day["merchant_id"].isin(compromised_ids)]
    assert len(at_compromised) > 0
    assert (at_compromised["is_fraud"] == 1).all()


def test_card_testing_comes_in_bursts_of_small_amounts_within_a_minute(month: pd.DataFrame) -> None:
    bursts = month[month["scenario"] == "card_testing"]
    assert bursts["amount"].max() <= 5.0
    per_customer_minute = bursts.groupby("customer_id")["timestamp"].agg(lambda t: (t.max() - t.min()).total_seconds())
    assert (bursts.groupby("customer_id").size() >= 5).all()
    assert per_customer_minute.median() <= 60


def test_account_takeover_uses_a_new_device_from_a_foreign_country(month: pd.DataFrame) -> None:
    simulator = Simulator(MONTH)
    takeovers = month[month["scenario"] == "account_takeover"]
    index = takeovers["customer_id"].to_numpy() - 1
    assert (takeovers["country"].to_numpy() != simulator.world.customer_country[index]).all()
    usual = simulator.world.customer_devices[index]
    assert ((takeovers["device_type"].to_numpy()[:, None] != usual).all(axis=1)).all()


def test_large_amounts_are_far_above_the_legitimate_level(month: pd.DataFrame) -> None:
    legit = month[month["is_fraud"] == 0]["amount"].median()
    assert month[month["scenario"] == "large_amount"]["amount"].median() > 5 * legit


def test_drift_switch_changes_the_fraud_mix_and_amounts_from_its_time() -> None:
    drift_at = START + timedelta(days=10)
    simulator = Simulator(SimulatorConfig(seed=11, customers=5_000, merchants=500, drift=DriftConfig(at=drift_at)))
    frame = pd.concat(simulator.backfill(START, 20), ignore_index=True)
    before, after = frame[frame["timestamp"] < drift_at], frame[frame["timestamp"] >= drift_at]
    share = lambda part, name: (part["scenario"] == name).mean()  # noqa: E731
    assert share(after, "account_takeover") > 2 * share(before, "account_takeover")
    legit_median = lambda part: part[part["is_fraud"] == 0]["amount"].median()  # noqa: E731
    assert legit_median(after) > 1.25 * legit_median(before)


class _ListSink:
    def __init__(self) -> None:
        self.frames: list[pd.DataFrame] = []

    def write(self, frame: pd.DataFrame) -> None:
        self.frames.append(frame)

    def close(self) -> None:
        pass


def test_live_mode_never_emits_an_event_time_ahead_of_the_clock() -> None:
    sink = _ListSink()
    stats: RunStats = run_live(Simulator(SimulatorConfig(customers=500, merchants=50,
                                                         shares=ScenarioShares(card_testing=0.05))),
                               sink, rate=2000, duration_s=2.0)
    assert stats.events > 3000
    for frame in sink.frames:
        assert frame["timestamp"].max() <= pd.Timestamp.now(tz=UTC)
    times = pd.concat(sink.frames)["timestamp"]
    assert np.all(np.diff(times.to_numpy()) >= np.timedelta64(-60, "s"))


def test_a_low_live_rate_is_sent_in_ticks_of_at_least_twenty_rows() -> None:
    assert live_tick_s(100) == pytest.approx(0.2)  # 5 ticks a second, not 20: the per-tick work was most of its CPU
    assert live_tick_s(3000) == 0.05 and live_tick_s(400) == 0.05  # a high rate keeps the short tick
    assert live_tick_s(0) == 0.05


def test_ids_repeat_only_for_the_same_seed_and_period() -> None:
    config = SimulatorConfig(seed=5, customers=100, merchants=20)
    first = next(Simulator(config).backfill(START, 1))["transaction_id"]
    again = next(Simulator(config).backfill(START, 1))["transaction_id"]
    later = next(Simulator(config).backfill(START + timedelta(days=1), 1))["transaction_id"]
    assert list(first) == list(again)
    assert not set(first) & set(later)
    live_a = Simulator(config).live_batch(50, START, START + timedelta(seconds=1))["transaction_id"]
    later_start = START + timedelta(seconds=5)
    live_b = Simulator(config).live_batch(50, later_start, later_start + timedelta(seconds=1))["transaction_id"]
    assert not set(live_a) & set(live_b)


def test_a_generated_transaction_is_a_valid_predict_request_with_every_field_they_share() -> None:
    import json

    from app.schemas import PredictionRequest
    from streaming.replay import request_body

    frame = next(Simulator(SimulatorConfig(customers=50, merchants=20)).backfill(START, 1))
    for _, row in frame.head(20).iterrows():
        body = request_body(row)
        request = PredictionRequest.model_validate_json(json.dumps(body))
        assert set(body) == set(PredictionRequest.model_fields) & set(Transaction.model_fields)
        assert request.timestamp == row["timestamp"] and request.customer_id == row["customer_id"]
