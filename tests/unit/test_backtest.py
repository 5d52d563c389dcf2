"""The backtest's arithmetic (training/backtest.py) on a table small enough to count by hand: outcomes by the
thresholds then the lists, money per outcome, card precision at the capacity, and intervals that are seeded."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pandas as pd

from app.decision import CostModel
from app.lists import ListEntry, ListView
from training.backtest import _cards, _period, outcomes, per_row

COSTS = CostModel(fraud_loss_share=1.0, review_cost=5.0, decline_cost=25.0, review_capacity_per_day=2)
T = datetime(2026, 6, 1, 12, tzinfo=UTC)
FRAME = pd.DataFrame({"customer_id": [1, 2, 3, 4, 5], "merchant_id": [7, 7, 8, 8, 9],
                      "timestamp": [T] * 5, "day": ["2026-06-01"] * 5})
PROBABILITY = np.array([0.05, 0.5, 0.95, 0.9, 0.01])
FRAUD = np.array([True, True, True, False, False])
AMOUNT = np.array([100.0, 50.0, 30.0, 20.0, 10.0])


def test_outcomes_come_from_the_thresholds_then_from_the_lists_as_they_applied_then() -> None:
    codes, listed = outcomes(PROBABILITY, 0.4, 0.8, FRAME, ListView([]))
    assert codes.tolist() == [0, 1, 2, 2, 0] and listed == 0
    deny = ListEntry(entry_id=1, list="deny", entity="customer", entity_id=1, reason="case 1", added_by="ana",
                     added_at=datetime(2026, 5, 1, tzinfo=UTC))
    later = deny.model_copy(update={"entry_id": 2, "entity_id": 5, "added_at": datetime(2026, 7, 1, tzinfo=UTC)})
    codes, listed = outcomes(PROBABILITY, 0.4, 0.8, FRAME, ListView([deny, later]))
    assert codes.tolist() == [2, 1, 2, 2, 0] and listed == 1  # card 5's entry came after its transaction


def test_money_per_outcome_and_card_precision_at_the_capacity_count_by_hand() -> None:
    codes = np.array([0, 1, 2, 2, 0])
    parts = per_row(codes, FRAUD, AMOUNT, COSTS)
    period = _period("total", parts, _cards(FRAME, PROBABILITY, FRAUD), COSTS.review_capacity_per_day,
                     np.random.default_rng(1))
    f = {k: v.value for k, v in period.figures.items()}
    # reviews: card 2; declines: cards 3 and 4; caught: 2 and 3 (50 + 30 saved); missed: card 1 (100 lost);
    # cost: one review 5 + one false decline (card 4) 25 + the missed 100
    assert (f["reviews"], f["declines"], f["caught"], f["missed"], f["saved"], f["cost"]) == (1, 2, 2, 1, 80, 130)
    assert f["card_precision"] == 0.5  # the two highest-scored cards, 3 (fraud) and 4 (not)
    low, high = period.figures["cost"].low, period.figures["cost"].high
    assert low <= f["cost"] <= high


def test_the_intervals_are_the_same_every_run() -> None:
    parts = per_row(np.array([0, 1, 2, 2, 0]), FRAUD, AMOUNT, COSTS)
    cards = _cards(FRAME, PROBABILITY, FRAUD)
    first = _period("total", parts, cards, 2, np.random.default_rng(7))
    again = _period("total", parts, cards, 2, np.random.default_rng(7))
    assert first == again


def test_a_period_whose_labels_are_all_unknown_yet_reads_as_legitimate_not_as_an_error() -> None:
    from app.labels import matured

    assert matured(np.array([None, None], dtype=object)).tolist() == [0, 0]  # a backtest of the last hours
    assert matured(np.array([None, 1, 0.0], dtype=object)).tolist() == [0, 1, 0]
