"""Point-in-time history of every transaction, rebuilt from raw transactions for training and batch scoring.

Each row's history (``app.model_inputs.HISTORY_COLUMNS``) is computed exactly as the online store would have
answered at the transaction's event time: 1-minute tiles per customer and merchant, sums of tiles over the
long windows, the current minute's partial tile (only strictly earlier transactions), and the merchant's fraud
reports by report time, before the transaction's minute. Nothing from after the transaction, and never its own
label.

Vectorised with numpy: entities are ranked and combined with the minute into one sortable int64 key, so every
window bound is one ``searchsorted`` over all rows at once (1M rows in a few seconds).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from app.features import HISTORY, HISTORY_COLUMNS, TILE_TABLES, history_span
from app.labels import FRAUD_REPORT_COLUMNS, row_fraud_reports
from app.model_inputs import event_time_us, minute_std

MINUTE_US = 60_000_000
DAY_MINUTES = 1_440


def _exclusive_cumsum(values: np.ndarray) -> np.ndarray:
    out = np.zeros(len(values) + 1, dtype=np.float64)
    np.cumsum(values, out=out[1:])
    return out


def _run_starts(*keys: np.ndarray) -> np.ndarray:
    """For arrays sorted by ``keys``, the index where each row's run of equal keys begins."""
    n = len(keys[0])
    new_run = np.ones(n, dtype=bool)
    if n:
        changed = np.zeros(n - 1, dtype=bool)
        for key in keys:
            changed |= key[1:] != key[:-1]
        new_run[1:] = changed
    starts = np.where(new_run, np.arange(n), 0)
    return np.maximum.accumulate(starts) if n else starts


class _Tiles:
    """1-minute tiles of one entity (count, sums), sorted by (entity, minute), with prefix sums for range sums."""

    def __init__(self, entity_rank: np.ndarray, minute: np.ndarray, span: int, values: dict[str, np.ndarray]):
        self.span = span
        key = entity_rank * span + minute
        order = np.argsort(key, kind="stable")
        key = key[order]
        starts = np.flatnonzero(np.r_[True, key[1:] != key[:-1]]) if len(key) else np.zeros(0, dtype=np.int64)
        self.keys = key[starts]
        self.prefix = {}
        for name, column in values.items():
            sums = np.add.reduceat(column[order], starts) if len(key) else np.zeros(0)
            self.prefix[name] = _exclusive_cumsum(sums)

    def range_sum(self, name: str, entity_rank: np.ndarray, first_minute: np.ndarray, end_minute: np.ndarray):
        """Sum of ``name`` over the entity's tiles with first_minute <= minute < end_minute."""
        lo = np.searchsorted(self.keys, entity_rank * self.span + first_minute, side="left")
        hi = np.searchsorted(self.keys, entity_rank * self.span + end_minute, side="left")
        prefix = self.prefix[name]
        return prefix[hi] - prefix[lo]


def _partial_minute(entity: np.ndarray, minute: np.ndarray, t_us: np.ndarray,
                    values: dict[str, np.ndarray], maxima: tuple[str, ...] = ()) -> dict[str, np.ndarray]:
    """Per row: sums (and maxima) over the same entity's strictly earlier rows in the same clock minute."""
    order = np.lexsort((t_us, minute, entity))
    e, m, t = entity[order], minute[order], t_us[order]
    tile_start = _run_starts(e, m)
    first_tied = _run_starts(e, m, t)  # rows at the very same instant do not see each other
    out = {"count": (first_tied - tile_start).astype(np.float64)}
    for name, column in values.items():
        prefix = _exclusive_cumsum(column[order])
        out[name] = prefix[first_tied] - prefix[tile_start]
    for name in maxima:
        running = pd.Series(values[name][order]).groupby(tile_start).cummax().to_numpy()
        previous = running[np.maximum(first_tied - 1, 0)]
        out[f"{name}_max"] = np.where(first_tied > tile_start, previous, np.nan)
    result = {}
    for name, column in out.items():
        unsorted = np.empty_like(column)
        unsorted[order] = column
        result[name] = unsorted
    return result


