"""Feature definitions, declared once as data.

The streaming job keeps 1-minute *tiles* per customer and per merchant; each tile column is declared here with
the aggregation that computes it. The Spark job builds its aggregation from these declarations, the migrations
hold the matching columns, and longer windows (1, 7, 30 days) are sums over tiles — which is why ``amount_sum``
is kept beside the mean.
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
    TileAggregate("fraud_count", "sum", "is_fraud", "labelled frauds; usable by models only after the label delay"),
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
