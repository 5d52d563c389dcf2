"""Label maturity benchmark: what reading a training period's labels M days after it ends costs the model's AP.

    .venv/bin/python benchmarks/label_maturity.py                    # 5 seeds, ~4 minutes on 2 cores
    .venv/bin/python benchmarks/label_maturity.py --seeds 3 --customers 1000

Labels arrive late, as events (docs/labels.md). Training reads the labels of its period [U - train_days, U) as
known M days after U, its cut-off, and a transaction with no label by then counts as legitimate
(``app.labels.matured``). For each of --seeds pinned worlds (simulator seeds 1..N, a fixed start date):

  * the simulator backfills --days days (by default the features' look-back, ``training.data.history_days``, then
    the training period, then the test period, which ends the world);
  * ``streaming.label_delays.label_events`` (default delays) turns the truth into label events, and the rows lose
    their own label (``is_fraud`` NaN: a live world carries none), so the events are the only labels;
  * point-in-time features of the training and test periods come from one ``training.data.build_examples`` call
    over the whole world; they do not depend on the labels (the rows carry none), so they are built once per world
    and only the training labels change with M;
  * for each M, and for "final" (every event ever reported), the training labels are
    ``matured(known_in_frame(world, events, U + M days))``; the project's preprocessor is fitted on the training
    rows and plain ``xgb.train`` fits the original design's parameters (``training.model.fit_plain``:
    DEFAULT_PARAMS, 100 rounds, scale_pos_weight 1 since 2026-12-07 (negatives/positives before), 2 threads, seeded);
  * the test period [U, U + test_days) is scored and its average precision computed against the final labels
    (matured: a fraud nobody ever reports counts as legitimate, as in production) and against the truth.

The test period is the same for every M and lies before the cut-off of every M >= test_days: the benchmark isolates
what immature labels cost, not what the later deployment of a model trained with a long maturity costs (a model
whose labels are read at U + M serves from U + M on, on older patterns). Prints one line per world and M, the
world's label maturity curve and one table with "final" as the baseline; saves AP against M as a PNG in the state
folder (``.riskray/benchmarks/label_maturity.png``). Starts no service. Not a test: the machine is shared and noisy.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
from rich.console import Console
from rich.table import Table
from sklearn.metrics import average_precision_score

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app.config import Settings  # noqa: E402
from app.labels import known_in_frame, matured  # noqa: E402
from app.preprocessing import Preprocessor  # noqa: E402
from streaming.label_delays import LabelDelayConfig, label_events  # noqa: E402
from streaming.simulator import Simulator, SimulatorConfig  # noqa: E402
from training import data  # noqa: E402
from training.model import DEFAULT_PARAMS, DEFAULT_ROUNDS, fit_plain, predict  # noqa: E402

console = Console(width=200)

START = datetime(2026, 1, 5, tzinfo=UTC)  # every world starts here: never the clock
MATURITIES = (0, 3, 7, 14, 30, 60, 120)
CURVE_DAYS = (1, 3, 7, 14, 30, 60, 90, 120)
FINAL = "final"
THREADS = 2


@dataclass
class World:
    """One pinned simulated world: its transactions without in-row labels, their truth, and their label events."""

    frame: pd.DataFrame  # the message columns, is_fraud NaN (checked by training.data.check_transactions)
    truth: np.ndarray  # the simulator's is_fraud, per row of frame
    events: pd.DataFrame  # LabelEvent columns


@dataclass
class Outcome:
    """One world and one maturity: what training knew, and how the model scored the test period."""

    known_share: float  # of the training period's frauds (truth), the share known as fraud at the cut-off
    labelled: int  # training rows labelled fraud at the cut-off
    labelled_legitimate: int  # ... of them legitimate in truth (a dispute not yet found to be the cardholder's own)
    ap_final: float  # test AP against the final labels
    ap_truth: float  # test AP against the truth


# --- pure helpers --------------------------------------------------------------------------------------------
def first_fraud_report_days(transactions: pd.DataFrame, events: pd.DataFrame) -> np.ndarray:
    """Per row of ``transactions`` (transaction_id, timestamp), days from the transaction to its first report as
    fraud (NaN: never reported as fraud)."""
    fraud = events[events["is_fraud"] == 1]
    first = pd.to_datetime(fraud["reported_at"], utc=True).groupby(fraud["transaction_id"].astype(str).to_numpy()).min()
    reported = first.reindex(transactions["transaction_id"].astype(str).to_numpy())
    delay = reported.to_numpy() - pd.to_datetime(transactions["timestamp"], utc=True).to_numpy()
    return pd.to_timedelta(delay).total_seconds().to_numpy() / 86_400.0


def maturity_curve(delays_days: np.ndarray, days: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Of the frauds with these first-report delays (NaN: never reported): the share known k days after the
    transaction, for each k in ``days``, among those eventually reported and among all."""
    reported = delays_days[~np.isnan(delays_days)]
    within = np.array([(reported <= k).sum() for k in days], dtype=np.float64)
    return within / max(len(reported), 1), within / max(len(delays_days), 1)


