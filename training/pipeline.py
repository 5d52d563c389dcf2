"""The training pipeline in three stages — extract a snapshot, train (tune + distributed fit), evaluate and
register — callable together (``riskray train``, or as a Ray job: ``python -m training``) or one by one
(the DVC stages in dvc.yaml, ``python -m training.stages``). Stages hand over files in the training folder,
so DVC can track and cache each one.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, Field

from app.config import Settings
from app.model_inputs import FEATURE_SET, FEATURES
from app.preprocessing import Preprocessor
from training import data
from training.model import DEFAULT_PARAMS, DEFAULT_ROUNDS, MODEL_FILE, CvResult

SNAPSHOT_FILE = "snapshot.parquet"
MODEL_DIR = "model"
REPORT_DIR = "report"
TRAINING_FILE = "training.json"
METRICS_FILE = "metrics.json"

Say = Callable[[str], None]


class TrainOptions(BaseModel):
    source_file: Path | None = Field(default=None, description="train from a Parquet/CSV file, not the store")
    since: datetime | None = None
    until: datetime | None = None
    trials: int = Field(default=8, ge=0, description="Tune trials; 0 = the original design's defaults, no search")
    folds: int = Field(default=5, ge=2)
    workers: int = Field(default=2, ge=1)
    split: Literal["time", "stratified"] = "time"
    test_fraction: float = Field(default=0.2, gt=0, lt=0.9)
    valid_fraction: float = Field(default=0.15, gt=0, lt=0.9, description="latest part of the training part")
    seed: int = 7
    register_model: bool = True
    work_dir: Path | None = Field(default=None, description="stage files; default: the state folder's training/")

    def directory(self, settings: Settings) -> Path:
        return self.work_dir or settings.training_dir


def md5_of(path: Path) -> str:
    """The file's MD5, as DVC records it for the same output."""
    digest = hashlib.md5()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def ensure_ray(settings: Settings) -> None:
    """Join the running cluster (a Ray job's, or the local stack's head); start a private Ray if there is none."""
    import os

    import ray

    if ray.is_initialized():
        return
    if os.environ.get("RAY_ADDRESS"):
        ray.init(log_to_driver=False)
        return
    try:
        ray.init(address=f"{settings.ray_host}:{settings.ray_gcs_port}", log_to_driver=False)
    except (ConnectionError, RuntimeError):
        ray.init(num_cpus=settings.ray_num_cpus, include_dashboard=False, log_to_driver=False)


# --- stage 1: snapshot ------------------------------------------------------------------------------------
def period(settings: Settings, options: TrainOptions, snapshot: pd.DataFrame | None = None
           ) -> tuple[datetime, datetime]:
    if options.source_file is not None and snapshot is not None:
        # a file trains on all it holds unless told otherwise
        first = snapshot["timestamp"].min().to_pydatetime()
        end = snapshot["timestamp"].max().to_pydatetime() + pd.Timedelta(seconds=1)
        return options.since or first, options.until or end
    return (options.since or data.default_period(settings, options.until)[0]), (options.until or datetime.now(UTC))


def extract(settings: Settings, options: TrainOptions, say: Say) -> Path:
    out = options.directory(settings) / SNAPSHOT_FILE
    out.parent.mkdir(parents=True, exist_ok=True)
    if options.source_file is not None:
        snapshot = data.read_file(options.source_file)
        since, until = period(settings, options, snapshot)
    else:
        since, until = period(settings, options)
        ensure_ray(settings)
        snapshot = data.load_from_store(settings, since, until)
    labelled = snapshot[data.in_period(snapshot["timestamp"], since, until)]
    data.require_both_classes(labelled["is_fraud"], str(options.source_file or "feature store"))
    snapshot.to_parquet(out, index=False)
    (out.parent / "period.json").write_text(json.dumps({"since": since.isoformat(), "until": until.isoformat()}))
    say(f"snapshot: {len(snapshot):,} transactions ({len(labelled):,} labelled, {int(labelled['is_fraud'].sum()):,} "
        f"frauds) {since:%Y-%m-%d %H:%M} .. {until:%Y-%m-%d %H:%M} -> {out}")
    return out


# --- stage 2: features, split, tune, fit -----------------------------------------------------------------
@dataclass
class Prepared:
    examples: data.Examples
    fit_rows: np.ndarray
    valid_rows: np.ndarray
    test_rows: np.ndarray
    preprocessor: Preprocessor


