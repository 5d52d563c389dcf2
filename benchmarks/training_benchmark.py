"""Training benchmark: plain xgboost vs Ray Train V2, and Tune + 5-fold CV, on ~1M simulated transactions.

    .venv/bin/python benchmarks/training_benchmark.py --rows 1000000 --trials 8
    .venv/bin/python benchmarks/training_benchmark.py --rows 1000000 --per-round-report   # + the slow variant

Simulates the rows (seeded), builds point-in-time features with the project's code, splits by time (80/20) and
then, on the same matrix and the original design's parameters (100 rounds):
  * plain ``xgb.train`` in this process with 2 threads (the baseline),
  * Ray Train V2 ``XGBoostTrainer`` with 2 workers x 1 CPU, reporting once at the end (riskray's way),
  * optionally the same with Ray's ``RayTrainReportCallback`` reporting every round (the default way),
then Ray Tune with --trials trials of 5-fold stratified CV. Prints wall times, the Ray/plain ratio, peak memory
(this process, and all Ray worker processes together), and test AUC / AP / card precision@100 of the Ray Train
model. Joins the local stack's Ray head when it is up. Not a test: the machine is shared and noisy.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import psutil
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app.config import get_settings  # noqa: E402
from app.preprocessing import Preprocessor  # noqa: E402
from streaming.simulator import Simulator, SimulatorConfig  # noqa: E402
from training import data, evaluation  # noqa: E402
from training.model import (  # noqa: E402
    DEFAULT_PARAMS,
    DEFAULT_ROUNDS,
    POSITIVE_WEIGHT,
    base_params,
    fit_distributed,
    fit_plain,
    predict,
    tune_with_cv,
)
from training.pipeline import ensure_ray  # noqa: E402

console = Console(width=200)


class MemoryWatch:
    """Peak RSS of this process and of all Ray worker processes (``ray::`` in their title), sampled every 0.5 s."""

    def __init__(self) -> None:
        self.driver_peak = 0
        self.ray_peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        me = psutil.Process()
        while not self._stop.is_set():
            self.driver_peak = max(self.driver_peak, me.memory_info().rss)
            total = 0
            for process in psutil.process_iter(["name", "cmdline", "memory_info"]):
                try:
                    title = " ".join(process.info["cmdline"] or [])
                    if title.startswith("ray::") and process.info["memory_info"]:
                        total += process.info["memory_info"].rss
                except (psutil.Error, TypeError):
                    continue
            self.ray_peak = max(self.ray_peak, total)
            time.sleep(0.5)

    def __enter__(self) -> MemoryWatch:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


def simulate(rows: int, seed: int) -> pd.DataFrame:
    customers = 20_000
    config = SimulatorConfig(seed=seed, customers=customers, merchants=2_000)
    simulator = Simulator(config)
    per_day = simulator.world.customer_rate.sum()
    days = max(int(np.ceil(rows / per_day)), 1)
    frame = pd.concat(list(simulator.backfill(datetime(2026, 9, 1, tzinfo=UTC), days)), ignore_index=True)
    frame = frame.drop(columns="scenario").iloc[:rows]
    frame["timestamp"] = frame["timestamp"].astype("datetime64[us, UTC]")
    return data.check_transactions(frame, "simulation")


def per_round_report_fit(train: tuple[np.ndarray, np.ndarray], names: list[str], rounds: int, storage: Path) -> float:
    """Ray Train with Ray's own RayTrainReportCallback (a report every round), for the overhead comparison."""
    import ray
    import xgboost as xgb
    from ray.train import RunConfig, ScalingConfig
    from ray.train.xgboost import RayTrainReportCallback, XGBoostTrainer

    shards = [ray.put((train[0][i::2], train[1][i::2])) for i in range(2)]
    params = {**base_params(POSITIVE_WEIGHT, 1), **DEFAULT_PARAMS}

    def loop(config: dict) -> None:
        matrix, labels = ray.get(config["shards"][ray.train.get_context().get_world_rank()])
        dtrain = xgb.DMatrix(matrix, label=labels, feature_names=config["names"])
        # no evaluation set: what is timed is the report itself, not metric computation
        xgb.train(config["params"], dtrain, num_boost_round=config["rounds"],
                  callbacks=[RayTrainReportCallback()], verbose_eval=False)

    started = time.monotonic()
    XGBoostTrainer(loop, train_loop_config={"shards": shards, "params": params, "rounds": rounds, "names": names},
                   scaling_config=ScalingConfig(num_workers=2),
                   run_config=RunConfig(name=f"bench-per-round-{int(time.time())}", storage_path=str(storage))).fit()
    return time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--trials", type=int, default=8, help="0: no tuning, the fits only")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--per-round-report", action="store_true", help="also time Ray's per-round reporting")
    args = parser.parse_args()
    settings = get_settings()
    storage = Path(tempfile.mkdtemp(prefix="riskray-train-bench-"))
    results: list[tuple[str, str]] = []

    with MemoryWatch() as memory:
        started = time.monotonic()
        snapshot = simulate(args.rows, args.seed)
        console.print(f"simulated {len(snapshot):,} transactions, {int(snapshot['is_fraud'].sum()):,} frauds "
                      f"in {time.monotonic() - started:.1f} s")
        started = time.monotonic()
        examples = data.build_examples(data.with_row_labels(snapshot, settings, None), settings, None, None)
        features_s = time.monotonic() - started
        n = len(examples.frame)
        cut = int(n * 0.8)
        labels = examples.labels
        preprocessor = Preprocessor.fit(examples.inputs(slice(0, cut)))
        names = preprocessor.output_names
        train = (preprocessor.transform(examples.inputs(slice(0, cut))), labels[:cut])
        test_matrix, test_labels = preprocessor.transform(examples.inputs(slice(cut, n))), labels[cut:]
        console.print(f"point-in-time features: {n:,} rows x {len(names)} columns in {features_s:.1f} s")
        results.append(("point-in-time features + preprocessing", f"{features_s:.1f} s"))

        started = time.monotonic()
        plain = fit_plain(train, names, DEFAULT_PARAMS, DEFAULT_ROUNDS, threads=2)
        plain_s = time.monotonic() - started
        console.print(f"plain xgb.train: {plain_s:.1f} s")

        ensure_ray(settings)
        fit = fit_distributed(train, (test_matrix[:1], test_labels[:1]), names, DEFAULT_PARAMS, DEFAULT_ROUNDS,
                              workers=2, cpus_per_worker=settings.train_cpus_per_worker, storage=storage)
        console.print(f"Ray Train (2 workers, one report): {fit.seconds:.1f} s")
        warm = fit_distributed(train, (test_matrix[:1], test_labels[:1]), names, DEFAULT_PARAMS, DEFAULT_ROUNDS,
                               workers=2, cpus_per_worker=settings.train_cpus_per_worker, storage=storage)
        console.print(f"Ray Train again (worker processes warm): {warm.seconds:.1f} s")
        per_round_s = None
        if args.per_round_report:
            per_round_s = per_round_report_fit(train, names, DEFAULT_ROUNDS, storage)
            console.print(f"Ray Train with a report every round: {per_round_s:.1f} s")

        cv = None
        if args.trials:
            cv = tune_with_cv(train[0], train[1], names, trials=args.trials, folds=args.folds, max_concurrent=2,
                              storage=storage, seed=args.seed, cpus_per_trial=settings.train_cpus_per_worker)
            console.print(f"Tune: {cv.trials} trials x {args.folds}-fold CV in {cv.seconds:.1f} s")

    scores = predict(fit.booster, test_matrix)
    plain_scores = predict(plain, test_matrix)
    test_frame = examples.frame.iloc[cut:]
    ray_eval = evaluation.evaluate(test_frame, scores, 0.5).metrics
    plain_eval = evaluation.evaluate(test_frame, plain_scores, 0.5).metrics

    table = Table(title=f"Training on {n:,} rows ({cut:,} train / {n - cut:,} test), 100 rounds, depth 6")
    for column in ("what", "wall time", "ratio vs plain", "test AUC", "test AP", "CP@100"):
        table.add_column(column, justify="right" if column != "what" else "left")
    table.add_row("plain xgb.train, 2 threads", f"{plain_s:.1f} s", "1.00x", f"{plain_eval['roc_auc']:.4f}",
                  f"{plain_eval['average_precision']:.4f}", f"{plain_eval['card_precision_at_100']:.3f}")
    for label, seconds in (("Ray Train V2, 2 workers, report at end", fit.seconds),
                           ("  same, second fit in this driver", warm.seconds)):
        table.add_row(label, f"{seconds:.1f} s", f"{seconds / plain_s:.2f}x", f"{ray_eval['roc_auc']:.4f}",
                      f"{ray_eval['average_precision']:.4f}", f"{ray_eval['card_precision_at_100']:.3f}")
    if per_round_s is not None:
        table.add_row("Ray Train V2, RayTrainReportCallback (every round)", f"{per_round_s:.1f} s",
                      f"{per_round_s / plain_s:.2f}x", "", "", "")
    if cv is not None:
        table.add_row(f"Tune {cv.trials} trials x {args.folds}-fold CV (ASHA)", f"{cv.seconds:.1f} s", "", "", "",
                      "")
    console.print(table)
    if cv is not None:
        console.print(f"best CV config: AP {cv.aucpr_mean:.4f} ± {cv.aucpr_std:.4f}, AUC {cv.auc_mean:.4f} ± "
                      f"{cv.auc_std:.4f}, {cv.rounds} rounds, {cv.params}")
    console.print(f"peak RSS: this process {memory.driver_peak / 2**30:.2f} GiB, Ray workers together "
                  f"{memory.ray_peak / 2**30:.2f} GiB; features {features_s:.1f} s")
    console.print(f"Ray Train / plain: {fit.seconds / plain_s:.2f}x (second fit {warm.seconds / plain_s:.2f}x)"
                  + (f"; {cv.trials}-trial {args.folds}-fold tuning {cv.seconds:.0f} s (target < 600 s)" if cv else ""))


if __name__ == "__main__":
    main()
