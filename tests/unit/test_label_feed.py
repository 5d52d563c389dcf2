"""Live traffic without labels, its labels as events when their time comes (streaming/label_feed.py, run_live)."""

from __future__ import annotations

from datetime import UTC, datetime

import pandas as pd
import pytest

from app.cli.demo.plan import FULL, QUICK, DemoPlan
from streaming.label_delays import LabelDelayConfig, label_events
from streaming.label_feed import LabelFeed
from streaming.simulate import run_live
from streaming.simulator import ScenarioShares, Simulator, SimulatorConfig

START = datetime(2026, 10, 1, tzinfo=UTC)
MANY_FRAUDS = ScenarioShares(large_amount=0.0075, compromised_merchant=0.0075, compromised_card=0.0075,
                             card_testing=0.005, account_takeover=0.005)


class MemorySink:
    def __init__(self) -> None:
        self.frames: list[pd.DataFrame] = []
        self.flushed = self.closed = 0

    def write(self, frame: pd.DataFrame) -> None:
        self.frames.append(frame)

    def flush(self, timeout_s: float = 60) -> None:
        self.flushed += 1

    def close(self) -> None:
        self.closed += 1

    def rows(self) -> pd.DataFrame:
        return pd.concat(self.frames, ignore_index=True) if self.frames else pd.DataFrame()


@pytest.fixture(scope="module")
def day() -> pd.DataFrame:
    return next(Simulator(SimulatorConfig(seed=5, customers=2_000, merchants=100, shares=MANY_FRAUDS))
                .backfill(START, 1))


def test_a_label_event_is_sent_once_when_its_report_time_comes_and_not_before(day: pd.DataFrame) -> None:
    config = LabelDelayConfig(seed=8, time_scale=1 / 120)
    sink = MemorySink()
    feed = LabelFeed(config, sink)
    feed.add(day)
    every = label_events(day, config)
    assert feed.held == len(every) and feed.sent == 0

    noon = pd.Timestamp(START) + pd.Timedelta(hours=12)
    assert feed.release(noon) == (every["reported_at"] <= noon).sum() > 0
    assert (sink.rows()["reported_at"] <= noon).all()
    assert feed.release(noon) == 0  # nothing twice
    feed.release(pd.Timestamp(START) + pd.Timedelta(days=3))  # past the scaled chargeback limit: all of them
    sent = sink.rows()
    assert feed.held == 0 and feed.sent == len(every) == len(sent)
    pd.testing.assert_frame_equal(sent.sort_values("label_id", ignore_index=True),
                                  every.sort_values("label_id", ignore_index=True))
    assert feed.sent_ids == sent["label_id"].tolist()


def test_the_feed_keeps_the_true_frauds_it_saw_for_the_report(day: pd.DataFrame) -> None:
    feed = LabelFeed(LabelDelayConfig(seed=8), MemorySink())
    feed.add(day.iloc[: len(day) // 2])
    feed.add(day.iloc[len(day) // 2:])
    assert sorted(feed.frauds["transaction_id"]) == sorted(day.loc[day["is_fraud"] == 1, "transaction_id"].astype(str))


def test_live_traffic_with_a_feed_carries_no_label_and_its_labels_follow_as_events() -> None:
    simulator = Simulator(SimulatorConfig(seed=3, customers=500, merchants=50, shares=MANY_FRAUDS))
    transactions, labels = MemorySink(), MemorySink()
    # delays x1e-6: an analyst's 4 hours is 14 ms, so events come within the run
    stats = run_live(simulator, transactions, rate=2000, duration_s=1.0,
                     labels=LabelFeed(LabelDelayConfig(seed=3, time_scale=1e-6), labels))
    sent = transactions.rows()
    assert len(sent) == stats.events > 0 and "is_fraud" not in sent.columns
    events = labels.rows()
    assert stats.labels_sent == len(events) > 0 and labels.closed == 1
    assert set(events["transaction_id"]) <= set(sent["transaction_id"].astype(str))


def test_live_traffic_without_a_feed_keeps_its_labels_in_the_rows() -> None:
    sink = MemorySink()
    run_live(Simulator(SimulatorConfig(seed=3, customers=200, merchants=50)), sink, rate=500, duration_s=0.3)
    assert "is_fraud" in sink.rows().columns


@pytest.mark.parametrize("plan", [FULL, QUICK], ids=lambda p: p.name)
def test_the_demo_scales_label_delays_so_the_latest_label_comes_one_label_delay_late(plan: DemoPlan,
                                                                                     day: pd.DataFrame) -> None:
    limit = LabelDelayConfig().chargeback_limit_days
    config = LabelDelayConfig(seed=plan.seed, time_scale=plan.label_time_scale(limit))
    joined = label_events(day, config).merge(day[["transaction_id", "timestamp"]].astype({"transaction_id": str}),
                                             on="transaction_id")
    delays = joined["reported_at"] - joined["timestamp"]
    assert delays.max() <= pd.Timedelta(days=plan.label_delay_days)
    assert delays.max() > pd.Timedelta(days=plan.label_delay_days) / 2  # not compressed to nothing
