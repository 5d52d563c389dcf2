"""Model quality against the field's reference, under the field's protocol, across seeded worlds.

    .venv/bin/python benchmarks/model_quality.py                 # 10 seeds + one drifted world (~25 min)
    .venv/bin/python benchmarks/model_quality.py --seeds 1 2 3 --no-drift

The protocol (the Fraud Detection Handbook's, Le Borgne et al.): a world simulated by the project's own simulator
(seeded), one week of training, the label delay (7 days) during which nothing new is known, one week of test. From
each test day the cards already known compromised are removed: those with a fraud in the training week, and those
with a fraud on a day that is older than the label delay on that test day. Metrics on the remaining rows: ROC AUC,
average precision, card precision@100 (per day the 100 cards with the highest score, the share of them with a
fraud that day, cards found on an earlier test day removed; averaged over the days).

Side by side on the same rows:
  * riskray as a user runs it: ``riskray train --from-file`` with default options on the training week (the rows
    before it are history), then ``riskray score`` of the test week; here both run in this process through the same
    functions (``training.pipeline.run``, ``training.scoring.BlockScorer``), without registering in MLflow;
  * the reference: XGBoost on the standard feature set (per card the count and mean amount over the last 1, 7 and
    30 days; per terminal the count and the fraud rate over 1, 7 and 30 days ending the label delay before the
    transaction; weekend and night flags; the amount), its grid (max depth 3/6/9, 25/50/100 trees, learning rate
    0.1/0.3) chosen by average precision on the week before, trained the same way one week earlier.
Prints the per-seed table, the medians with their spread, and the ratios (riskray / reference). Not a test.
"""

from __future__ import annotations

import argparse
import itertools
import logging
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
from rich.console import Console
from rich.table import Table
from sklearn.metrics import average_precision_score, roc_auc_score

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app.config import get_settings  # noqa: E402
from app.model_artifact import read_folder  # noqa: E402
from app.point_in_time import history_frame  # noqa: E402
from streaming.simulator import SCENARIOS, DriftConfig, Simulator, SimulatorConfig  # noqa: E402
from training.options import TrainOptions  # noqa: E402
from training.pipeline import run as train_pipeline  # noqa: E402
from training.scoring import BlockScorer  # noqa: E402

console = Console(width=200)
START = datetime(2026, 6, 1, tzinfo=UTC)  # a fixed calendar: the world never depends on the clock
HISTORY_DAYS = 35  # before the training week: the 30-day windows filled, and the reference's validation weeks
WEEK = 7
TOP_K = 100
WINDOWS = (1, 7, 30)
TOP_SHARE = 0.01
GRID = {"max_depth": (3, 6, 9), "rounds": (25, 50, 100), "eta": (0.1, 0.3)}


@dataclass(frozen=True)
class Protocol:
    delay_days: int

    @property
    def train_start(self) -> datetime:
        return START + timedelta(days=HISTORY_DAYS)

    @property
    def train_end(self) -> datetime:
        return self.train_start + timedelta(days=WEEK)

    @property
    def test_start(self) -> datetime:
        return self.train_end + timedelta(days=self.delay_days)

    @property
    def test_end(self) -> datetime:
        return self.test_start + timedelta(days=WEEK)

    @property
    def days(self) -> int:
        return (self.test_end - START).days


def world(seed: int, customers: int, merchants: int, protocol: Protocol, drift: bool) -> pd.DataFrame:
    """The seed's transactions from START to the end of the test week, by event time; with ``drift``, the
    simulator's drift (fraud mix and amounts) switched on for the test week."""
    config = SimulatorConfig(seed=seed, customers=customers, merchants=merchants,
                             drift=DriftConfig(at=protocol.test_start if drift else None))
    frame = pd.concat(list(Simulator(config).backfill(START, protocol.days)), ignore_index=True)
    frame = frame[frame["timestamp"] < pd.Timestamp(protocol.test_end)]
    return frame.sort_values("timestamp", kind="stable", ignore_index=True)


def _between(frame: pd.DataFrame, since: datetime, until: datetime) -> np.ndarray:
    t = frame["timestamp"]
    return ((t >= pd.Timestamp(since)) & (t < pd.Timestamp(until))).to_numpy()