# The customer's country counts are lifetime windows: serving reads the store's all-time totals, which reach back
# before any training snapshot. A snapshot that starts after a customer's first transactions therefore carries,
# per row, the customer's counts from before it (training.data reads them from the store); without these columns
# the snapshot is taken to hold the whole history (a file of transactions).
COUNTS_BEFORE_SNAPSHOT: dict[str, str] = {
    "country_count": "country_count_before_snapshot",  # the customer's transactions in this row's country
    "top_country_count": "top_country_count_before_snapshot",  # ... in its most used country
    "count": "count_before_snapshot",  # ... in all countries
}


def with_counts_before(transactions: pd.DataFrame, counts: pd.DataFrame) -> pd.DataFrame:
    """``transactions`` with the COUNTS_BEFORE_SNAPSHOT columns, from ``counts`` (customer_id, country,
    transaction_count): each customer's transactions per country that are earlier than every row of the snapshot
    and not in it."""
    customers = transactions["customer_id"].to_numpy(dtype=np.int64)
    by_customer = counts.groupby("customer_id")["transaction_count"].agg(["max", "sum"])
    own = counts.set_index(["customer_id", "country"])["transaction_count"]
    keys = pd.MultiIndex.from_arrays([customers, transactions["country"].to_numpy(dtype=object)])
    return transactions.assign(**{
        COUNTS_BEFORE_SNAPSHOT["country_count"]: own.reindex(keys).fillna(0).to_numpy(dtype=np.float64),
        COUNTS_BEFORE_SNAPSHOT["top_country_count"]: by_customer["max"].reindex(customers).fillna(0).to_numpy(
            dtype=np.float64),
        COUNTS_BEFORE_SNAPSHOT["count"]: by_customer["sum"].reindex(customers).fillna(0).to_numpy(dtype=np.float64),
    })


