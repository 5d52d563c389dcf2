"""Data expectations on the simulator's label delay model (streaming/label_delays.py): valid label events, seeded,
shares and delays as configured, and a transaction's events in a believable order."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from app.schemas import LabelEvent
from streaming.label_delays import LabelDelayConfig, label_events, label_keys, label_values
from streaming.simulator import ScenarioShares, Simulator, SimulatorConfig

START = datetime(2026, 10, 1, tzinfo=UTC)
DAY = pd.Timedelta(days=1)
# fraud five times as common as by default, so a small world has thousands of frauds to measure shares on
MANY_FRAUDS = ScenarioShares(large_amount=0.0075, compromised_merchant=0.0075, compromised_card=0.0075,
                             card_testing=0.005, account_takeover=0.005)


@pytest.fixture(scope="module")
def transactions() -> pd.DataFrame:
    """~160k transactions over 10 days, ~5k of them fraud."""
    simulator = Simulator(SimulatorConfig(seed=11, customers=5_000, merchants=300, shares=MANY_FRAUDS))
    return pd.concat(simulator.backfill(START, 10), ignore_index=True)


@pytest.fixture(scope="module")
def events(transactions: pd.DataFrame) -> pd.DataFrame:
    return label_events(transactions, LabelDelayConfig(seed=3))


@pytest.fixture(scope="module")
def day() -> pd.DataFrame:
    simulator = Simulator(SimulatorConfig(seed=5, customers=2_000, merchants=100, shares=MANY_FRAUDS))
    return next(simulator.backfill(START, 1))


def _with_transactions(events: pd.DataFrame, transactions: pd.DataFrame) -> pd.DataFrame:
    """The events with their transaction's timestamp and delay (reported_at - timestamp)."""
    joined = events.merge(transactions[["transaction_id", "timestamp"]], on="transaction_id", how="left",
                          validate="many_to_one")
    joined["delay"] = joined["reported_at"] - joined["timestamp"]
    return joined


def test_every_event_is_a_valid_label_event_keyed_by_its_transaction(events: pd.DataFrame) -> None:
    assert list(events.columns) == list(LabelEvent.model_fields)
    assert set(events["source"]) == {"analyst", "dispute", "chargeback", "confirmed_legitimate"}
    for value, key, row in zip(label_values(events), label_keys(events), events.itertuples(), strict=True):
        event = LabelEvent.from_kafka_value(value)
        assert key == str(event.transaction_id).encode() == row.transaction_id.encode()
        assert str(event.label_id) == row.label_id
        assert event.reported_at == row.reported_at
        assert event.reason_code == row.reason_code and event.case_id == row.case_id
    assert events["label_id"].is_unique
    assert events[["reported_at", "label_id"]].equals(events[["reported_at", "label_id"]].sort_values(
        ["reported_at", "label_id"], ignore_index=True))


def test_same_seed_and_transactions_give_the_same_events_and_another_seed_different_ones(day: pd.DataFrame) -> None:
    first = label_events(day, LabelDelayConfig(seed=8))
    pd.testing.assert_frame_equal(first, label_events(day, LabelDelayConfig(seed=8)))
    shuffled = day.sample(frac=1, random_state=0).drop(columns="scenario")  # row order and scenario do not matter
    pd.testing.assert_frame_equal(first, label_events(shuffled, LabelDelayConfig(seed=8)))
    other = label_events(day, LabelDelayConfig(seed=9))
    assert not first["reported_at"].equals(other["reported_at"])
    assert set(first["transaction_id"]) != set(other["transaction_id"])


def test_the_truth_is_is_fraud_not_the_scenario(day: pd.DataFrame) -> None:
    flipped = day.assign(is_fraud=1 - day["is_fraud"])  # the scenario column now says the opposite
    sources = label_events(flipped, LabelDelayConfig(seed=8)).groupby("transaction_id")["source"].agg(
        lambda s: "+".join(sorted(s)))
    truth = flipped.set_index("transaction_id")["is_fraud"]
    reported = truth.index.isin(sources.index)
    assert reported[truth.to_numpy() == 1].mean() == pytest.approx(1 - LabelDelayConfig().never_reported, abs=0.02)
    assert set(sources[truth.loc[sources.index] == 0]) <= {"confirmed_legitimate+dispute"}