def known_fraud_share(known: np.ndarray, truth: np.ndarray) -> float:
    """Of the true frauds, the share whose known label (NaN: none yet) is fraud."""
    frauds = truth == 1
    return float((known[frauds] == 1).sum() / max(int(frauds.sum()), 1))


def mean_sd(values: list[float]) -> str:
    return f"{np.mean(values):.4f} ± {np.std(values, ddof=1) if len(values) > 1 else 0.0:.4f}"


# --- one world -----------------------------------------------------------------------------------------------
def simulate(seed: int, customers: int, merchants: int, days: int) -> World:
    simulator = Simulator(SimulatorConfig(seed=seed, customers=customers, merchants=merchants))
    frame = pd.concat(list(simulator.backfill(START, days)), ignore_index=True).drop(columns="scenario")
    frame["timestamp"] = frame["timestamp"].astype("datetime64[us, UTC]")
    events = label_events(frame, LabelDelayConfig(seed=seed))
    truth = frame["is_fraud"].to_numpy(dtype=np.int64)
    live = data.check_transactions(frame.assign(is_fraud=np.nan), "simulation")  # the events are the only labels
    return World(live, truth, events)


@dataclass
class Prepared:
    """A world's model matrices and labels: the training period's rows, the test period's rows."""

    world: World
    until: datetime  # U: the training period's end, the test period's start
    final_at: datetime  # when every event has been reported
    train_frame: pd.DataFrame  # the training rows' message columns (for known_in_frame)
    train_truth: np.ndarray
    train_matrix: np.ndarray
    test_matrix: np.ndarray
    test_labels: np.ndarray  # final labels, matured
    test_truth: np.ndarray
    names: list[str]


def prepare(seed: int, args: argparse.Namespace, settings: Settings) -> Prepared:
    """Simulate a world, label it with events, build both periods' features and fit the preprocessor."""
    world = simulate(seed, args.customers, args.merchants, args.days)
    end = START + timedelta(days=args.days)
    until = end - timedelta(days=args.test_days)
    final_at = pd.Timestamp(world.events["reported_at"].max()).to_pydatetime()
    known = known_in_frame(world.frame, world.events, final_at, settings.label_delay_days)
    snapshot = world.frame.assign(**{data.LABEL: known})
    # both periods in one call: one pass over the history (the features read no label: the rows carry none)
    examples = data.build_examples(snapshot, settings, until - timedelta(days=args.train_days), end)
    in_test = data.in_period(pd.Series(examples.frame["timestamp"]).dt.tz_localize(UTC), until, None)
    train_rows, test_rows = np.flatnonzero(~in_test), np.flatnonzero(in_test)
    positions = pd.Index(world.frame["transaction_id"]).get_indexer(examples.frame["transaction_id"])
    preprocessor = Preprocessor.fit(examples.inputs(train_rows))  # label-free: the same for every M
    return Prepared(
        world, until, final_at, world.frame.iloc[positions[train_rows]], world.truth[positions[train_rows]],
        preprocessor.transform(examples.inputs(train_rows)), preprocessor.transform(examples.inputs(test_rows)),
        examples.labels[test_rows], world.truth[positions[test_rows]], preprocessor.output_names)


