"""Feature definitions, declared once as data.

The streaming job keeps 1-minute *tiles* per customer and per merchant; each tile column is declared here with
the aggregation that computes it. The Spark job builds its aggregation from these declarations, the migrations
hold the matching columns, and longer windows (1, 7, 30 days) are sums over tiles — which is why ``amount_sum``
is kept beside the mean.

Adding a history window is one line in HISTORY (a day span for all the long windows: one number in
LONG_WINDOWS_DAYS). A day-span window of a kind the model already reads becomes a model input with no further
line (app.model_inputs derives those inputs from the windows by kind and span):

- customer count over d days -> ``cust_txn_count_{d}d``;
- customer amount over d days -> ``cust_mean_amount_{d}d`` and ``amount_to_mean_{d}d``; the second line is the
  customer count over d days, when it is not declared yet;
- merchant count over d days -> ``merchant_txn_count_{d}d``;
- merchant fraud reports over d days -> ``merchant_fraud_rate_{d}d``; the second line is the merchant count over
  d days (its denominator), when it is not declared yet.

A merchant's fraud reports are counted by the time each was reported (docs/labels.md): a transaction counts once,
at its first fraud report, in the minute of that report, whether it came as a label event or inside the row (the
label delay after the transaction). The stream keeps them in their own 1-minute tiles
(``merchant_fraud_reports``, written with the reports, not by Spark's aggregation).

A window of any other kind (a new measure, entity or span) is history only until app.model_inputs says how it
enters the model; a window an input needs but HISTORY lacks fails at import.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Aggregation = Literal["count", "sum", "mean", "max", "std"]
Entity = Literal["customer", "merchant"]


@dataclass(frozen=True)
class TileAggregate:
    name: str
    aggregation: Aggregation
    column: str | None  # the transaction column aggregated; None for a row count
    description: str


CUSTOMER_TILE: tuple[TileAggregate, ...] = (
    TileAggregate("transaction_count", "count", None, "transactions in the window"),
    TileAggregate("amount_sum", "sum", "amount", "total amount in the window"),
    TileAggregate("avg_amount", "mean", "amount", "mean amount in the window"),
    TileAggregate("max_amount", "max", "amount", "largest amount in the window"),
    TileAggregate("amount_std", "std", "amount", "sample standard deviation of amounts (0 for one transaction)"),
    TileAggregate("fraud_count", "sum", "is_fraud", "frauds labelled inside the rows (not a model input: the "
                                                    "merchant's fraud reports are, app.features.HISTORY)"),
    TileAggregate("last_event_at", "max", "timestamp", "event time of the newest transaction (staleness, freshness)"),
)

MERCHANT_TILE: tuple[TileAggregate, ...] = tuple(
    a for a in CUSTOMER_TILE if a.name in {"transaction_count", "fraud_count", "last_event_at"}
)

TILES: dict[Entity, tuple[TileAggregate, ...]] = {"customer": CUSTOMER_TILE, "merchant": MERCHANT_TILE}
TILE_TABLES: dict[Entity, tuple[str, str]] = {  # table, key column
    "customer": ("features", "customer_id"),
    "merchant": ("merchant_features", "merchant_id"),
}


# --- history windows: what a transaction's history holds, declared once -------------------------------------
# Each window is read online from the tiles' running totals (app.feature_store), rebuilt point-in-time from raw
# transactions for training (app.point_in_time), defaulted when the store cannot answer, cached per entity in
# serving, listed in HISTORY_COLUMNS, read back far enough by training (history_span) and, by kind, turned into
# model inputs — all from these declarations. Adding a window is one line below (the module docstring says when
# a second one is needed).
HistoryMeasure = Literal[
    "count",  # transactions
    "amount",  # sum of amounts
    "fraud_reports",  # transactions first reported as fraud in the window (by report time), merchants only
    "max",  # largest amount (minute span only)
    "std",  # sample std of amounts (minute span only)
    "country_count",  # the customer's earlier transactions in this transaction's country (lifetime only)
    "top_country_count",  # ... in the customer's most used country (lifetime only)
]
Span = Literal["minute", "lifetime"] | int  # the current clock minute, all time, or whole days back


@dataclass(frozen=True)
class HistoryWindow:
    name: str
    entity: Entity
    measure: HistoryMeasure
    span: Span
    empty: float = 0.0  # the value with no history (NaN: undefined, XGBoost's "missing")

    def describe(self) -> str:
        what = {"count": "transactions", "amount": "amount total", "fraud_reports": "fraud reports",
                "max": "largest amount", "std": "amount std", "country_count": "transactions in this country",
                "top_country_count": "transactions in the top country"}[self.measure]
        span = {"minute": "earlier in this minute", "lifetime": "ever"}.get(self.span, f"over {self.span} days")  # type: ignore[arg-type]
        before = ", before this minute" if self.measure == "fraud_reports" else ""
        return f"{self.entity} {what} {span}{before}"


LONG_WINDOWS_DAYS: tuple[int, ...] = (1, 7, 30)
NAN = float("nan")

HISTORY: tuple[HistoryWindow, ...] = (
    HistoryWindow("minute_count", "customer", "count", "minute"),
    HistoryWindow("minute_sum", "customer", "amount", "minute"),
    HistoryWindow("minute_max", "customer", "max", "minute", empty=NAN),
    HistoryWindow("minute_std", "customer", "std", "minute", empty=NAN),
    *(HistoryWindow(f"cust_count_{d}d", "customer", "count", d) for d in LONG_WINDOWS_DAYS),
    *(HistoryWindow(f"cust_amount_sum_{d}d", "customer", "amount", d) for d in LONG_WINDOWS_DAYS),
    *(HistoryWindow(f"merchant_count_{d}d", "merchant", "count", d) for d in LONG_WINDOWS_DAYS),
    *(HistoryWindow(f"merchant_fraud_reports_{d}d", "merchant", "fraud_reports", d) for d in LONG_WINDOWS_DAYS),
    HistoryWindow("cust_country_count", "customer", "country_count", "lifetime"),
    HistoryWindow("cust_top_country_count", "customer", "top_country_count", "lifetime"),
    HistoryWindow("cust_total_count", "customer", "count", "lifetime"),
)


def _check(windows: tuple[HistoryWindow, ...]) -> None:
    """The combinations the store and the rebuild implement; anything else fails at import, not at serving."""
    for w in windows:
        if w.measure == "fraud_reports" and (w.entity != "merchant" or not isinstance(w.span, int)):
            raise ValueError(f"{w.name}: fraud reports are counted per merchant over whole days")
        if w.measure in ("max", "std") and (w.span != "minute" or w.entity != "customer"):
            raise ValueError(f"{w.name}: max and std exist only for the customer's current minute")
        if w.span == "minute" and w.entity != "customer":
            raise ValueError(f"{w.name}: minute windows are the customer's current tile")
        if w.span == "lifetime" and (w.entity != "customer" or w.measure not in
                                     ("count", "country_count", "top_country_count")):
            raise ValueError(f"{w.name}: lifetime windows are the customer's country counts")
        if w.measure == "amount" and w.entity != "customer":
            raise ValueError(f"{w.name}: merchant tiles keep no amounts")
    names = [w.name for w in windows]
    if len(set(names)) != len(names):
        raise ValueError("history window names must be unique")


_check(HISTORY)
HISTORY_COLUMNS: tuple[str, ...] = tuple(w.name for w in HISTORY)
WINDOW_OF: dict[str, HistoryWindow] = {w.name: w for w in HISTORY}


_NAME_OF_KIND = {(w.entity, w.measure, w.span): w.name for w in HISTORY}


def window(entity: Entity, measure: HistoryMeasure, span: Span) -> str:
    """The name of the declared window of this kind (KeyError naming the kind when none is declared)."""
    try:
        return _NAME_OF_KIND[(entity, measure, span)]
    except KeyError:
        raise KeyError(f"no history window declared for {entity} {measure} over {span}") from None


def day_spans(entity: Entity, measure: HistoryMeasure) -> tuple[int, ...]:
    """The day spans declared for windows of this kind, in declaration order."""
    return tuple(w.span for w in HISTORY if isinstance(w.span, int) and (w.entity, w.measure) == (entity, measure))


def history_span() -> int:
    """Whole days of earlier transactions the day-span windows of HISTORY reach back from a transaction: the longest
    span plus a day, for the current minute's tile a span starts at. Training reads this much history before its
    period; lifetime windows reach further and are counted from the store's own totals (app.point_in_time, ``counts
    before the snapshot``), and fraud reports are read by their report time, however old their transaction."""
    return max(w.span for w in HISTORY if isinstance(w.span, int)) + 1