def prepare(settings: Settings, options: TrainOptions, snapshot_path: Path) -> Prepared:
    snapshot = pd.read_parquet(snapshot_path)
    bounds = json.loads((snapshot_path.parent / "period.json").read_text())
    examples = data.build_examples(snapshot, settings, datetime.fromisoformat(bounds["since"]),
                                   datetime.fromisoformat(bounds["until"]))
    n = len(examples.frame)
    labels = examples.labels
    if options.split == "time":  # frame is sorted by event time: train on the earlier part, test on the later
        cut = int(n * (1 - options.test_fraction))
        train_rows, test_rows = np.arange(cut), np.arange(cut, n)
    else:
        from sklearn.model_selection import train_test_split

        train_rows, test_rows = train_test_split(np.arange(n), test_size=options.test_fraction, stratify=labels,
                                                 random_state=options.seed)
        train_rows, test_rows = np.sort(train_rows), np.sort(test_rows)
    valid_cut = int(len(train_rows) * (1 - options.valid_fraction))
    fit_rows, valid_rows = train_rows[:valid_cut], train_rows[valid_cut:]
    for name, rows in (("training", fit_rows), ("validation", valid_rows), ("test", test_rows)):
        data.require_both_classes(pd.Series(labels[rows]), f"{name} part of the split")
    preprocessor = Preprocessor.fit(examples.inputs(fit_rows))  # fitted on training data only
    return Prepared(examples, fit_rows, valid_rows, test_rows, preprocessor)


def train(settings: Settings, options: TrainOptions, snapshot_path: Path, say: Say) -> Path:
    from training.model import fit_distributed, tune_with_cv

    started = time.monotonic()
    p = prepare(settings, options, snapshot_path)
    labels = p.examples.labels
    names = p.preprocessor.output_names
    train_rows = np.concatenate([p.fit_rows, p.valid_rows])
    say(f"features: {len(p.examples.frame):,} rows x {len(FEATURES)} inputs -> {len(names)} model columns; "
        f"split {options.split}: fit {len(p.fit_rows):,} / valid {len(p.valid_rows):,} / test {len(p.test_rows):,} "
        f"({time.monotonic() - started:.1f} s)")
    if options.source_file is None:
        stored = data.store_training_features(settings, p.examples)
        say(f"features: {stored:,} rows written to training_features (feature set {FEATURE_SET})")
    ensure_ray(settings)
    tune_dir = (options.directory(settings) / "ray").resolve()
    if options.trials > 0:
        matrix = p.preprocessor.transform(p.examples.inputs(train_rows))
        cv = tune_with_cv(matrix, labels[train_rows], names, trials=options.trials, folds=options.folds,
                          max_concurrent=settings.tune_max_concurrent, storage=tune_dir, seed=options.seed,
                          cpus_per_trial=settings.train_cpus_per_worker)
        say(f"tune: {cv.trials} trials x {options.folds}-fold CV in {cv.seconds:.0f} s; best AP "
            f"{cv.aucpr_mean:.4f} ± {cv.aucpr_std:.4f}, AUC {cv.auc_mean:.4f} ± {cv.auc_std:.4f}, {cv.rounds} rounds")
    else:
        nan = float("nan")
        cv = CvResult(dict(DEFAULT_PARAMS), DEFAULT_ROUNDS, nan, nan, nan, nan, 0, 0.0)
        say("tune: skipped (--trials 0): the original design's parameters, 100 rounds")
    fit = fit_distributed(
        (p.preprocessor.transform(p.examples.inputs(p.fit_rows)), labels[p.fit_rows]),
        (p.preprocessor.transform(p.examples.inputs(p.valid_rows)), labels[p.valid_rows]),
        names, cv.params, cv.rounds, workers=options.workers, cpus_per_worker=settings.train_cpus_per_worker,
        storage=tune_dir,
    )
    say(f"train: {options.workers} Ray Train workers, {cv.rounds} rounds in {fit.seconds:.0f} s; "
        f"validation {', '.join(f'{k} {v:.4f}' for k, v in fit.metrics.items())}")
    model_dir = options.directory(settings) / MODEL_DIR
    model_dir.mkdir(parents=True, exist_ok=True)
    fit.booster.save_model(str(model_dir / MODEL_FILE))
    p.preprocessor.save(model_dir)
    (model_dir / TRAINING_FILE).write_text(json.dumps({
        "params": cv.params, "rounds": cv.rounds, "trials": cv.trials, "tune_seconds": cv.seconds,
        "fit_seconds": fit.seconds, "workers": options.workers, "folds": options.folds,
        "cv": {"aucpr_mean": cv.aucpr_mean, "aucpr_std": cv.aucpr_std, "auc_mean": cv.auc_mean, "auc_std": cv.auc_std},
        "validation": fit.metrics, "options": json.loads(options.model_dump_json()),
    }, indent=1, default=str))
    return model_dir