def test_fraud_reporting_shares_land_near_their_configuration(transactions: pd.DataFrame,
                                                             events: pd.DataFrame) -> None:
    config = LabelDelayConfig()
    frauds = transactions.loc[transactions["is_fraud"] == 1, "transaction_id"]
    legit = transactions.loc[transactions["is_fraud"] == 0, "transaction_id"]
    assert len(frauds) > 4_000
    sources = events.groupby("transaction_id")["source"].agg(lambda s: "+".join(sorted(s)))
    of_frauds = sources.reindex(frauds, fill_value="").value_counts(normalize=True)
    assert set(of_frauds.index) == {"analyst", "dispute", "chargeback+dispute", ""}
    assert of_frauds["analyst"] == pytest.approx(config.analyst_share, abs=0.03)
    assert of_frauds["dispute"] + of_frauds["chargeback+dispute"] == pytest.approx(config.dispute_share, abs=0.03)
    assert of_frauds[""] == pytest.approx(config.never_reported, abs=0.02)  # never reported: no event at all
    chargeback_share = of_frauds["chargeback+dispute"] / (of_frauds["dispute"] + of_frauds["chargeback+dispute"])
    assert chargeback_share == pytest.approx(config.chargeback_after_dispute, abs=0.04)
    of_legit = sources.reindex(legit, fill_value="").value_counts()
    assert set(of_legit.index) == {"", "confirmed_legitimate+dispute"}  # a legitimate one: nothing, or a false dispute
    assert of_legit["confirmed_legitimate+dispute"] / len(legit) == pytest.approx(config.false_dispute_share,
                                                                                 rel=0.3)


def test_delays_follow_their_documented_defaults(transactions: pd.DataFrame, events: pd.DataFrame) -> None:
    delays = _with_transactions(events, transactions).groupby("source")["delay"]
    medians, longest = delays.median(), delays.max()
    assert pd.Timedelta(hours=2) < medians["analyst"] < pd.Timedelta(hours=8)
    assert longest["analyst"] <= pd.Timedelta(hours=48)
    assert 5 * DAY < medians["dispute"] < 10 * DAY
    assert 30 * DAY < medians["chargeback"] < 60 * DAY
    within_60_days = (delays.get_group("chargeback") <= 60 * DAY).mean()
    assert 0.8 < within_60_days < 0.95  # Amazon Fraud Detector: chargeback labels take ~60 days to mature


def test_no_label_is_reported_before_its_transaction(transactions: pd.DataFrame, events: pd.DataFrame) -> None:
    joined = _with_transactions(events, transactions)
    assert joined["timestamp"].notna().all()
    assert (joined["delay"] > pd.Timedelta(0)).all()


@pytest.mark.parametrize("time_scale", [1.0, 1 / 720])
def test_no_chargeback_comes_later_than_the_scheme_limit(transactions: pd.DataFrame, time_scale: float) -> None:
    config = LabelDelayConfig(seed=3, time_scale=time_scale, chargeback_median_days=90, chargeback_sigma=0.5)
    joined = _with_transactions(label_events(transactions, config), transactions)
    chargebacks = joined[joined["source"] == "chargeback"]
    limit = pd.Timedelta(days=config.chargeback_limit_days) * time_scale
    assert (chargebacks["delay"] == limit).any()  # drawn past the limit, held at it
    assert (chargebacks["delay"] <= limit).all()
    assert (chargebacks["reason_code"] == config.chargeback_reason_code).all()


