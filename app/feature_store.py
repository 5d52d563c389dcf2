"""Online reads of the feature store: each transaction's history (``app.model_inputs.HISTORY_COLUMNS``) as of
its event time, from the stream's 1-minute tiles and the customer country counts.

One query answers a whole batch of transactions: per transaction four primary-key probes of ``features``, four of
``merchant_features`` and four of ``merchant_fraud_reports`` (windows are differences of the tiles' running totals,
so a read costs the same however many tiles a card or a merchant has) and one primary-key read of
``customer_countries`` — never a scan of tiles or of raw transactions. The window semantics are those
of ``app.model_inputs`` (``app.point_in_time`` rebuilds the same values from raw transactions for training).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime

import numpy as np
import psycopg2.extensions

from app.features import HISTORY, HISTORY_COLUMNS, TILE_TABLES, HistoryWindow

# Windows come from the tiles' running totals (migrations 0005, 0009): the sum over an entity's tiles in [a, b] is
# its total through the last tile <= b less its total before the first tile >= a — two primary-key probes whatever
# the entity's traffic — and zero when no tile falls inside. Running total '<measure>_through' adds up tile column:
TOTALS = {"count": "transaction_count", "amount": "amount_sum", "fraud_reports": "fraud_reports"}
# fraud reports have tiles of their own (by report time, written with the reports), read up to the minute before
REPORT_TILES = ("merchant_fraud_reports", "merchant_id")
# the current minute's values, straight from the tile that starts at floor(t)
MINUTE_COLUMNS = {"count": "transaction_count", "amount": "amount_sum", "max": "max_amount", "std": "amount_std"}
COUNTRY_SQL = {
    "count": "sum(transaction_count)",
    "country_count": "sum(transaction_count) FILTER (WHERE cc.country = r.country)",
    "top_country_count": "max(transaction_count)",
}


def _last_tile(table: str, key: str, alias: str, bound: str, columns: tuple[str, ...]) -> str:
    return (f"LEFT JOIN LATERAL (SELECT window_start, {', '.join(columns)} FROM {table} WHERE {key} = r.{key} "
            f"AND window_start {bound} ORDER BY window_start DESC LIMIT 1) {alias} ON true")


def _first_tile(table: str, key: str, alias: str, since: str, totals: tuple[str, ...]) -> str:
    before = ", ".join(f"{t}_through - {TOTALS[t]} AS {t}_before" for t in totals)
    return (f"LEFT JOIN LATERAL (SELECT {before} FROM {table} WHERE {key} = r.{key} AND window_start >= {since} "
            f"ORDER BY window_start LIMIT 1) {alias} ON true")


def _window(last: str, first: str, since: str, total: str) -> str:
    return f"CASE WHEN {last}.window_start >= {since} THEN {last}.{total}_through - {first}.{total}_before ELSE 0 END"


def _value(expression: str, window: HistoryWindow) -> str:
    """The window's SQL value, its empty default where the store has nothing (NULL where that is NaN)."""
    if window.empty != window.empty:  # NaN: NULL reads back as NaN
        return f"{expression} AS {window.name}"
    return f"coalesce({expression}, {window.empty:g}) AS {window.name}"  # '0', not '0.0': no cast to numeric


def _since(span: int) -> str:
    return f"r.since_{span}"


def _tile_lateral(entity: str, windows: list[HistoryWindow]) -> str:
    """One entity's windows: a last-tile probe and a first-tile probe per span, from the entity's tile table up to
    this minute, and from the fraud reports' tiles up to the minute before."""
    values, probes = [], []
    for reports in (False, True):
        table, key = REPORT_TILES if reports else TILE_TABLES[entity]  # type: ignore[index]
        spanned = [w for w in windows if isinstance(w.span, int) and (w.measure == "fraud_reports") == reports]
        minute = [w for w in windows if w.span == "minute"] if not reports else []
        if not spanned and not minute:
            continue
        last = f"{entity[0]}_upto_{'reports' if reports else 'now'}"
        totals = tuple(dict.fromkeys(w.measure for w in spanned))
        minute_columns = tuple(dict.fromkeys(MINUTE_COLUMNS[w.measure] for w in minute))
        bound = "< r.floor" if reports else "<= r.floor"
        probes.append(_last_tile(table, key, last, bound, (*(f"{t}_through" for t in totals), *minute_columns)))
        for span in dict.fromkeys(w.span for w in spanned):
            span_totals = tuple(dict.fromkeys(w.measure for w in spanned if w.span == span))
            probes.append(_first_tile(table, key, f"{last}_from_{span}", _since(span), span_totals))  # type: ignore[arg-type]
        for w in minute:
            values.append((w, f"CASE WHEN {last}.window_start = r.floor THEN {last}.{MINUTE_COLUMNS[w.measure]} END"))
        for w in spanned:
            values.append((w, _window(last, f"{last}_from_{w.span}", _since(w.span), w.measure)))  # type: ignore[arg-type]
    order = {w.name: i for i, w in enumerate(windows)}
    listed = ", ".join(_value(expression, w) for w, expression in sorted(values, key=lambda v: order[v[0].name]))
    return f"SELECT {listed} FROM (SELECT) one {' '.join(probes)}"