def train_and_score(p: Prepared, maturity: int | str, seed: int, settings: Settings) -> Outcome:
    """Train on the training period's labels as known M days after it ends (or final), score the test period."""
    at = p.final_at if maturity == FINAL else p.until + timedelta(days=int(maturity))
    known = known_in_frame(p.train_frame, p.world.events, at, settings.label_delay_days)
    labels = matured(known)
    booster = fit_plain((p.train_matrix, labels), p.names, {**DEFAULT_PARAMS, "seed": seed}, DEFAULT_ROUNDS,
                        THREADS)
    scores = predict(booster, p.test_matrix)
    return Outcome(known_fraud_share(known, p.train_truth), int(labels.sum()),
                   int(((labels == 1) & (p.train_truth == 0)).sum()),
                   float(average_precision_score(p.test_labels, scores)),
                   float(average_precision_score(p.test_truth, scores)))


def run_world(seed: int, args: argparse.Namespace, settings: Settings) -> tuple[dict[str, Outcome], np.ndarray]:
    """Every maturity's outcome on one world, and the first-report delays of its frauds (for the curve)."""
    started = time.monotonic()
    p = prepare(seed, args, settings)
    world = p.world
    console.print(f"seed {seed}: {len(world.frame):,} transactions, {int(world.truth.sum()):,} frauds, "
                  f"{len(world.events):,} label events; training {len(p.train_truth):,} rows "
                  f"({int(p.train_truth.sum()):,} frauds), test {len(p.test_truth):,} rows "
                  f"({int(p.test_truth.sum()):,} frauds, {int(p.test_labels.sum()):,} ever reported); "
                  f"world and features in {time.monotonic() - started:.1f} s")
    outcomes: dict[str, Outcome] = {}
    for maturity in (*args.maturities, FINAL):
        started = time.monotonic()
        outcomes[str(maturity)] = o = train_and_score(p, maturity, seed, settings)
        console.print(f"  seed {seed}  M {maturity!s:>5}: {o.known_share:6.1%} of training frauds known, "
                      f"{o.labelled:,} labelled fraud ({o.labelled_legitimate} legitimate in truth); "
                      f"test AP {o.ap_final:.4f} (final labels) / {o.ap_truth:.4f} (truth); "
                      f"{time.monotonic() - started:.1f} s")
    frauds = np.flatnonzero(world.truth == 1)
    return outcomes, first_fraud_report_days(world.frame.iloc[frauds], world.events)


# --- output --------------------------------------------------------------------------------------------------
def results_table(results: list[dict[str, Outcome]], args: argparse.Namespace) -> Table:
    table = Table(title=f"Label maturity: test AP over {len(results)} worlds ({args.customers:,} customers, "
                        f"{args.train_days}-day training period, {args.test_days}-day test period right after it); "
                        "mean ± sd over worlds")
    for column in ("M (days)", "training frauds known at cut-off", "training rows labelled fraud",
                   "of them legitimate", "AP test (final labels)", "AP / AP final", "AP test (truth)"):
        table.add_column(column, justify="right")
    for key in results[0]:
        rows = [r[key] for r in results]
        ratios = [r[key].ap_final / r[FINAL].ap_final for r in results]  # paired, world by world
        table.add_row(key if key != FINAL else "final (baseline)",
                      f"{np.mean([o.known_share for o in rows]):.1%}", f"{np.mean([o.labelled for o in rows]):,.0f}",
                      f"{np.mean([o.labelled_legitimate for o in rows]):.1f}", mean_sd([o.ap_final for o in rows]),
                      mean_sd(ratios), mean_sd([o.ap_truth for o in rows]),
                      style="bold" if key == FINAL else None)
    return table