def _country_counts(customer: np.ndarray, country: np.ndarray, t_us: np.ndarray,
                    before: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Earlier transactions of the customer (by lifetime measure): in this country, in its most used country,
    in total; ``before``: the same counts from before the snapshot, per row."""
    n = len(customer)
    country_code = pd.factorize(country)[0]
    by_country = np.lexsort((t_us, country_code, customer))
    same = _run_starts(customer[by_country], country_code[by_country])
    tied = _run_starts(customer[by_country], country_code[by_country], t_us[by_country])
    country_count = np.empty(n, dtype=np.float64)
    country_count[by_country] = tied - same + before["country_count"][by_country]
    # the country's count *including* each row and the rows at its very instant (the end of its tied run)
    _, run, run_length = np.unique(tied, return_inverse=True, return_counts=True)
    including = np.empty(n, dtype=np.float64)
    including[by_country] = tied + run_length[run] - same + before["country_count"][by_country]

    by_time = np.lexsort((t_us, customer))
    c_sorted = customer[by_time]
    start = _run_starts(c_sorted)
    first_tied = _run_starts(c_sorted, t_us[by_time])
    total = np.empty(n, dtype=np.float64)
    total[by_time] = first_tied - start + before["count"][by_time]
    # carried forward in time, the row before a transaction's instant holds the top count of everything earlier
    running_top = pd.Series(including[by_time]).groupby(start).cummax().to_numpy()
    top_sorted = np.where(first_tied > start, running_top[np.maximum(first_tied - 1, 0)], 0.0)
    top = np.empty(n, dtype=np.float64)
    top[by_time] = np.maximum(top_sorted, before["top_country_count"][by_time])
    return {"country_count": country_count, "top_country_count": top, "count": total}


def _report_tiles(reports: pd.DataFrame, merchants: np.ndarray, base: int, span: int) -> tuple[_Tiles, int]:
    """The fraud reports as 1-minute tiles of a count per merchant (ranked as ``merchants`` are, sorted unique),
    minutes relative to ``base``; reports of other merchants or outside [base, base + span) cannot matter."""
    merchant = reports[FRAUD_REPORT_COLUMNS[0]].to_numpy(dtype=np.int64)
    minute = event_time_us(pd.to_datetime(reports[FRAUD_REPORT_COLUMNS[1]], utc=True).dt.tz_convert(None)
                           .to_numpy(dtype="datetime64[us]")) // MINUTE_US - base
    rank = np.searchsorted(merchants, merchant)
    known = (rank < len(merchants)) & (merchants[np.minimum(rank, len(merchants) - 1)] == merchant) & (
        minute >= 0) & (minute < span)
    return _Tiles(rank[known], minute[known], span, {"fraud_reports": np.ones(int(known.sum()))}), int(known.sum())


def history_frame(transactions: pd.DataFrame, label_delay_days: int,
                  fraud_reports: pd.DataFrame | None = None) -> pd.DataFrame:
    """HISTORY_COLUMNS for every row of ``transactions`` (the Kafka message columns, and the
    COUNTS_BEFORE_SNAPSHOT columns when it does not start at the customers' first transactions), in the same order:
    each declared window of app.features.HISTORY rebuilt as the store would have answered at the row's event
    time. ``fraud_reports``: the first fraud report of every transaction the windows may count
    (FRAUD_REPORT_COLUMNS, from the store, older transactions' included); None: the labels inside the rows are the
    only ones (a file, a simulated world), reported the label delay after each transaction."""
    if fraud_reports is None:
        fraud_reports = row_fraud_reports(transactions, label_delay_days)
    t_us = event_time_us(transactions["timestamp"].to_numpy(dtype="datetime64[us]"))
    minute = t_us // MINUTE_US
    amount = transactions["amount"].to_numpy(dtype=np.float64)
    measures = {"count": np.ones(len(transactions)), "amount": amount}
    ids = {entity: transactions[key].to_numpy(dtype=np.int64) for entity, (_, key) in TILE_TABLES.items()}

    margin = history_span() * DAY_MINUTES
    base = (int(minute.min()) if len(minute) else 0) - margin
    rel_minute = minute - base  # >= margin, so every window bound stays >= 0 and inside its entity's key range
    span = int(rel_minute.max() if len(minute) else 0) + margin + 1

    partial: dict[str, dict[str, np.ndarray]] = {}  # per entity: its earlier rows in the same minute
    tiles: dict[str, _Tiles] = {}
    ranks: dict[str, np.ndarray] = {}
    for entity in ids:
        windows = [w for w in HISTORY if w.entity == entity and w.span != "lifetime"]
        if not windows:
            continue
        summed = {w.measure for w in windows if w.measure in measures}
        partial_windows = [w for w in windows if w.measure in measures or w.measure in ("max", "std")]
        if partial_windows:  # these add the current minute's partial tile
            wanted = {w.measure: measures[w.measure] for w in partial_windows
                      if w.measure in measures and w.measure != "count"}
            maxima: tuple[str, ...] = ()
            if any(w.measure in ("max", "std") for w in windows):
                wanted |= {"amount": amount, "amount_sq": amount * amount}
                maxima = ("amount",)
            partial[entity] = _partial_minute(ids[entity], minute, t_us, wanted, maxima=maxima)
        ranks[entity] = pd.factorize(ids[entity], sort=True)[0].astype(np.int64)
        tiles[entity] = _Tiles(ranks[entity], rel_minute, span, {m: measures[m] for m in summed})

    countries = None
    reports: _Tiles | None = None
    out: dict[str, np.ndarray] = {}
    for w in HISTORY:
        if w.span == "minute":
            p = partial[w.entity]
            out[w.name] = {"count": lambda p=p: p["count"], "amount": lambda p=p: p["amount"],
                           "max": lambda p=p: p["amount_max"],
                           "std": lambda p=p: minute_std(p["count"], p["amount"], p["amount_sq"])}[w.measure]()
        elif w.span == "lifetime":
            if countries is None:
                before = {m: transactions[c].to_numpy(dtype=np.float64) if c in transactions.columns
                          else np.zeros(len(transactions)) for m, c in COUNTS_BEFORE_SNAPSHOT.items()}
                countries = _country_counts(ids["customer"], transactions["country"].to_numpy(dtype=object), t_us,
                                            before)
            out[w.name] = countries[w.measure]
        elif w.measure == "fraud_reports":  # by report time, the tiles before the transaction's minute
            if reports is None:
                merchants = np.unique(ids[w.entity])
                reports, _ = _report_tiles(fraud_reports, merchants, base, span)
            rank = np.searchsorted(merchants, ids[w.entity])
            out[w.name] = reports.range_sum("fraud_reports", rank, rel_minute - w.span * DAY_MINUTES, rel_minute)
        else:
            value = tiles[w.entity].range_sum(w.measure, ranks[w.entity], rel_minute - w.span * DAY_MINUTES,
                                              rel_minute)
            out[w.name] = value + partial[w.entity][w.measure]  # the partial tile: the strictly earlier rows
    return pd.DataFrame({name: out[name] for name in HISTORY_COLUMNS}, index=transactions.index)
