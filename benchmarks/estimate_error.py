"""Estimated accuracy against realised accuracy: how wrong monitoring's label-free estimate is, day by day, once the
labels are in, on a world that stays the same and on two worlds that change after training.

    .venv/bin/python benchmarks/estimate_error.py                 # 3 seeds, about 2 minutes on 2 cores
    .venv/bin/python benchmarks/estimate_error.py --seeds 5 --days-after 28

Monitoring estimates a model's accuracy before its labels arrive, from its calibrated probabilities
(``app.expected_accuracy``, the CBPE idea). This measures the estimate against the truth. For each of --seeds pinned
worlds (simulator seeds 1..N, a fixed start date, --customers / --merchants):

  * three simulations with the same seed, differing only in their drift, which starts right after the training
    period (``at``): **same world** (no drift), **covariate shift** (``DriftConfig(at, amount_factor=2.0,
    scenario_factors={})``: amounts double, the fraud mix does not change) and **fraud mix changed**
    (``DriftConfig(at, amount_factor=1.0)`` with the simulator's default scenario factors: card testing x3,
    account takeover x3, large amounts x0.5). Each simulates the features' look-back (``app.features.history_span``
    days), the training period (--train-days, the settings' ``train_days`` by default), then --days-after days.
    The rows before ``at`` are checked to be identical across the three (the output says so; if they were not,
    each variant would get its own model);
  * one model, trained as ``riskray train`` trains in process: ``training.pipeline.prepare`` on the snapshot of the
    rows before ``at`` (every label in: the simulator's rows carry them, read at the cut-off), the settings' split
    (time: the test part is the period's last 20 %), plain ``xgb.train`` with the original design's parameters
    (``training.model.fit_plain``; the pipeline fits the same with Ray Train), ``training.calibration.fit`` on the
    validation part's raw scores with the settings' ``calibration_max_ece_share``, and a
    ``app.model_artifact.ScoringModel`` carrying that calibration. Its test part gives the baseline monitoring
    compares with: the realised AUC and the estimated AUC of the pooled test part, as ``training.pipeline.evaluate``
    records them (``test_roc_auc``, ``test_roc_auc_estimated``);
  * every day after ``at`` of each variant is a cohort: point-in-time features from that variant's whole frame
    (``app.point_in_time.history_frame``, as batch scoring builds them), scored by the model; realised AUC, AP and
    precision at capacity against the simulator's truth (the labels once fully matured), and the same estimated
    from the scores alone (``app.expected_accuracy.expected``). A day needs ``accuracy_min_positives`` frauds, real
    and expected, as in monitoring. The test part's days are scored the same way, as a same-world reference inside
    the training period.

Capacity: the settings' ``review_capacity_per_day`` is meant for a world of the default simulator's size
(``SimulatorConfig().customers`` customers, about as many frauds a day as the capacity); it is scaled by
customers / that size, so the reviews cover the same share of a day (--capacity sets it). Prints the calibration
per seed, one table (variant x metric: mean realised, mean estimated, mean error estimated - realised, mean |error|,
cohorts) and a verdict per variant; saves estimated and realised AUC and AP per day as a PNG in the state folder
(``.riskray/benchmarks/estimate_error.png``). Starts no service. Not a test.
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
from sklearn.metrics import average_precision_score, roc_auc_score

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app import expected_accuracy  # noqa: E402
from app.calibration import Calibration, expected_calibration_error  # noqa: E402
from app.config import Settings  # noqa: E402
from app.features import history_span  # noqa: E402
from app.model_artifact import ScoringModel  # noqa: E402
from app.model_inputs import HISTORY_COLUMNS, model_inputs, raw_columns  # noqa: E402
from app.point_in_time import history_frame  # noqa: E402
from streaming.simulator import NEARBY_MERCHANTS, DriftConfig, Simulator, SimulatorConfig  # noqa: E402
from training import calibration, data  # noqa: E402
from training.model import DEFAULT_PARAMS, DEFAULT_ROUNDS, fit_plain, predict  # noqa: E402
from training.options import TrainOptions  # noqa: E402
from training.pipeline import prepare  # noqa: E402

console = Console(width=200)

START = datetime(2026, 1, 5, tzinfo=UTC)  # every world starts here: never the clock
THREADS = 2
BASELINE = "training test part"  # the test part's days, scored the same way: the same-world reference
SAME, COVARIATE, CONCEPT = "same world", "covariate shift (amounts x2)", "fraud mix changed"
VARIANTS = (SAME, COVARIATE, CONCEPT)
METRICS = {"roc_auc": "AUC", "average_precision": "AP", "precision_at_capacity": "precision at capacity",
           "frauds": "frauds a day"}


def drift_of(variant: str, at: datetime) -> DriftConfig:
    """The variant's drift, from ``at`` on."""
    if variant == SAME:
        return DriftConfig(at=None)  # no drift at all (the default factors do nothing without ``at``)
    if variant == COVARIATE:
        return DriftConfig(at=at, amount_factor=2.0, scenario_factors={})
    return DriftConfig(at=at, amount_factor=1.0)  # the default scenario factors