# --- stage 3: evaluate, log, register --------------------------------------------------------------------
@dataclass
class Report:
    metrics: dict[str, float]
    version: str | None
    run_id: str | None
    model_dir: Path


def evaluate(settings: Settings, options: TrainOptions, snapshot_path: Path, model_dir: Path, say: Say) -> Report:
    import xgboost as xgb

    from training import evaluation, tracking
    from training.model import imbalance_weight, predict

    p = prepare(settings, options, snapshot_path)
    booster = xgb.Booster(model_file=str(model_dir / MODEL_FILE))
    names = p.preprocessor.output_names
    labels = p.examples.labels
    valid_scores = predict(booster, p.preprocessor.transform(p.examples.inputs(p.valid_rows)))
    threshold = evaluation.f1_threshold(labels[p.valid_rows], valid_scores)
    test_matrix = p.preprocessor.transform(p.examples.inputs(p.test_rows))
    test_scores = predict(booster, test_matrix)
    test_frame = p.examples.frame.iloc[p.test_rows]
    result = evaluation.evaluate(test_frame, test_scores, threshold)
    importance = evaluation.feature_importance(booster, names)
    report_dir = options.directory(settings) / REPORT_DIR
    plots = evaluation.save_plots(report_dir, labels[p.test_rows], test_scores, result, importance)
    importance.to_csv(report_dir / "feature_importance.csv", index=False)
    (report_dir / METRICS_FILE).write_text(json.dumps(result.metrics, indent=1))
    m = result.metrics
    say(f"evaluate: test AUC {m['roc_auc']:.4f}, AP {m['average_precision']:.4f}, precision {m['precision']:.3f}, "
        f"recall {m['recall']:.3f}, F1 {m['f1']:.3f} @ {threshold:.3f}, CP@100 {m['card_precision_at_100']:.3f}")
    if not options.register_model:
        return Report(m, None, None, model_dir)

    import mlflow

    training = json.loads((model_dir / TRAINING_FILE).read_text())
    tracking.connect(settings)
    bounds = json.loads((snapshot_path.parent / "period.json").read_text())
    with mlflow.start_run(run_name=f"train-{datetime.now(UTC):%Y%m%d-%H%M%S}") as run:
        mlflow.log_params({
            **{f"xgb_{k}": v for k, v in training["params"].items()}, "num_boost_round": training["rounds"],
            "scale_pos_weight": round(imbalance_weight(labels[p.fit_rows]), 3), "tune_trials": training["trials"],
            "cv_folds": training["folds"], "train_workers": training["workers"], "split": options.split,
            "test_fraction": options.test_fraction, "valid_fraction": options.valid_fraction,
            "label_delay_days": settings.label_delay_days, "since": bounds["since"], "until": bounds["until"],
            "rows_fit": len(p.fit_rows), "rows_valid": len(p.valid_rows), "rows_test": len(p.test_rows),
            "threshold_rule": "max F1 on validation",
        })
        cv = training["cv"]
        mlflow.log_metrics({
            **{f"cv_{k}": v for k, v in cv.items() if v == v},
            **{f"test_{k}": v for k, v in m.items() if v == v},
            "tune_seconds": training["tune_seconds"], "fit_seconds": training["fit_seconds"],
        })
        mlflow.set_tags({
            "git_commit": tracking.git_commit(), "data_md5": md5_of(snapshot_path), "feature_set": FEATURE_SET,
            "features": ",".join(FEATURES), "source": str(options.source_file or "feature store"),
        })
        tracking.log_artifacts([model_dir / "preprocessor.json", model_dir / TRAINING_FILE], "preprocessor")
        tracking.log_artifacts([*plots, report_dir / "feature_importance.csv", report_dir / METRICS_FILE], "report")
        example = pd.DataFrame(test_matrix[:5], columns=names)
        version = tracking.log_model(booster, example, settings.registered_model_name, threshold)
        run_id = run.info.run_id
    say(f"register: MLflow run {run_id}, {settings.registered_model_name} version {version} -> alias 'challenger'")
    return Report(m, version, run_id, model_dir)


def run(settings: Settings, options: TrainOptions, say: Say) -> Report:
    """All three stages, in order."""
    snapshot = extract(settings, options, say)
    model_dir = train(settings, options, snapshot, say)
    return evaluate(settings, options, snapshot, model_dir, say)
