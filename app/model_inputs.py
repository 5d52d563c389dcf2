"""The model's inputs, defined once for training, batch scoring and serving.

A prediction for a transaction at event time ``t`` sees two things:

* the transaction's own fields (amount, time, device, country, currency), and
* its **history**: aggregates of *earlier* transactions, in the tile semantics of the streaming job's
  1-minute tiles (``app.features``). ``floor(t)`` is the start of ``t``'s minute:

  - ``minute_*``: the customer's transactions earlier in the same clock minute (the current, partial tile);
  - ``cust_*_{d}d`` / ``merchant_txn_count_{d}d``: tiles starting in ``[floor(t) - d days, floor(t)]``, the
    current partial tile included;
  - ``merchant_fraud_reports_{d}d``: the merchant's transactions first reported as fraud in
    ``[floor(t) - d days, floor(t))``, by report time (a label counts from when it was known, docs/labels.md);
  - ``cust_country_*``: counts of the customer's earlier transactions per country.

Serving reads the history from the store (``app.feature_store.history_for``), training rebuilds it from raw
transactions (``app.point_in_time.history_frame``); both hand it to :func:`model_inputs`, the one function
that turns history into the model's columns. A parity test proves the two histories equal.

Everything works on column arrays (numpy), so one request is a batch of one and no DataFrame is built
per request.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from datetime import UTC

import numpy as np

from app.features import HISTORY, HISTORY_COLUMNS, day_spans, window

# --- history: what the store (or the point-in-time rebuild) supplies for each transaction, declared as data in
# app.features (entity, measure, span, label-delay rule, empty value)
# --- the transaction's own fields the model uses ---------------------------------------------------------
RAW_COLUMNS: tuple[str, ...] = ("amount", "timestamp", "country", "device_type", "currency")

# --- model inputs -----------------------------------------------------------------------------------------
# The day-span inputs follow the declared windows by kind (app.features says which kinds), so a window declared
# with a new span becomes an input without a line here. Their order (kind by kind, spans in declaration order)
# is part of the feature set.
CUSTOMER_SPANS = day_spans("customer", "count")
AMOUNT_SPANS = day_spans("customer", "amount")
MERCHANT_SPANS = day_spans("merchant", "count")
FRAUD_RATE_SPANS = day_spans("merchant", "fraud_reports")

NUMERIC_FEATURES: tuple[str, ...] = (
    "amount", "hour", "is_night", "is_weekend",
    # the original design's 1-minute window features (request fields transaction_count / avg_amount)
    "transaction_count", "avg_amount", "max_amount", "amount_std",
    *(f"cust_txn_count_{d}d" for d in CUSTOMER_SPANS),
    *(f"cust_mean_amount_{d}d" for d in AMOUNT_SPANS),
    *(f"amount_to_mean_{d}d" for d in AMOUNT_SPANS),
    *(f"merchant_txn_count_{d}d" for d in MERCHANT_SPANS),
    *(f"merchant_fraud_rate_{d}d" for d in FRAUD_RATE_SPANS),
    "country_is_home", "country_share",
)
# the windows each input reads, looked up once (a kind an input needs but HISTORY lacks fails here, at import)
_MINUTE = {m: window("customer", m, "minute") for m in ("count", "amount", "max", "std")}
_LIFETIME = {m: window("customer", m, "lifetime") for m in ("count", "country_count", "top_country_count")}
_CUSTOMER_COUNT = {d: window("customer", "count", d) for d in CUSTOMER_SPANS}
_MEAN_OF = {d: (window("customer", "amount", d), window("customer", "count", d)) for d in AMOUNT_SPANS}
_MERCHANT_COUNT = {d: window("merchant", "count", d) for d in MERCHANT_SPANS}
# fraud reports in the window per transaction in it (what card schemes call a merchant's fraud ratio)
_FRAUD_RATE_OF = {d: (window("merchant", "fraud_reports", d), window("merchant", "count", d))
                  for d in FRAUD_RATE_SPANS}
CATEGORICAL_FEATURES: tuple[str, ...] = ("country", "device_type", "currency")
FEATURES: tuple[str, ...] = NUMERIC_FEATURES + CATEGORICAL_FEATURES
# The day-span window each such input reads: its value means the same in training and serving only where the store
# held that many days before the transaction (the drift check compares those rows only, monitoring.drift)
WINDOW_DAYS_OF: dict[str, int] = {
    **{f"cust_txn_count_{d}d": d for d in CUSTOMER_SPANS},
    **{f"cust_mean_amount_{d}d": d for d in AMOUNT_SPANS},
    **{f"amount_to_mean_{d}d": d for d in AMOUNT_SPANS},
    **{f"merchant_txn_count_{d}d": d for d in MERCHANT_SPANS},
    **{f"merchant_fraud_rate_{d}d": d for d in FRAUD_RATE_SPANS},
    # Lifetime inputs settle as a card's history grows: read over a young history they are another quantity (the
    # quick demo's week of history read PSI 0.35 on both on a same-world day), so they wait for the longest window
    **{name: max(CUSTOMER_SPANS) for name in ("country_is_home", "country_share")},
}
# Inputs that follow the calendar: their shares depend on which weekdays a sample covers, so a sample of part of a
# week differs from a reference of whole weeks without anything having changed
CALENDAR_INPUTS: tuple[str, ...] = ("hour", "is_night", "is_weekend")

NIGHT_HOURS = (22, 6)  # [22:00, 06:00) UTC counts as night

# Names the definitions a model was trained with (training_features rows and MLflow runs carry it), derived from
# them so a changed window or input cannot keep the old name. model_inputs' arithmetic is code: a change there
# bumps FEATURE_SET_REVISION.
FEATURE_SET_REVISION = 3
FEATURE_SET = f"v{FEATURE_SET_REVISION}-" + hashlib.sha256(
    repr((HISTORY, NUMERIC_FEATURES, CATEGORICAL_FEATURES, NIGHT_HOURS)).encode()).hexdigest()[:10]


def raw_columns(fields: Mapping[str, object]) -> dict[str, np.ndarray]:
    """RAW_COLUMNS as model_inputs reads them, from any column source (a DataFrame's columns, lists built from
    API requests): amounts float64, event times UTC datetime64[us], the rest object arrays ('' when unknown)."""
    out: dict[str, np.ndarray] = {}
    for name in RAW_COLUMNS:
        values = fields[name]
        if name == "amount":
            out[name] = np.asarray(values, dtype=np.float64)
        elif name == "timestamp":
            out[name] = _utc_micros(values)
        else:
            out[name] = np.asarray(values, dtype=object)
    return out


def _utc_micros(values: object) -> np.ndarray:
    """UTC datetime64[us] from a datetime64 array, a pandas column (tz-aware: converted to UTC), or a list of
    datetimes (aware ones converted to UTC, naive ones taken as UTC). No pandas for a list: it is the request path."""
    if isinstance(values, np.ndarray) and np.issubdtype(values.dtype, np.datetime64):
        return values.astype("datetime64[us]")
    if hasattr(values, "to_numpy"):  # a pandas Series: its datetime64 values are UTC
        return values.to_numpy(dtype="datetime64[us]")  # type: ignore[union-attr]
    return np.array([t.astimezone(UTC).replace(tzinfo=None) if t.tzinfo else t for t in values],  # type: ignore[union-attr]
                    dtype="datetime64[us]")


def event_time_us(timestamps: np.ndarray) -> np.ndarray:
    """Event times as int64 microseconds since the epoch (UTC), from datetime64 of any unit."""
    return np.asarray(timestamps).astype("datetime64[us]").astype(np.int64)


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """numerator / denominator, NaN where there is no history (XGBoost's 'missing')."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(denominator > 0, numerator / np.where(denominator > 0, denominator, 1.0), np.nan)


def model_inputs(raw: Mapping[str, np.ndarray], history: Mapping[str, np.ndarray],
                 overrides: Mapping[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
    """The model's input columns from a transaction's fields and its history (all arrays of one length).

    ``overrides`` holds client-supplied values of the original request schema (``transaction_count``,
    ``avg_amount``), NaN where a client left one out; a supplied value wins over the store's.
    """
    amount = np.asarray(raw["amount"], dtype=np.float64)
    t_us = event_time_us(raw["timestamp"])
    hour = (t_us // 3_600_000_000) % 24
    weekday = (t_us // 86_400_000_000 + 3) % 7  # 1970-01-01 was a Thursday; Monday = 0
    h = {name: np.asarray(history[name], dtype=np.float64) for name in HISTORY_COLUMNS}
    minute = {m: h[name] for m, name in _MINUTE.items()}
    lifetime = {m: h[name] for m, name in _LIFETIME.items()}

    count = minute["count"]
    avg = _ratio(minute["amount"], count)
    if overrides:
        for name, column in (("transaction_count", "count"), ("avg_amount", "avg")):
            supplied = overrides.get(name)
            if supplied is not None:
                supplied = np.asarray(supplied, dtype=np.float64)
                if column == "count":
                    count = np.where(np.isnan(supplied), count, supplied)
                else:
                    avg = np.where(np.isnan(supplied), avg, supplied)
    has_minute = count > 0
    out: dict[str, np.ndarray] = {
        "amount": amount,
        "hour": hour.astype(np.float64),
        "is_night": ((hour >= NIGHT_HOURS[0]) | (hour < NIGHT_HOURS[1])).astype(np.float64),
        "is_weekend": (weekday >= 5).astype(np.float64),
        "transaction_count": count,
        "avg_amount": np.where(has_minute, np.nan_to_num(avg), 0.0),
        "max_amount": np.where(minute["count"] > 0, minute["max"], 0.0),
        "amount_std": np.where(minute["count"] > 1, minute["std"], 0.0),
    }
    for d, name in _CUSTOMER_COUNT.items():
        out[f"cust_txn_count_{d}d"] = h[name]
    for d, (total, count_name) in _MEAN_OF.items():
        mean = _ratio(h[total], h[count_name])
        out[f"cust_mean_amount_{d}d"] = mean
        out[f"amount_to_mean_{d}d"] = _ratio(amount, mean)
    for d, name in _MERCHANT_COUNT.items():
        out[f"merchant_txn_count_{d}d"] = h[name]
    for d, (reports, transactions) in _FRAUD_RATE_OF.items():
        out[f"merchant_fraud_rate_{d}d"] = _ratio(h[reports], h[transactions])
    has_history = lifetime["count"] > 0
    out["country_is_home"] = np.where(
        has_history, (lifetime["country_count"] >= lifetime["top_country_count"]).astype(np.float64), np.nan
    )
    out["country_share"] = _ratio(lifetime["country_count"], lifetime["count"])
    for name in CATEGORICAL_FEATURES:
        out[name] = np.asarray(raw[name], dtype=object)
    return out


def minute_std(count: np.ndarray, total: np.ndarray, sum_squares: np.ndarray) -> np.ndarray:
    """Sample standard deviation from count, sum and sum of squares (0 below two values), as Spark's
    ``stddev_samp`` in the tiles."""
    n = np.asarray(count, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        variance = (sum_squares - total * total / np.where(n > 0, n, 1.0)) / np.where(n > 1, n - 1, 1.0)
    return np.where(n > 1, np.sqrt(np.clip(variance, 0.0, None)), 0.0)