@dataclass
class Trained:
    model: ScoringModel
    calibration: Calibration
    valid_fraud_rate: float
    test_ece_raw: float
    test_ece: float
    test_mean_raw: float  # mean raw and calibrated score of the test part, against its fraud rate
    test_mean_score: float
    test_fraud_rate: float
    test_auc: float  # pooled test part, realised (the pipeline's test_roc_auc)
    test_auc_estimated: float  # ... estimated (test_roc_auc_estimated), the baseline monitoring compares with
    test_cohorts: pd.DataFrame  # day, label, score of the test part's rows
    seconds: float


def simulate(seed: int, variant: str, args: argparse.Namespace, at: datetime) -> pd.DataFrame:
    config = SimulatorConfig(seed=seed, customers=args.customers, merchants=args.merchants, drift=drift_of(variant, at))
    frame = pd.concat(list(Simulator(config).backfill(START, args.days)), ignore_index=True)
    return data.check_transactions(frame.drop(columns="scenario"), f"world {seed} ({variant})")


def day_of(timestamps: pd.Series) -> np.ndarray:
    """UTC day of each event time: the cohort."""
    return pd.to_datetime(timestamps, utc=True).dt.tz_localize(None).to_numpy().astype("datetime64[D]")


def train(seed: int, frame: pd.DataFrame, settings: Settings, since: datetime, at: datetime) -> Trained:
    """Train on the rows before ``at`` as ``riskray train`` does in process (no tuning), calibrate, measure."""
    started = time.monotonic()
    snapshot = data.with_row_labels(frame[frame["timestamp"] < pd.Timestamp(at)].reset_index(drop=True), settings,
                                    None)
    options = TrainOptions.from_settings(settings, trials=0, seed=seed)
    p = prepare(snapshot, settings, options, since, at)
    booster = fit_plain((p.matrix(p.fit_rows), p.labels(p.fit_rows)), p.preprocessor.output_names,
                        dict(DEFAULT_PARAMS), DEFAULT_ROUNDS, threads=THREADS)
    valid_labels = p.labels(p.valid_rows)
    calibrated = calibration.fit(valid_labels, predict(booster, p.matrix(p.valid_rows)),
                                 settings.calibration_max_ece_share)
    model = ScoringModel(f"seed-{seed}", booster, p.preprocessor, threshold=0.5, calibration=calibrated)
    test_matrix, test_labels = p.matrix(p.test_rows), p.labels(p.test_rows)
    raw, scores = predict(booster, test_matrix), model.probabilities(test_matrix)
    days = p.examples.frame["timestamp"].to_numpy()[p.test_rows].astype("datetime64[D]")  # UTC, naive
    estimated = expected_accuracy.expected(scores, days, settings.review_capacity_per_day, min_frauds=1)
    return Trained(
        model, calibrated, float(valid_labels.mean()), expected_calibration_error(test_labels, raw),
        expected_calibration_error(test_labels, scores), float(raw.mean()), float(scores.mean()),
        float(test_labels.mean()), float(roc_auc_score(test_labels, scores)),
        float(estimated.roc_auc) if estimated is not None and estimated.roc_auc is not None else float("nan"),
        pd.DataFrame({"day": days, "label": test_labels, "score": scores}), time.monotonic() - started)


def score_after(model: ScoringModel, frame: pd.DataFrame, settings: Settings, at: datetime, end: datetime
                ) -> pd.DataFrame:
    """day, label (the truth) and score of every row in [at, end), features point-in-time from the whole frame."""
    history = history_frame(frame, settings.label_delay_days)  # the labels inside the rows, reported after the delay
    keep = data.in_period(frame["timestamp"], at, end)
    rows, past = frame[keep], history[keep]
    _, scores = model.score(model_inputs(raw_columns(rows), {name: past[name].to_numpy() for name in HISTORY_COLUMNS}))
    return pd.DataFrame({"day": day_of(rows["timestamp"]), "label": rows["is_fraud"].to_numpy(dtype=np.int64),
                         "score": scores})


