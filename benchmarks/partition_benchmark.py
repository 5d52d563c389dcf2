"""What the day partitions of ``transactions`` and ``predictions`` (migration 0013) cost and save, side by side.

Two scratch stores on the local stack's server, one at revision 0012 (one table each) and one at head (a partition
per day, made by ``app.partitions.maintain`` as the nightly run would), hold the same ``--days`` of history
(``--rows-per-day`` transactions and as many predictions a day). Rounds alternate between them; medians of
``--rounds``:

- stream insert: the raw writer's batch (``streaming.store_writer.insert_transactions``: COPY into a temporary
  table, INSERT ... ON CONFLICT into ``transactions``, the country counts and the rows' tiles), ``--batch`` rows of
  today;
- prediction log: a COPY of 1,000 answers into ``predictions`` (the serving replicas' writer);
- label lookup: is each of 1,000 labelled transactions stored (the labels writer's ``NOT EXISTS`` by id, which
  probes every day's index: the cost that grows with the days kept);
- card history: 1,000 cards' transactions of the last 30 days (training's point-in-time rebuild reads by card);
- a day's answers: the predictions of one day joined to their transactions (the monitoring job's read);
- retention: dropping the oldest day (DROP TABLE of its partition against DELETE of its rows).

Serving's feature read touches neither table (tiles and country counts: ``app.feature_store``), so it is not here.

    python benchmarks/partition_benchmark.py [--days 60] [--rows-per-day 20000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import hashlib
import io
import statistics
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import psycopg2
from psycopg2 import sql
from rich.console import Console
from rich.table import Table

from app import db, partitions
from app.config import Settings, get_settings
from benchmarks.bench_store import scratch_database
from streaming import store_writer

CUSTOMERS = 20_000
NOW = datetime.now(UTC).replace(hour=12, minute=0, second=0, microsecond=0)


def _fill(settings: Settings, days: int, per_day: int) -> None:
    """The same deterministic history in either store (ids from a hash of the row number)."""
    params = {"start": NOW - timedelta(days=days), "rows": days * per_day, "step": 86_400.0 / per_day,
              "customers": CUSTOMERS}
    with db.connection(settings) as conn, conn.cursor() as cur:
        cur.execute("""
            INSERT INTO transactions (transaction_id, customer_id, merchant_id, amount, currency, event_time,
                                      card_last_4, is_fraud, country, device_type)
            SELECT md5(i::text)::uuid, 1 + i %% %(customers)s, 1 + i %% 997, 5 + i %% 200, 'USD',
                   %(start)s + i * %(step)s * interval '1 second', '1234', (i %% 500 = 0)::int, 'DE', 'web'
            FROM generate_series(0, %(rows)s - 1) i""", params)
        cur.execute("""
            INSERT INTO predictions (transaction_id, customer_id, merchant_id, model_version, fraud_probability,
                                     is_fraud, latency_ms, predicted_at, event_time)
            SELECT md5(i::text)::uuid, 1 + i %% %(customers)s, 1 + i %% 997, '1', (i %% 100) / 100.0, 0, 3.0,
                   %(start)s + i * %(step)s * interval '1 second' + interval '50 milliseconds',
                   %(start)s + i * %(step)s * interval '1 second'
            FROM generate_series(0, %(rows)s - 1) i""", params)
    vacuum = psycopg2.connect(settings.postgres_dsn())
    vacuum.autocommit = True
    with vacuum.cursor() as cur:
        cur.execute("VACUUM (ANALYZE) transactions, predictions")
    vacuum.close()


def _batch(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({
        "transaction_id": [str(uuid.UUID(int=int(x))) for x in rng.integers(1, 2**62, n)],
        "customer_id": rng.integers(1, CUSTOMERS, n), "merchant_id": rng.integers(1, 997, n),
        "amount": rng.uniform(5, 200, n).round(2), "currency": "USD",
        "event_time": pd.Timestamp(NOW) + pd.to_timedelta(rng.uniform(0, 3600, n), unit="s"),
        "card_last_4": "1234", "is_fraud": pd.array([pd.NA] * n, dtype="Int64"), "country": "DE",
        "device_type": "web", "kafka_partition": 0, "kafka_offset": np.arange(n), "is_late": False})


def _timed(settings: Settings, work: Callable[[psycopg2.extensions.cursor], None], keep: bool = False) -> float:
    """Seconds of ``work`` in one database transaction, rolled back unless ``keep`` (each round sees the same
    store)."""
    with db.connection(settings) as conn, conn.cursor() as cur:
        started = time.perf_counter()
        work(cur)
        elapsed = time.perf_counter() - started
        if not keep:
            conn.rollback()
    return elapsed


def _ids(days: int, per_day: int, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    return [str(uuid.UUID(hex=hashlib.md5(str(i).encode()).hexdigest())) for i in rng.integers(0, days * per_day, 1000)]


def measure(settings: Settings, days: int, per_day: int, batch: int, seed: int) -> dict[str, float]:
    rows = _batch(batch, seed)
    answers = io.StringIO("".join(f"{1 + i % CUSTOMERS},1,0.25,0,3.0,{NOW.isoformat()}\n" for i in range(1000)))
    ids = _ids(days, per_day, seed)
    cards = [int(c) for c in np.random.default_rng(seed).integers(1, CUSTOMERS, 1000)]
    day = (NOW - timedelta(days=days // 2)).replace(hour=0)

    def copy_answers(cur: psycopg2.extensions.cursor) -> None:
        answers.seek(0)
        cur.copy_expert("COPY predictions (customer_id, model_version, fraud_probability, is_fraud, latency_ms, "
                        "predicted_at) FROM STDIN WITH (FORMAT csv)", answers)

    return {
        "stream insert (ms per batch)": 1000 * _timed(
            settings, lambda cur: store_writer.insert_transactions(cur, rows, tiles=True)),
        "prediction log COPY of 1,000 (ms)": 1000 * _timed(settings, copy_answers),
        "label lookup of 1,000 ids (ms)": 1000 * _timed(settings, lambda cur: cur.execute(
            "SELECT count(*) FROM unnest(%s::uuid[]) l(id) WHERE EXISTS "
            "(SELECT 1 FROM transactions t WHERE t.transaction_id = l.id)", (ids,))),
        "1,000 cards' last 30 days (ms)": 1000 * _timed(settings, lambda cur: cur.execute(
            "SELECT count(*), sum(amount) FROM transactions WHERE customer_id = ANY(%s) AND event_time >= %s",
            (cards, NOW - timedelta(days=30)))),
        "a day's answers with their transactions (ms)": 1000 * _timed(settings, lambda cur: cur.execute(
            "SELECT count(*), avg(p.fraud_probability) FROM predictions p JOIN transactions t "
            "ON t.transaction_id = p.transaction_id WHERE p.predicted_at >= %s AND p.predicted_at < %s",
            (day, day + timedelta(days=1)))),
    }


def expire_oldest_day(settings: Settings, partitioned: bool) -> float:
    """Seconds to remove the oldest day of transactions: its partition dropped, or its rows deleted."""
    with db.connection(settings) as conn, conn.cursor() as cur:
        cur.execute("SELECT min(event_time) FROM transactions")
        oldest = cur.fetchone()[0].astimezone(UTC).date()
    start = datetime.combine(oldest, datetime.min.time(), UTC)
    if partitioned:
        day = sql.Identifier(f"transactions_{oldest:%Y%m%d}")
        return _timed(settings, lambda cur: cur.execute(sql.SQL("DROP TABLE {}").format(day)), keep=True)
    return _timed(settings, lambda cur: cur.execute(
        "DELETE FROM transactions WHERE event_time >= %s AND event_time < %s",
        (start, start + timedelta(days=1))), keep=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--days", type=int, default=60)
    parser.add_argument("--rows-per-day", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=10_000, help="rows of a stream batch")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    settings = get_settings()
    stores = {"one table (0012)": scratch_database(settings, "riskray_bench_unpartitioned", "0012"),
              "day partitions": scratch_database(settings, "riskray_bench_partitioned")}
    for name, store in stores.items():
        started = time.monotonic()
        if name == "day partitions":  # the days of the history and ahead, as the nightly maintenance makes them
            for back in range(args.days + 1, -1, -1):
                partitions.maintain(store, NOW - timedelta(days=back))
        _fill(store, args.days, args.rows_per_day)
        print(f"{name}: {args.days * args.rows_per_day:,} transactions and predictions in "
              f"{time.monotonic() - started:.0f} s", flush=True)
    results: dict[str, dict[str, list[float]]] = {name: {} for name in stores}
    for round_ in range(args.rounds):
        for name, store in stores.items():
            for what, value in measure(store, args.days, args.rows_per_day, args.batch, seed=round_).items():
                results[name].setdefault(what, []).append(value)
        print(f"round {round_ + 1} of {args.rounds} done", flush=True)
    expiry = {name: 1000 * expire_oldest_day(store, name == "day partitions") for name, store in stores.items()}

    table = Table(title=f"day partitions vs one table: {args.days} days x {args.rows_per_day:,} rows, medians of "
                        f"{args.rounds} rounds")
    base, parts = stores
    table.add_column("operation")
    table.add_column(base, justify="right")
    table.add_column(parts, justify="right")
    table.add_column("partitions / one table", justify="right")
    for what in results[base]:
        a, b = statistics.median(results[base][what]), statistics.median(results[parts][what])
        table.add_row(what, f"{a:,.1f}", f"{b:,.1f}", f"{b / a:.2f}x")
    table.add_row("expire the oldest day (ms, once)", f"{expiry[base]:,.1f}", f"{expiry[parts]:,.1f}",
                  f"{expiry[parts] / expiry[base]:.3f}x")
    Console(width=140).print(table)


if __name__ == "__main__":
    main()