def assessed_rows(frame: pd.DataFrame, since: datetime, delay_days: int) -> np.ndarray:
    """Mask of the week from ``since`` without the cards already known compromised on each day: a fraud in the
    training week (the week ending ``delay_days`` before ``since``), or on a day at least ``delay_days`` old."""
    day = ((frame["timestamp"] - pd.Timestamp(START)) // pd.Timedelta(days=1)).to_numpy()
    first = (since - START).days
    fraud = frame["is_fraud"].to_numpy() == 1
    cards = frame["customer_id"].to_numpy()
    known = set(cards[fraud & (day >= first - delay_days - WEEK) & (day < first - delay_days)])
    keep = np.zeros(len(frame), dtype=bool)
    for offset in range(WEEK):
        known |= set(cards[fraud & (day == first - delay_days + offset - 1)]) if offset else set()
        today = day == first + offset
        keep |= today & ~np.isin(cards, list(known))
    return keep


def card_precision_at_k(day: np.ndarray, cards: np.ndarray, labels: np.ndarray, scores: np.ndarray,
                        k: int = TOP_K) -> float:
    """Per day, the k cards with the highest score (a card's highest), the share with a fraud that day; cards
    found on an earlier day are left out of later days; the mean over the days (the Handbook's CP@k)."""
    frame = pd.DataFrame({"day": day, "card": cards, "fraud": labels, "score": scores})
    found: set[int] = set()
    values = []
    for _, rows in frame.groupby("day", sort=True):
        per_card = rows[~rows["card"].isin(found)].groupby("card").max()
        top = per_card.sort_values("score", ascending=False, kind="stable").head(k)
        caught = top.index[top["fraud"] == 1]
        values.append(len(caught) / k)
        found.update(caught.tolist())
    return float(np.mean(values)) if values else float("nan")


def metrics(frame: pd.DataFrame, rows: np.ndarray, scores: np.ndarray) -> dict[str, float]:
    """AUC, AP, CP@100, and per fraud scenario the share of its frauds among the top 1 % of scores (where a model's
    lead comes from)."""
    part = frame[rows]
    labels = part["is_fraud"].to_numpy()
    day = ((part["timestamp"] - pd.Timestamp(START)) // pd.Timedelta(days=1)).to_numpy()
    top = scores >= np.quantile(scores, 1 - TOP_SHARE)
    scenario = part["scenario"].to_numpy()
    caught = {f"top_{name}": float(top[scenario == name].mean()) if (scenario == name).any() else float("nan")
              for name in SCENARIOS}
    return {"auc": roc_auc_score(labels, scores), "ap": average_precision_score(labels, scores),
            "cp": card_precision_at_k(day, part["customer_id"].to_numpy(), labels, scores), **caught}


# --- riskray -------------------------------------------------------------------------------------------------
def riskray_scores(frame: pd.DataFrame, protocol: Protocol, rows: np.ndarray, work: Path) -> tuple[np.ndarray, str]:
    """Train with the defaults on the training week (earlier rows are history) and score ``rows`` of the test week,
    features from every earlier row of the file; (scores, what the pipeline said about its CV)."""
    settings = get_settings()
    source = work / "train.parquet"
    frame[frame["timestamp"] < pd.Timestamp(protocol.train_end)].drop(columns="scenario").to_parquet(source)
    said: list[str] = []

    def say(line: str) -> None:
        said.append(line)
        console.print(f"  riskray {line[:160]}", highlight=False)

    options = TrainOptions.from_settings(settings, source_file=source, since=protocol.train_start,
                                         until=protocol.train_end, register_model=False, work_dir=work / "training")
    report = train_pipeline(settings, options, say)
    history = history_frame(frame.drop(columns="scenario"), settings.label_delay_days)
    block = pd.concat([frame[rows].drop(columns="scenario"), history[rows]], axis=1)
    scored = BlockScorer(read_folder(report.model_dir))(block)
    tune_line = next((line for line in said if line.startswith("tune:")), "")
    return scored["fraud_probability"].to_numpy(), tune_line


# --- the reference -----------------------------------------------------------------------------------------
def reference_features(frame: pd.DataFrame, delay_days: int) -> pd.DataFrame:
    """The Handbook's feature set, every window ending at the transaction (inclusive), the terminal's shifted back by
    the label delay."""
    t = frame["timestamp"]
    out = pd.DataFrame(index=frame.index)
    out["amount"] = frame["amount"].to_numpy()
    out["is_weekend"] = (t.dt.day_of_week >= 5).astype(np.int8).to_numpy()
    out["is_night"] = (t.dt.hour <= 6).astype(np.int8).to_numpy()
    indexed = frame.assign(one=1.0).set_index("timestamp")
    by_card = indexed.groupby("customer_id", sort=False)
    by_terminal = indexed.groupby("merchant_id", sort=False)
    for w in WINDOWS:
        count = by_card["one"].rolling(f"{w}D").sum()
        total = by_card["amount"].rolling(f"{w}D").sum()
        out[f"card_count_{w}d"] = _aligned(count, frame, "customer_id")
        out[f"card_mean_amount_{w}d"] = _aligned(total, frame, "customer_id") / out[f"card_count_{w}d"]
    delayed = {name: _aligned(by_terminal[column].rolling(f"{delay_days}D").sum(), frame, "merchant_id")
               for name, column in (("count", "one"), ("fraud", "is_fraud"))}
    for w in WINDOWS:
        count, fraud = (_aligned(by_terminal[column].rolling(f"{delay_days + w}D").sum(), frame, "merchant_id")
                        - delayed[name] for name, column in (("count", "one"), ("fraud", "is_fraud")))
        out[f"terminal_count_{w}d"] = count
        out[f"terminal_risk_{w}d"] = np.where(count > 0, fraud / np.where(count > 0, count, 1), 0.0)
    return out


def _aligned(rolled: pd.Series, frame: pd.DataFrame, key: str) -> np.ndarray:
    """A groupby-rolling result (groups in order of first appearance, time order within) in the frame's row order."""
    codes, _ = pd.factorize(frame[key].to_numpy())
    out = np.empty(len(frame))
    out[np.lexsort((np.arange(len(frame)), codes))] = rolled.to_numpy()
    return out


def reference_scores(frame: pd.DataFrame, protocol: Protocol, rows: np.ndarray, threads: int
                     ) -> tuple[np.ndarray, str]:
    """The grid chosen by AP on the week before (trained a week earlier, same delay, same removal of known cards),
    then trained on the training week; scores of ``rows``."""
    import xgboost as xgb

    features = reference_features(frame, protocol.delay_days)
    labels = frame["is_fraud"].to_numpy()
    shift = timedelta(days=WEEK + protocol.delay_days)
    valid_train = _between(frame, protocol.train_start - shift, protocol.train_end - shift)
    valid_rows = assessed_rows(frame, protocol.test_start - shift, protocol.delay_days)
    train = _between(frame, protocol.train_start, protocol.train_end)

    def fit(mask: np.ndarray, depth: int, rounds: int, eta: float) -> xgb.Booster:
        params = {"objective": "binary:logistic", "tree_method": "hist", "max_depth": depth, "eta": eta,
                  "nthread": threads, "verbosity": 0, "seed": 0}
        return xgb.train(params, xgb.DMatrix(features[mask].to_numpy(), label=labels[mask]), rounds)

    best = max(itertools.product(*GRID.values()), key=lambda combo: average_precision_score(
        labels[valid_rows], fit(valid_train, *combo).inplace_predict(features[valid_rows].to_numpy())))
    booster = fit(train, *best)
    return booster.inplace_predict(features[rows].to_numpy()), "depth {}, {} trees, eta {}".format(*best)


# --- the run -----------------------------------------------------------------------------------------------
def one_world(seed: int, args: argparse.Namespace, protocol: Protocol, drift: bool) -> dict[str, object]:
    started = time.monotonic()
    frame = world(seed, args.customers, args.merchants, protocol, drift)
    rows = assessed_rows(frame, protocol.test_start, protocol.delay_days)
    with tempfile.TemporaryDirectory(prefix="riskray-quality-") as directory:
        ours, tuned = riskray_scores(frame, protocol, rows, Path(directory))
    theirs, grid = reference_scores(frame, protocol, rows, args.threads)
    result: dict[str, object] = {"seed": seed, "drift": drift, "rows": int(rows.sum()),
                                 "frauds": int(frame["is_fraud"].to_numpy()[rows].sum()),
                                 "riskray": metrics(frame, rows, ours), "reference": metrics(frame, rows, theirs),
                                 "tune": tuned, "grid": grid, "seconds": time.monotonic() - started}
    r, b = result["riskray"], result["reference"]
    console.print(f"world {seed}{' (drift in the test week)' if drift else ''}: {result['rows']:,} test rows, "
                  f"{result['frauds']} frauds; riskray AUC {r['auc']:.4f} AP {r['ap']:.4f} CP@100 {r['cp']:.3f}; "
                  f"reference AUC {b['auc']:.4f} AP {b['ap']:.4f} CP@100 {b['cp']:.3f} ({grid}); "
                  f"{result['seconds']:.0f} s", highlight=False)
    return result


def report(results: list[dict[str, object]]) -> None:
    table = Table(title="riskray vs the reference (XGBoost, standard features, tuned grid), test week, known "
                        "compromised cards removed")
    for column in ("world", "test rows", "frauds", "riskray AUC", "ref AUC", "x", "riskray AP", "ref AP", "x",
                   "riskray CP@100", "ref CP@100", "x"):
        table.add_column(column, justify="right")

    def ratio(result: dict, metric: str) -> float:
        return result["riskray"][metric] / result["reference"][metric] if result["reference"][metric] else np.nan

    for result in results:
        r, b = result["riskray"], result["reference"]
        table.add_row(f"{result['seed']}{' drift' if result['drift'] else ''}", f"{result['rows']:,}",
                      str(result["frauds"]), *(cell for metric in ("auc", "ap", "cp") for cell in (
                          f"{r[metric]:.4f}", f"{b[metric]:.4f}", f"{ratio(result, metric):.3f}")))
    stationary = [r for r in results if not r["drift"]]
    if stationary:
        cells = []
        for metric in ("auc", "ap", "cp"):
            ours = np.array([r["riskray"][metric] for r in stationary])
            theirs = np.array([r["reference"][metric] for r in stationary])
            ratios = np.array([ratio(r, metric) for r in stationary])
            cells += [_median(ours), _median(theirs), _median(ratios, 3)]
        table.add_section()
        table.add_row(f"median of {len(stationary)}", "", "", *cells)
    console.print(table)
    scenarios = Table(title=f"share of each scenario's test frauds among the top {TOP_SHARE:.0%} of scores, median "
                            "over the stationary worlds (drifted world beside)")
    scenarios.add_column("scenario")
    for column in ("riskray", "reference", "riskray drift", "reference drift"):
        scenarios.add_column(column, justify="right")
    drifted = [r for r in results if r["drift"]]
    for name in SCENARIOS:
        cells = [f"{np.nanmedian([r[model][f'top_{name}'] for r in group]):.2f}" if group else ""
                 for group in (stationary, drifted) for model in ("riskray", "reference")]
        scenarios.add_row(name, *cells)
    console.print(scenarios)
    if stationary:
        ap = np.array([ratio(r, "ap") for r in stationary])
        console.print(f"AP ratio: median {np.median(ap):.3f} (goal >= 1.05), lowest {ap.min():.3f} (goal >= 0.95); "
                      f"AUC ratio median {np.median([ratio(r, 'auc') for r in stationary]):.3f}, CP@100 ratio median "
                      f"{np.median([ratio(r, 'cp') for r in stationary]):.3f} (goals >= 1.00)", highlight=False)
    for result in results:
        console.print(f"world {result['seed']}: riskray {result['tune'] or 'tune: -'}; reference {result['grid']}",
                      highlight=False)


def _median(values: np.ndarray, digits: int = 4) -> str:
    low, high = np.percentile(values, [25, 75])
    return f"{np.median(values):.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=list(range(1, 11)))
    parser.add_argument("--drift-seed", type=int, default=11, help="the world with drift in its test week")
    parser.add_argument("--no-drift", action="store_true", help="skip the drifted world")
    parser.add_argument("--customers", type=int, default=3_000)
    parser.add_argument("--merchants", type=int, default=600)
    parser.add_argument("--threads", type=int, default=2, help="XGBoost threads of the reference")
    args = parser.parse_args()
    logging.getLogger("ray").setLevel(logging.WARNING)
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    protocol = Protocol(delay_days=get_settings().label_delay_days)
    results = [one_world(seed, args, protocol, drift=False) for seed in args.seeds]
    if not args.no_drift:
        results.append(one_world(args.drift_seed, args, protocol, drift=True))
    report(results)


if __name__ == "__main__":
    main()
