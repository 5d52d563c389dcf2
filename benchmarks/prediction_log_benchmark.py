"""What logging the model inputs with every prediction costs, against the alternative of recomputing them.

Drift (`riskray drift`) needs the inputs each prediction was answered with. Two ways to have them:

* **log** them (what riskray does): the request path keeps a reference to its batch's input arrays
  (``BatchInputs.of``: one column stack per scored batch); the prediction log's writer thread formats them and
  COPYs them with the row;
* **recompute** them in the drift job, point-in-time from the stored transactions with the same feature code
  (``app.point_in_time``): nothing on the serving path, but the job rebuilds the history of every predicted
  transaction (and degraded answers or client-supplied window values are lost).

Side by side in one run, medians of ``--rounds``:

1. request path: ``BatchInputs.of`` per scored batch of 1 and of 32 (µs);
2. writer thread: rows/s of building the COPY text and COPYing it into a scratch ``predictions`` table, with the
   inputs and without (the ratio is the logging cost off the request path);
3. recompute: rows/s of rebuilding the inputs of a day's predictions point-in-time from 45 days of history.

    python benchmarks/prediction_log_benchmark.py [--rows 20000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import io
import statistics
import time
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd

from app import db
from app.config import get_settings
from app.model_inputs import FEATURE_SET, model_inputs, raw_columns
from app.point_in_time import history_frame
from benchmarks.bench_store import scratch_database
from serve_deployments.prediction_log import COLUMNS, BatchInputs, LoggedPrediction
from streaming.simulator import Simulator, SimulatorConfig

WORLD_END = datetime(2026, 11, 20, tzinfo=UTC)


def _world(days: int, customers: int) -> pd.DataFrame:
    simulator = Simulator(SimulatorConfig(seed=7, customers=customers, merchants=customers))
    frame = pd.concat(list(simulator.backfill(WORLD_END - timedelta(days=days), days)), ignore_index=True)
    frame["timestamp"] = frame["timestamp"].astype("datetime64[us, UTC]")
    return frame.sort_values("timestamp", ignore_index=True)


def _inputs(frame: pd.DataFrame) -> dict[str, np.ndarray]:
    history = history_frame(frame, 7)
    return model_inputs(raw_columns(frame), {c: history[c].to_numpy() for c in history.columns})


def request_path_us(inputs: dict[str, np.ndarray], batch: int, repeats: int = 2000) -> float:
    part = {k: v[:batch] for k, v in inputs.items()}
    started = time.perf_counter()
    for _ in range(repeats):
        BatchInputs.of(part, FEATURE_SET)
    return (time.perf_counter() - started) / repeats * 1e6


def writer_rows_per_s(settings, inputs: dict[str, np.ndarray], rows: int, with_inputs: bool) -> float:  # type: ignore[no-untyped-def]
    now = datetime.now(UTC)
    batches = [BatchInputs.of({k: v[i:i + 32] for k, v in inputs.items()}, FEATURE_SET) for i in range(0, rows, 32)]
    logged = [LoggedPrediction(None, 1 + i, 1, "1", "champion", 0.01, 0, 1.0, False, now, now,
                               batches[i // 32] if with_inputs else None, i % 32) for i in range(rows)]
    columns = COLUMNS if with_inputs else COLUMNS[:-3]
    started = time.perf_counter()
    text = "".join(row.csv_line() if with_inputs else row.csv_line().rsplit(",", 3)[0] + "\n" for row in logged)
    with db.connection(settings) as conn, conn.cursor() as cur:
        cur.copy_expert(f"COPY predictions ({', '.join(columns)}) FROM STDIN WITH (FORMAT csv)", io.StringIO(text))
    seconds = time.perf_counter() - started
    with db.connection(settings) as conn, conn.cursor() as cur:
        cur.execute("TRUNCATE predictions")
    return rows / seconds


def recompute_rows_per_s(history: pd.DataFrame, day: pd.DataFrame) -> float:
    started = time.perf_counter()
    _inputs(pd.concat([history, day], ignore_index=True))
    return len(day) / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    settings = scratch_database(get_settings(), "riskray_bench_prediction_log")
    frame = _world(46, 2_000)
    inputs = _inputs(frame.tail(args.rows).reset_index(drop=True))
    cut = pd.Timestamp(WORLD_END - timedelta(days=1))
    history, day = frame[frame["timestamp"] < cut], frame[frame["timestamp"] >= cut]
    results: dict[str, list[float]] = {k: [] for k in ("of_1", "of_32", "with", "without", "recompute")}
    for round_ in range(args.rounds):
        results["of_1"].append(request_path_us(inputs, 1))
        results["of_32"].append(request_path_us(inputs, 32))
        results["with"].append(writer_rows_per_s(settings, inputs, args.rows, True))
        results["without"].append(writer_rows_per_s(settings, inputs, args.rows, False))
        results["recompute"].append(recompute_rows_per_s(history, day))
        print(f"round {round_ + 1}/{args.rounds} done", flush=True)
    m = {k: statistics.median(v) for k, v in results.items()}
    print(f"\n| path | median of {args.rounds} |\n| --- | ---: |")
    print(f"| request path: BatchInputs.of, batch of 1 | {m['of_1']:.1f} µs |")
    print(f"| request path: BatchInputs.of, batch of 32 | {m['of_32']:.1f} µs (per batch) |")
    print(f"| writer: format + COPY without inputs | {m['without']:,.0f} rows/s |")
    print(f"| writer: format + COPY with inputs | {m['with']:,.0f} rows/s |")
    print(f"| recompute point-in-time (a day of {len(day):,} predictions on {len(history):,} rows of history) | "
          f"{m['recompute']:,.0f} rows/s |")
    print(f"\nwriter with/without inputs: {m['with'] / m['without']:.2f}x the rows/s; "
          f"recompute/log-writer: {m['recompute'] / m['with']:.2f}x")


if __name__ == "__main__":
    main()