def cohorts(scored: pd.DataFrame, capacity: int, min_frauds: int) -> list[dict[str, float]]:
    """Per day: realised and estimated accuracy (days with fewer than ``min_frauds`` real or expected frauds are
    left out, as monitoring says 'not enough data' of them)."""
    out = []
    for day, rows in scored.groupby("day", sort=True):
        labels, scores = rows["label"].to_numpy(), rows["score"].to_numpy(dtype=np.float64)
        days = rows["day"].to_numpy()
        estimated = expected_accuracy.expected(scores, days, capacity, min_frauds)
        frauds = int(labels.sum())
        if estimated is None or frauds < min_frauds or frauds == len(labels):
            continue
        out.append({
            "day": np.datetime64(day, "D"), "rows": len(labels),
            "realised_roc_auc": float(roc_auc_score(labels, scores)),
            "realised_average_precision": float(average_precision_score(labels, scores)),
            "realised_precision_at_capacity": expected_accuracy.precision_at_capacity(
                days, scores, labels.astype(np.float64), capacity),
            "realised_frauds": float(frauds),
            **{f"estimated_{name}": getattr(estimated, name) for name in METRICS},
        })
    return out


def run_world(seed: int, args: argparse.Namespace, settings: Settings) -> tuple[list[dict], Trained, bool]:
    """Every cohort of one world's variants (and its test part), the model, and whether the variants' rows before
    ``at`` were identical."""
    started = time.monotonic()
    frames = {variant: simulate(seed, variant, args, args.at) for variant in VARIANTS}
    simulated = time.monotonic() - started
    before = {v: f[f["timestamp"] < pd.Timestamp(args.at)].reset_index(drop=True) for v, f in frames.items()}
    identical = all(before[v].equals(before[SAME]) for v in VARIANTS)
    models: dict[str, Trained] = {}
    for variant in VARIANTS:
        same_as = next((v for v in models if before[v].equals(before[variant])), None)
        models[variant] = models[same_as] if same_as else train(seed, frames[variant], settings, args.since, args.at)
    t = models[SAME]
    rows: list[dict] = [{"seed": seed, "variant": BASELINE, **c}
                        for c in cohorts(t.test_cohorts, args.capacity, settings.accuracy_min_positives)]
    for variant in VARIANTS:
        scored = score_after(models[variant].model, frames[variant], settings, args.at, args.end)
        rows += [{"seed": seed, "variant": variant, "test_auc": models[variant].test_auc,
                  "test_auc_estimated": models[variant].test_auc_estimated, **c}
                 for c in cohorts(scored, args.capacity, settings.accuracy_min_positives)]
    c = t.calibration
    console.print(
        f"seed {seed}: {len(frames[SAME]):,} transactions, {int(frames[SAME]['is_fraud'].sum()):,} frauds (same "
        f"world); rows before the drift identical across variants: {'yes' if identical else 'NO'}; simulated in "
        f"{simulated:.0f} s, trained in {t.seconds:.0f} s; calibration {c.method} (slope {c.slope:.3f}, intercept "
        f"{c.intercept:.3f}), validation ECE {c.ece_before:.5f} -> {c.ece_after:.5f} (threshold "
        f"{settings.calibration_max_ece_share:g} x fraud rate {t.valid_fraud_rate:.4f} = "
        f"{settings.calibration_max_ece_share * t.valid_fraud_rate:.5f}); test ECE raw {t.test_ece_raw:.5f} -> "
        f"calibrated {t.test_ece:.5f}, mean score raw {t.test_mean_raw:.4f} / calibrated {t.test_mean_score:.4f} "
        f"/ fraud rate {t.test_fraud_rate:.4f}; test AUC {t.test_auc:.4f}, estimated {t.test_auc_estimated:.4f}; "
        f"{time.monotonic() - started:.0f} s")
    if not identical:
        differing = [v for v in VARIANTS if not before[v].equals(before[SAME])]
        console.print(f"[bold red]seed {seed}: the rows before the drift differ from the same world's in "
                      f"{', '.join(differing)}: each was trained on its own history[/]")
    return rows, t, identical