def _country_lateral(windows: list[HistoryWindow]) -> str:
    listed = ", ".join(_value(COUNTRY_SQL[w.measure], w) for w in windows)
    return f"SELECT {listed} FROM customer_countries cc WHERE cc.customer_id = r.customer_id"


def _history_sql(customer_ids: str, merchant_ids: str, country_codes: str, times: str) -> str:
    """The history query of app.features.HISTORY: one row per transaction, HISTORY_COLUMNS by name."""
    # Window bounds are computed once per transaction in ``r`` (MATERIALIZED, so the planner does not inline them
    # back into every tile row's FILTER): half the cost of a read, which the per-tile interval arithmetic was.
    spans = dict.fromkeys(w.span for w in HISTORY if isinstance(w.span, int))
    floor = "date_trunc('minute', q.t)"
    bounds = [f"{floor} AS floor", *(f"{floor} - interval '{span} days' AS {_since(span)[2:]}" for span in spans)]
    laterals = []
    for entity in ("customer", "merchant"):
        tiled = [w for w in HISTORY if w.entity == entity and w.span != "lifetime"]
        if tiled:
            laterals.append(f"CROSS JOIN LATERAL ({_tile_lateral(entity, tiled)}) {entity}_tiles")
    lifetime = [w for w in HISTORY if w.span == "lifetime"]
    if lifetime:
        laterals.append(f"CROSS JOIN LATERAL ({_country_lateral(lifetime)}) countries")
    return f"""
        WITH r AS MATERIALIZED (
            SELECT q.*, {', '.join(bounds)}
            FROM unnest({customer_ids}::bigint[], {merchant_ids}::bigint[], {country_codes}::text[],
                        {times}::timestamptz[]) WITH ORDINALITY AS q(customer_id, merchant_id, country, t, i)
        )
        SELECT {', '.join(HISTORY_COLUMNS)} FROM r
        {' '.join(laterals)}
        ORDER BY r.i
    """


_HISTORY_SQL = _history_sql("%(customer)s", "%(merchant)s", "%(country)s", "%(t)s")
PREPARED = "riskray_history"
_PREPARE_SQL = (f"PREPARE {PREPARED} (bigint[], bigint[], text[], timestamptz[]) AS "
                + _history_sql("$1", "$2", "$3", "$4"))


def prepare_history(cur: psycopg2.extensions.cursor, timeout_ms: int | None = None) -> None:
    """Prepare the history query on this connection: planning the query costs ~2 ms, more than running it.
    ``timeout_ms``: a statement timeout for the PREPARE only, sent in the same query as for a read."""
    prefix = "" if timeout_ms is None else f"SET LOCAL statement_timeout = {int(timeout_ms)}; "
    cur.execute(prefix + _PREPARE_SQL)


def _array_literal(items: Iterable[object]) -> str:
    """A PostgreSQL array literal ('{1,2,3}') sent as one string: psycopg2 renders a Python list as ARRAY[...] of
    one cast literal per element, slower to build and to parse (a 1,000-row read: 28 -> 22 ms)."""
    return "{" + ",".join(map(str, items)) + "}"


def _quoted(text: str) -> str:
    """One text element of an array literal, quoted so that '', commas and braces stay data."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _id_or_null(entity: int | None) -> str:
    return "NULL" if entity is None else str(int(entity))


def history_matrix(cur: psycopg2.extensions.cursor, customer_ids: Sequence[int | None],
                   merchant_ids: Sequence[int | None], countries: Sequence[str], event_times: Sequence[datetime],
                   prepared: bool = False, timeout_ms: int | None = None) -> np.ndarray:
    """HISTORY_COLUMNS for a batch of transactions, as the store knows them now: one float row per transaction,
    columns in HISTORY_COLUMNS order. A None id skips that entity's reads (its columns come back as no history).
    ``prepared``: the connection ran :func:`prepare_history` already.
    ``timeout_ms``: a statement timeout for this read only (``SET LOCAL``, sent in the same query: the caller's
    transaction ends it, or in autocommit the query's own implicit one)."""
    params = {"customer": _array_literal(_id_or_null(c) for c in customer_ids),
              "merchant": _array_literal(_id_or_null(m) for m in merchant_ids),
              "country": _array_literal(_quoted(c) for c in countries),
              "t": _array_literal(t.isoformat() for t in event_times), "timeout": int(timeout_ms or 0)}
    query = (f"EXECUTE {PREPARED} (%(customer)s, %(merchant)s, %(country)s, %(t)s)" if prepared
             else _HISTORY_SQL)
    if timeout_ms is not None:
        query = "SET LOCAL statement_timeout = %(timeout)s; " + query
    cur.execute(query, params)
    rows = cur.fetchall()
    return np.array(rows, dtype=np.float64).reshape(len(rows), len(HISTORY_COLUMNS))


def history_for(cur: psycopg2.extensions.cursor, customer_ids: Sequence[int], merchant_ids: Sequence[int],
                countries: Sequence[str], event_times: Sequence[datetime], prepared: bool = False
                ) -> dict[str, np.ndarray]:
    """:func:`history_matrix` as one float array per history column."""
    values = history_matrix(cur, customer_ids, merchant_ids, countries, event_times, prepared)
    return {name: values[:, i] for i, name in enumerate(HISTORY_COLUMNS)}