def test_a_transactions_events_come_one_after_another(events: pd.DataFrame) -> None:
    several = events[events.duplicated("transaction_id", keep=False)].sort_values(["transaction_id", "reported_at"])
    assert len(several) > 1_000
    pairs = several.groupby("transaction_id").agg(
        sources=("source", tuple), gap=("reported_at", lambda t: t.iloc[-1] - t.iloc[0]), count=("source", "size"))
    assert (pairs["count"] == 2).all()
    assert set(pairs["sources"]) == {("dispute", "chargeback"), ("dispute", "confirmed_legitimate")}
    assert (pairs["gap"] > pd.Timedelta(0)).all()
    min_gap = pd.Timedelta(days=LabelDelayConfig().chargeback_min_gap_days)
    assert (pairs.loc[pairs["sources"] == ("dispute", "chargeback"), "gap"] >= min_gap).all()
    # a dispute and what settles it belong to one case
    assert (several.groupby("transaction_id")["case_id"].nunique() == 1).all()


def test_a_false_dispute_is_followed_by_a_later_confirmed_legitimate_event(transactions: pd.DataFrame,
                                                                          events: pd.DataFrame) -> None:
    legit = set(transactions.loc[transactions["is_fraud"] == 0, "transaction_id"])
    on_legit = events[events["transaction_id"].isin(legit)]
    disputes = on_legit[on_legit["source"] == "dispute"].set_index("transaction_id")
    settled = on_legit[on_legit["source"] == "confirmed_legitimate"].set_index("transaction_id")
    assert len(disputes) > 50
    assert set(disputes.index) == set(settled.index)
    assert (disputes["is_fraud"] == 1).all() and (settled["is_fraud"] == 0).all()  # wrong at first, then right
    assert (settled["reported_at"] > disputes.loc[settled.index, "reported_at"]).all()
    investigation = settled["reported_at"] - disputes.loc[settled.index, "reported_at"]
    assert 7 * DAY < investigation.median() < 28 * DAY  # days to weeks


def test_time_scale_scales_every_delay(day: pd.DataFrame) -> None:
    scale = 1 / 720  # a month in an hour
    real = _with_transactions(label_events(day, LabelDelayConfig(seed=4)), day).set_index("label_id")
    fast = _with_transactions(label_events(day, LabelDelayConfig(seed=4, time_scale=scale)), day).set_index("label_id")
    assert set(real.index) == set(fast.index)
    fast = fast.loc[real.index]
    assert (fast["source"] == real["source"]).all()
    error = (fast["delay"] - real["delay"] * scale).abs()
    assert error.max() <= pd.Timedelta(microseconds=2)
    assert fast["delay"].max() < pd.Timedelta(hours=4)  # even a 120-day chargeback comes within 4 hours


def test_shares_that_do_not_cover_every_fraud_are_refused() -> None:
    with pytest.raises(ValidationError, match="must be 1"):
        LabelDelayConfig(analyst_share=0.5)
    assert LabelDelayConfig(analyst_share=0.5, dispute_share=0.4).never_reported == 0.1


def test_a_frame_without_the_truth_or_with_naive_times_is_refused_with_a_reason(day: pd.DataFrame) -> None:
    with pytest.raises(ValueError, match="is_fraud"):
        label_events(day.drop(columns="is_fraud"), LabelDelayConfig())
    with pytest.raises(ValueError, match="is_fraud must be 0 or 1"):
        label_events(day.assign(is_fraud=np.where(day.index % 2 == 0, 1.0, np.nan)), LabelDelayConfig())
    with pytest.raises(ValueError, match="tz-aware"):
        label_events(day.assign(timestamp=day["timestamp"].dt.tz_localize(None)), LabelDelayConfig())
    empty = label_events(day.iloc[:0], LabelDelayConfig())
    assert list(empty.columns) == list(LabelEvent.model_fields) and empty.empty



def test_another_period_gets_other_draws_even_with_the_same_transactions(day: pd.DataFrame) -> None:
    today = _with_transactions(label_events(day, LabelDelayConfig(seed=8)), day)
    moved = day.assign(timestamp=day["timestamp"] + DAY)  # the same ids and truth, a day later
    tomorrow = _with_transactions(label_events(moved, LabelDelayConfig(seed=8)), moved)
    assert not today.set_index("label_id")["delay"].sort_index().equals(
        tomorrow.set_index("label_id")["delay"].sort_index())
