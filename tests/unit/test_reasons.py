"""Reasons a person can read (app/reasons.py): every model input has a group, the largest positive groups come
first, and each reads the row's values against the card's usual ones."""

from __future__ import annotations

import math

import numpy as np

from app.model_inputs import FEATURES
from app.reasons import GROUP_OF, WORDING, column_groups, top_groups, worded

ROW = {name: math.nan for name in FEATURES} | {
    "amount": 1240.0, "amount_to_mean_1d": 3.0, "amount_to_mean_7d": 10.0, "amount_to_mean_30d": 12.0,
    "transaction_count": 0.0, "cust_txn_count_1d": 9.0, "cust_txn_count_30d": 60.0,
    "country": "DE", "country_share": 0.0, "country_is_home": 0.0, "merchant_fraud_rate_30d": 0.041,
    "merchant_txn_count_1d": 12.0, "hour": 3.0, "is_night": 1.0, "is_weekend": 0.0, "device_type": "web",
    "currency": "EUR"}


def test_every_model_input_has_a_group_and_every_group_a_wording() -> None:
    assert set(GROUP_OF) == set(FEATURES)
    assert set(GROUP_OF.values()) == set(WORDING)


def test_contributions_are_summed_per_group_one_hot_columns_with_their_input_and_only_pushes_to_fraud_count() -> None:
    names = ["amount", "amount_to_mean_30d", "country=DE", "country=FR", "country_share", "hour", "device_type=web"]
    groups = column_groups(names)
    contributions = np.array([[0.5, 0.75, 0.25, 0.0, 0.75, -0.25, 0.125],
                              [-1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]])
    assert top_groups(contributions, groups) == [["amount", "country", "device"], []]


def test_each_reason_reads_the_rows_values_against_the_cards_usual() -> None:
    texts = {r["input"]: r["text"] for r in worded(list(WORDING), ROW)}
    assert texts["amount"] == "amount 1,240.00, 12.0x the card's 30-day mean"
    assert texts["country"] == "first transaction from DE for this card"
    assert texts["card activity"] == "9 transactions on this card in the last day (60 in 30 days)"
    assert texts["merchant fraud reports"] == "the merchant's fraud reports are 4.1% of its transactions over 30 days"
    assert texts["time"] == "at 03:00 UTC (night)"


def test_a_card_without_history_is_said_so_not_shown_as_nan() -> None:
    row = ROW | {f"amount_to_mean_{d}d": math.nan for d in (1, 7, 30)} | {"country_share": math.nan}
    texts = {r["input"]: r["text"] for r in worded(["amount", "country"], row)}
    assert texts == {"amount": "amount 1,240.00 on a card with no earlier spending",
                     "country": "from DE, on a card with no earlier transactions"}
    # a first transaction: every history input missing, the message's own fields present
    first = {name: math.nan for name in FEATURES} | {k: ROW[k] for k in ("amount", "country", "device_type",
                                                                        "currency")}
    assert all("nan" not in r["text"] for r in worded(list(WORDING), first))


def test_small_and_zero_values_read_as_words_not_as_zero_percent() -> None:
    texts = {r["input"]: r["text"] for r in worded(list(WORDING), ROW | {
        "country_share": 0.003, "merchant_fraud_rate_30d": 0.0, "transaction_count": 2.0, "device_type": None})}
    assert texts["country"] == "from DE, not the card's home country (<1% of its transactions)"
    assert texts["merchant fraud reports"] == "no fraud reports at this merchant over 30 days"
    assert texts["card activity"] == "3 transactions on this card within a minute"  # two earlier, and this one
    assert texts["device"] == "device unknown"