# --- output --------------------------------------------------------------------------------------------------
def results_table(results: pd.DataFrame, args: argparse.Namespace, settings: Settings, seeds: int) -> Table:
    table = Table(title=f"Estimated - realised accuracy per day-cohort over {seeds} worlds ({args.customers:,} "
                        f"customers, {args.merchants:,} merchants; trained on {args.train_days} days, scored "
                        f"{args.days_after} days after; capacity {args.capacity}/day; a cohort needs "
                        f"{settings.accuracy_min_positives} frauds)")
    for column in ("variant", "metric", "mean realised", "mean estimated", "mean error (est - real)",
                   "mean |error|", "sd of error", "cohorts"):
        table.add_column(column, justify="left" if column in ("variant", "metric") else "right")
    for variant in (BASELINE, *VARIANTS):
        part = results[results["variant"] == variant]
        for i, (name, label) in enumerate(METRICS.items()):
            real, est = part[f"realised_{name}"].to_numpy(float), part[f"estimated_{name}"].to_numpy(float)
            error = est - real
            digits = 1 if name == "frauds" else 4
            table.add_row(variant if i == 0 else "", label, f"{np.mean(real):.{digits}f}",
                          f"{np.mean(est):.{digits}f}", f"{np.mean(error):+.{digits}f}",
                          f"{np.mean(np.abs(error)):.{digits}f}", f"{np.std(error, ddof=1):.{digits}f}",
                          str(len(part)), end_section=i == len(METRICS) - 1)
    return table


def moved(estimated_change: float, realised_change: float, negligible: float) -> str:
    """Whether the estimate's change from its baseline follows the realised change from its own."""
    if abs(realised_change) < negligible:
        return "neither moved" if abs(estimated_change) < negligible else "the estimate moves, the realised does not"
    share = estimated_change / realised_change
    if share >= 0.5:
        return f"the estimate sees it ({share:.0%} of the move)"
    if share > 0.1:
        return f"the estimate sees only {share:.0%} of it"
    return "the estimate cannot see this"


def verdicts(results: pd.DataFrame, trained: list[Trained], settings: Settings) -> list[str]:
    base_real = float(np.mean([t.test_auc for t in trained]))
    base_est = float(np.mean([t.test_auc_estimated for t in trained]))
    same = results[results["variant"] == SAME]
    same_baseline = results[results["variant"] == BASELINE]
    lines = [f"baseline (training test part, pooled as training records it): realised AUC {base_real:.4f}, "
             f"estimated {base_est:.4f} (monitoring flags a drop when an estimate falls over "
             f"{settings.accuracy_max_drop:.0%} under the estimate, a realised AUC under the realised)"]
    for variant in VARIANTS:
        part = results[results["variant"] == variant]
        real, est = part["realised_roc_auc"].to_numpy(float), part["estimated_roc_auc"].to_numpy(float)
        flags_est = int((est < (1 - settings.accuracy_max_drop) * part["test_auc_estimated"]).sum())
        flags_real = int((real < (1 - settings.accuracy_max_drop) * part["test_auc"]).sum())
        flags = (f"cohorts flagged as a drop: by the estimate {flags_est}/{len(part)}, by the labels "
                 f"{flags_real}/{len(part)}")
        if variant == SAME:
            ap = (part["estimated_average_precision"] - part["realised_average_precision"]).abs().mean()
            pac = (part["estimated_precision_at_capacity"] - part["realised_precision_at_capacity"]).abs().mean()
            lines.append(f"{variant}: the estimated AUC is within {np.mean(np.abs(est - real)):.4f} of the realised "
                         f"per day on average (bias {np.mean(est - real):+.4f}; the test part's days: "
                         f"{np.mean(same_baseline['estimated_roc_auc'] - same_baseline['realised_roc_auc']):+.4f}); "
                         f"AP within {ap:.4f}, precision at capacity within {pac:.4f}; {flags}")
            continue
        parts = []
        for name in ("roc_auc", "average_precision", "precision_at_capacity", "frauds"):
            r, e = part[f"realised_{name}"].mean(), part[f"estimated_{name}"].mean()
            dr, de = r - same[f"realised_{name}"].mean(), e - same[f"estimated_{name}"].mean()
            digits = 1 if name == "frauds" else 4
            parts.append(f"{METRICS[name]}: the estimate says {e:.{digits}f} while realised is {r:.{digits}f} "
                         f"(against the same world: realised {dr:+.{digits}f}, estimate {de:+.{digits}f}: "
                         f"{moved(de, dr, 0.5 if name == 'frauds' else 0.005)})")
        lines.append(f"{variant}: " + "; ".join(parts) + f"; {flags}")
    return lines