def curve_table(delays: np.ndarray) -> Table:
    of_reported, of_all = maturity_curve(delays, CURVE_DAYS)
    reported = int((~np.isnan(delays)).sum())
    table = Table(title=f"Label maturity curve: {len(delays):,} frauds of all worlds, {reported:,} "
                        f"({reported / max(len(delays), 1):.1%}) ever reported as fraud")
    table.add_column("known k days after the transaction", justify="left")
    for k in CURVE_DAYS:
        table.add_column(f"{k} d", justify="right")
    table.add_row("share of the frauds ever reported", *(f"{v:.1%}" for v in of_reported))
    table.add_row("share of all frauds", *(f"{v:.1%}" for v in of_all))
    return table


def plot(results: list[dict[str, Outcome]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = [k for k in results[0] if k != FINAL]
    x = np.arange(len(keys))
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for field, colour, name in (("ap_final", "C0", "final labels"), ("ap_truth", "C1", "truth")):
        values = np.array([[getattr(r[k], field) for k in keys] for r in results])
        ax.errorbar(x, values.mean(axis=0), yerr=values.std(axis=0, ddof=1) if len(results) > 1 else None,
                    marker="o", capsize=3, color=colour, label=f"trained at maturity M, scored against {name}")
        final = np.array([getattr(r[FINAL], field) for r in results])
        ax.axhline(final.mean(), color=colour, linestyle="--", label=f"trained on final labels, against {name}")
        spread = final.std(ddof=1) if len(results) > 1 else 0.0
        ax.axhspan(final.mean() - spread, final.mean() + spread, color=colour, alpha=0.1)
    ax.set_xticks(x, keys)
    ax.set_xlabel("label maturity M (days after the training period's end)")
    ax.set_ylabel("test average precision")
    ax.set_title(f"AP against label maturity ({len(results)} worlds, mean ± sd)")
    ax.legend(fontsize=8, loc="lower right")
    ax.grid(alpha=0.3)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def parse(settings: Settings) -> argparse.Namespace:
    history = data.history_days(settings)
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=5, help="worlds, simulator seeds 1..N")
    parser.add_argument("--customers", type=int, default=2_000)
    parser.add_argument("--merchants", type=int, default=400)
    parser.add_argument("--train-days", type=int, default=21)
    parser.add_argument("--test-days", type=int, default=7)
    parser.add_argument("--days", type=int, default=None,
                        help=f"days simulated (default: {history} of feature history + training + test period)")
    parser.add_argument("--maturities", type=int, nargs="+", default=list(MATURITIES), help="M values, days")
    parser.add_argument("--out", type=Path, default=settings.state_dir / "benchmarks" / "label_maturity.png")
    args = parser.parse_args()
    if min(args.seeds, args.customers, args.train_days, args.test_days) < 1 or min(args.maturities) < 0:
        parser.error("--seeds, --customers, --train-days and --test-days must be at least 1, --maturities >= 0")
    args.days = args.days or history + args.train_days + args.test_days
    if args.days < history + args.train_days + args.test_days:
        parser.error(f"--days {args.days} leaves less than the features' {history} days of history before the "
                     f"{args.train_days}-day training period and the {args.test_days}-day test period")
    return args


def main() -> None:
    settings = Settings()
    args = parse(settings)
    started = time.monotonic()
    console.print(f"{args.seeds} worlds from {START:%Y-%m-%d}, {args.days} days each: training period = days "
                  f"{args.days - args.test_days - args.train_days}..{args.days - args.test_days}, test period = the "
                  f"last {args.test_days}; M = {', '.join(map(str, args.maturities))} and final")
    results, delays = [], []
    for seed in range(1, args.seeds + 1):
        outcomes, fraud_delays = run_world(seed, args, settings)
        results.append(outcomes)
        delays.append(fraud_delays)
    console.print(curve_table(np.concatenate(delays)))
    console.print(results_table(results, args))
    plot(results, args.out)
    console.print(f"plot: {args.out}")
    console.print(f"{args.seeds} worlds in {time.monotonic() - started:.0f} s")


if __name__ == "__main__":
    main()
