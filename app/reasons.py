"""Reasons a person can read, for a review or a decline: the model's per-prediction contributions (XGBoost
``pred_contribs``, log-odds) summed per group of related inputs, the largest positive groups first (at most
three), each worded from the row's own input values against the card's usual ones.

A group, not an input: ``amount`` and ``amount_to_mean_30d`` tell one story ("amount 12.0x the card's 30-day
mean"), and a one-hot column (``country=DE``) belongs to its input. Every model input has a group
(``tests/unit/test_reasons.py`` keeps the map complete), so a new input without a wording fails a test, not a
request.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from app.model_inputs import FEATURES

TOP_REASONS = 3

_AMOUNT, _ACTIVITY, _COUNTRY, _MERCHANT_FRAUD, _MERCHANT_VOLUME, _TIME, _DEVICE, _CURRENCY = (
    "amount", "card activity", "country", "merchant fraud reports", "merchant volume", "time", "device", "currency")


def _group(name: str) -> str:
    if name == "amount" or name.startswith(("cust_mean_amount_", "amount_to_mean_")):
        return _AMOUNT
    if name in ("transaction_count", "avg_amount", "max_amount", "amount_std") or name.startswith("cust_txn_count_"):
        return _ACTIVITY
    if name in ("country", "country_is_home", "country_share"):
        return _COUNTRY
    if name.startswith("merchant_fraud_rate_"):
        return _MERCHANT_FRAUD
    if name.startswith("merchant_txn_count_"):
        return _MERCHANT_VOLUME
    if name in ("hour", "is_night", "is_weekend"):
        return _TIME
    if name == "device_type":
        return _DEVICE
    if name == "currency":
        return _CURRENCY
    raise KeyError(f"model input {name!r} has no reason group: add it to app/reasons.py")


GROUP_OF: dict[str, str] = {name: _group(name) for name in FEATURES}


def _finite(value: Any) -> bool:
    return value is not None and isinstance(value, (int, float, np.floating, np.integer)) and math.isfinite(value)


def _longest(row: Mapping[str, Any], prefix: str) -> tuple[int, float] | None:
    """The longest day-span input of a kind with a value: (days, value)."""
    spans = sorted((int(name[len(prefix):-1]), row[name]) for name in row
                   if name.startswith(prefix) and name.endswith("d") and name[len(prefix):-1].isdigit())
    for days, value in reversed(spans):
        if _finite(value):
            return days, float(value)
    return None


def _amount(row: Mapping[str, Any]) -> str:
    ratio = _longest(row, "amount_to_mean_")
    if ratio is None:
        return f"amount {row['amount']:,.2f} on a card with no earlier spending"
    return f"amount {row['amount']:,.2f}, {ratio[1]:.1f}x the card's {ratio[0]}-day mean"


def _activity(row: Mapping[str, Any]) -> str:
    earlier = row.get("transaction_count")  # the card's earlier transactions in the same minute
    if _finite(earlier) and earlier >= 1:
        return f"{earlier + 1:.0f} transactions on this card within a minute"
    recent = row.get("cust_txn_count_1d")
    if not _finite(recent) or recent == 0:
        return "the card's first transaction in a day"
    usual = _longest(row, "cust_txn_count_")
    if usual is not None and usual[0] > 1:
        return f"{recent:.0f} transactions on this card in the last day ({usual[1]:.0f} in {usual[0]} days)"
    return f"{recent:.0f} transactions on this card in the last day"


def _country(row: Mapping[str, Any]) -> str:
    country, share = row.get("country"), row.get("country_share")
    if not _finite(share):
        return f"from {country}, on a card with no earlier transactions"
    if share == 0:
        return f"first transaction from {country} for this card"
    if row.get("country_is_home") == 0:
        return f"from {country}, not the card's home country ({_share(share)} of its transactions)"
    return f"from {country} ({_share(share)} of the card's transactions)"


def _share(share: float) -> str:
    return "<1%" if 0 < share < 0.005 else f"{share:.0%}"


def _merchant_fraud(row: Mapping[str, Any]) -> str:
    rate = _longest(row, "merchant_fraud_rate_")
    if rate is None:
        return "a merchant with no transactions on record"
    if rate[1] == 0:
        return f"no fraud reports at this merchant over {rate[0]} days"
    return f"the merchant's fraud reports are {rate[1]:.1%} of its transactions over {rate[0]} days"


def _merchant_volume(row: Mapping[str, Any]) -> str:
    recent = row.get("merchant_txn_count_1d")
    return ("a merchant with no transactions in the last day" if not _finite(recent) or recent == 0 else
            f"{recent:.0f} transactions at this merchant in the last day")


def _time(row: Mapping[str, Any]) -> str:
    when = f"at {row['hour']:02.0f}:00 UTC" if _finite(row.get("hour")) else "at this time"
    return when + (" (night)" if row.get("is_night") == 1 else "") + (", a weekend" if row.get("is_weekend") == 1
                                                                      else "")


WORDING: dict[str, Callable[[Mapping[str, Any]], str]] = {
    _AMOUNT: _amount, _ACTIVITY: _activity, _COUNTRY: _country, _MERCHANT_FRAUD: _merchant_fraud,
    _MERCHANT_VOLUME: _merchant_volume, _TIME: _time,
    _DEVICE: lambda row: f"device {row.get('device_type') or 'unknown'}",
    _CURRENCY: lambda row: f"currency {row.get('currency') or 'unknown'}",
}


def column_groups(output_names: Sequence[str]) -> np.ndarray:
    """The group of each preprocessed column (``country=DE`` is ``country``'s)."""
    return np.array([GROUP_OF[name.split("=", 1)[0]] for name in output_names], dtype=object)


def top_groups(contributions: np.ndarray, groups: np.ndarray, top: int = TOP_REASONS) -> list[list[str]]:
    """Per row of contributions (rows x columns, the bias column dropped): the groups whose summed contribution
    pushes towards fraud, the largest first, at most ``top``."""
    names = sorted(set(groups))
    summed = np.stack([contributions[:, groups == name].sum(axis=1) for name in names], axis=1)
    out = []
    for row in summed:
        order = np.argsort(-row, kind="stable")[:top]  # equal pushes: the groups' alphabetical order
        out.append([names[i] for i in order if row[i] > 0])
    return out


def worded(groups: Sequence[str], row: Mapping[str, Any]) -> list[dict[str, str]]:
    """Each group as a sentence from the row's model inputs (``app.model_inputs``, one value per input)."""
    return [{"input": group, "text": WORDING[group](row)} for group in groups]


def row_of(inputs: Mapping[str, np.ndarray], index: int) -> dict[str, Any]:
    """One row of model-input columns (``app.model_inputs.model_inputs``) as the mapping ``worded`` reads."""
    return {name: inputs[name][index] for name in FEATURES}


def threshold_reason(probability: float, outcome: str, threshold: float) -> dict[str, str]:
    """The reason of a review or decline no input group pushed (the model's base rate did): the score itself."""
    return {"input": "probability",
            "text": f"fraud probability {probability:.3f}, at or over the {outcome} threshold {threshold:.3f}"}