def plot(results: pd.DataFrame, path: Path, args: argparse.Namespace) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    at = np.datetime64(args.at.replace(tzinfo=None), "D")
    fig, axes = plt.subplots(2, len(VARIANTS), figsize=(5 * len(VARIANTS), 7.5), sharey="row", sharex=True)
    for column, variant in enumerate(VARIANTS):
        for row, (name, label) in enumerate((("roc_auc", "AUC"), ("average_precision", "average precision"))):
            ax = axes[row, column]
            for i, seed in enumerate(sorted(results["seed"].unique())):
                part = results[(results["seed"] == seed) & results["variant"].isin([BASELINE, variant])]
                part = part.sort_values("day")
                x = (part["day"].to_numpy().astype("datetime64[D]") - at).astype(int)
                ax.plot(x, part[f"realised_{name}"], "o-", color=f"C{i}", markersize=3, linewidth=1,
                        label=f"seed {seed} realised")
                ax.plot(x, part[f"estimated_{name}"], "s--", color=f"C{i}", markersize=3, linewidth=1,
                        label=f"seed {seed} estimated")
            ax.axvspan(x.min() - 0.5 if len(x) else -1, -0.5, color="grey", alpha=0.12)
            ax.axvline(-0.5, color="grey", linewidth=0.8)
            ax.set_title(f"{variant}: {label}" if row == 0 else label, fontsize=10)
            ax.grid(alpha=0.3)
            if column == 0:
                ax.set_ylabel(f"{label} per day")
            if row == 1:
                ax.set_xlabel("day after training (grey: the training test part)")
    axes[0, 0].legend(fontsize=7, loc="lower left", ncol=2)
    fig.suptitle("Estimated (dashed) vs realised (solid) accuracy per day-cohort; the drift starts at day 0")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def parse(settings: Settings) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=3, help="worlds, simulator seeds 1..N")
    parser.add_argument("--customers", type=int, default=1_500)
    parser.add_argument("--merchants", type=int, default=800)
    parser.add_argument("--train-days", type=int, default=settings.train_days)
    parser.add_argument("--days-after", type=int, default=21, help="days scored after training (the drift's days)")
    parser.add_argument("--capacity", type=int, default=None,
                        help="reviews a day (default: the settings' review_capacity_per_day scaled to the world)")
    parser.add_argument("--plot", type=Path, default=settings.state_dir / "benchmarks" / "estimate_error.png")
    args = parser.parse_args()
    if min(args.seeds, args.customers, args.train_days, args.days_after) < 1:
        parser.error("--seeds, --customers, --train-days and --days-after must be at least 1")
    if args.merchants < NEARBY_MERCHANTS:
        parser.error(f"--merchants must be at least {NEARBY_MERCHANTS} (the simulator's nearby merchants)")
    default_customers = SimulatorConfig().customers
    args.capacity = args.capacity or max(1, round(settings.review_capacity_per_day * args.customers
                                                  / default_customers))
    args.history = history_span()
    args.days = args.history + args.train_days + args.days_after
    args.since = START + timedelta(days=args.history)
    args.at = args.since + timedelta(days=args.train_days)
    args.end = args.at + timedelta(days=args.days_after)
    return args


def main() -> None:
    settings = Settings()
    args = parse(settings)
    started = time.monotonic()
    console.print(f"{args.seeds} worlds from {START:%Y-%m-%d}, {args.days} days each: {args.history} days of feature "
                  f"history, training period {args.since:%Y-%m-%d} .. {args.at:%Y-%m-%d} ({args.train_days} days), "
                  f"then {args.days_after} days per variant from {args.at:%Y-%m-%d}; review capacity "
                  f"{args.capacity}/day (the settings' {settings.review_capacity_per_day} x {args.customers:,} / "
                  f"{SimulatorConfig().customers:,} customers)")
    rows: list[dict] = []
    trained: list[Trained] = []
    identical = True
    for seed in range(1, args.seeds + 1):
        world_rows, t, same = run_world(seed, args, settings)
        rows += world_rows
        trained.append(t)
        identical &= same
    results = pd.DataFrame(rows)
    console.print(results_table(results, args, settings, args.seeds))
    for line in verdicts(results, trained, settings):
        console.print(f"- {line}")
    if not identical:
        console.print("[bold red]the variants' histories were not identical in every world: see above[/]")
    plot(results, args.plot, args)
    console.print(f"plot: {args.plot}")
    console.print(f"{args.seeds} worlds in {time.monotonic() - started:.0f} s")


if __name__ == "__main__":
    main()
