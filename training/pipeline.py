"""The training pipeline, one function per stage: snapshot -> features -> tune -> fit -> evaluate -> register.

:func:`run` calls them in order (``riskray train``, also as a Ray job), preparing the
features once; the DVC stages (dvc.yaml, ``python -m training.stages``) run the same functions in separate
processes and hand over files in the training folder, so DVC can track and cache each one:
``snapshot.parquet`` -> ``features.parquet`` + ``preprocessor.json`` -> ``model/`` -> ``report/`` + MLflow.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

from app import drift_reference, expected_accuracy, model_artifact
from app.config import Settings
from app.labels import FRAUD_REPORT_COLUMNS, labels_cutoff, matured, maturity_days, row_fraud_reports
from app.model_inputs import FEATURE_SET, FEATURES
from app.preprocessing import Preprocessor
from training import data, splits
from training.model import DEFAULT_PARAMS, DEFAULT_ROUNDS, CvResult
from training.options import TrainOptions

SNAPSHOT_FILE = "snapshot.parquet"
REPORTS_FILE = "fraud_reports.parquet"  # the merchants' fraud reports the snapshot's windows count (app.labels)
PERIOD_FILE = "period.json"
FEATURES_FILE = "features.parquet"
MODEL_DIR, REPORT_DIR = model_artifact.MODEL_DIR, model_artifact.REPORT_DIR  # the artifact layout's folders
TRAINING_FILE = "training.json"
METRICS_FILE = "metrics.json"
CV_VS_TEST_FILE = "cv_vs_test.json"
PARTS = ("fit", "valid", "test")

Say = Callable[[str], None]


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

    from app.ray_client import client_environment

    for name, value in client_environment(settings).items():  # before Ray reads it, at its first import
        os.environ.setdefault(name, value)
    import ray

    if ray.is_initialized():
        return
    if os.environ.get("RAY_ADDRESS"):
        ray.init(log_to_driver=False)
        return
    if _listening(settings.ray_host, settings.ray_gcs_port):
        try:
            ray.init(address=f"{settings.ray_host}:{settings.ray_gcs_port}", log_to_driver=False)
            return
        except (ConnectionError, RuntimeError):
            pass
    # no head: Ray would retry an absent GCS for minutes before giving up, so a private one starts at once
    ray.init(num_cpus=settings.ray_num_cpus, include_dashboard=False, log_to_driver=False)


def _listening(host: str, port: int) -> bool:
    import socket

    try:
        with socket.create_connection((host, port), timeout=1.0):
            return True
    except OSError:
        return False


# --- stage 1: snapshot ------------------------------------------------------------------------------------
def period(settings: Settings, options: TrainOptions, snapshot: pd.DataFrame | None = None
           ) -> tuple[datetime, datetime]:
    if options.source_file is not None and snapshot is not None:
        # a file trains on all it holds unless told otherwise
        first = snapshot["timestamp"].min().to_pydatetime()
        end = snapshot["timestamp"].max().to_pydatetime() + pd.Timedelta(seconds=1)
        return options.since or first, options.until or end
    since, until = data.default_period(settings, options.until)
    return options.since or since, until


def snapshot(settings: Settings, options: TrainOptions, say: Say) -> Path:
    """The raw transactions of the period and the history their features look back on, as one Parquet file."""
    out = options.directory(settings) / SNAPSHOT_FILE
    out.parent.mkdir(parents=True, exist_ok=True)
    if options.source_file is not None:
        frame = data.read_file(options.source_file)
        since, until = period(settings, options, frame)
        frame = data.with_row_labels(frame, settings, labels_cutoff(settings, until))
        reports = row_fraud_reports(frame, settings.label_delay_days)  # a file's labels are its rows'
    else:
        since, until = period(settings, options)
        frame = data.load_from_store(settings, since, until, labels_cutoff(settings, until))
        reports = data.load_fraud_reports(settings, since, until)
    reports[list(FRAUD_REPORT_COLUMNS)].to_parquet(out.parent / REPORTS_FILE, index=False)
    known = frame.loc[data.in_period(frame["timestamp"], since, until), data.LABEL].to_numpy(dtype=np.float64)
    data.require_both_classes(pd.Series(matured(known)), str(options.source_file or "feature store"))
    frame.to_parquet(out, index=False)
    (out.parent / PERIOD_FILE).write_text(json.dumps({"since": since.isoformat(), "until": until.isoformat()}))
    say(f"snapshot: {len(frame):,} transactions {since:%Y-%m-%d %H:%M} .. {until:%Y-%m-%d %H:%M} -> {out}; "
        f"{len(known):,} labelled as known at {labels_cutoff(settings, until):%Y-%m-%d %H:%M} "
        f"({maturity_days(settings)} days later): {int(np.nansum(known == 1)):,} fraud, "
        f"{int(np.nansum(known == 0)):,} legitimate, {int(np.isnan(known).sum()):,} unreported (legitimate)")
    return out


# --- stage 2: features and split --------------------------------------------------------------------------
@dataclass
class Prepared:
    """The run's examples (point-in-time model inputs), its split and the preprocessor fitted on the fit part."""

    examples: data.Examples
    fit_rows: np.ndarray
    valid_rows: np.ndarray
    test_rows: np.ndarray
    preprocessor: Preprocessor

    @property
    def train_rows(self) -> np.ndarray:
        """Fit and validation rows: what tuning cross-validates on (never the test part)."""
        return np.concatenate([self.fit_rows, self.valid_rows])

    def matrix(self, rows: np.ndarray) -> np.ndarray:
        return self.preprocessor.transform(self.examples.inputs(rows))

    def labels(self, rows: np.ndarray) -> np.ndarray:
        return self.examples.labels[rows]


def prepare(snapshot_frame: pd.DataFrame, settings: Settings, options: TrainOptions, since: datetime | None,
            until: datetime | None, fraud_reports: pd.DataFrame | None = None) -> Prepared:
    """Features, split and preprocessor for a snapshot already in memory (pure: no files, no services);
    ``fraud_reports``: the snapshot's (None: the labels inside its rows)."""
    examples = data.build_examples(snapshot_frame, settings, since, until, fraud_reports)
    fit_rows, valid_rows, test_rows = splits.split_rows(examples.labels, options.split, options.test_fraction,
                                                        options.valid_fraction, options.seed)
    for name, rows in (("training", fit_rows), ("validation", valid_rows), ("test", test_rows)):
        data.require_both_classes(pd.Series(examples.labels[rows]), f"{name} part of the split")
    preprocessor = Preprocessor.fit(examples.inputs(fit_rows))  # fitted on training data only
    return Prepared(examples, fit_rows, valid_rows, test_rows, preprocessor)


def features(settings: Settings, options: TrainOptions, snapshot_path: Path, say: Say) -> Prepared:
    """Point-in-time features of the labelled period, split, preprocessor fitted; written for the next stages
    (and to ``training_features`` when the snapshot came from the store)."""
    started = time.monotonic()
    bounds = json.loads((snapshot_path.parent / PERIOD_FILE).read_text())
    p = prepare(pd.read_parquet(snapshot_path), settings, options, datetime.fromisoformat(bounds["since"]),
                datetime.fromisoformat(bounds["until"]), pd.read_parquet(snapshot_path.parent / REPORTS_FILE))
    directory = options.directory(settings)
    part = np.empty(len(p.examples.frame), dtype=object)
    for name, rows in zip(PARTS, (p.fit_rows, p.valid_rows, p.test_rows), strict=True):
        part[rows] = name
    # the history's start rides along as a constant column: the evaluate stage's drift reference needs it
    p.examples.frame.assign(part=part, history_start=p.examples.history_start).to_parquet(
        directory / FEATURES_FILE, index=False)
    p.preprocessor.save(directory)
    say(f"features: {len(p.examples.frame):,} rows x {len(FEATURES)} inputs -> {len(p.preprocessor.output_names)} "
        f"model columns (feature set {FEATURE_SET}); split {options.split}: fit {len(p.fit_rows):,} / valid "
        f"{len(p.valid_rows):,} / test {len(p.test_rows):,} ({time.monotonic() - started:.1f} s)")
    if options.source_file is None:
        stored = data.store_training_features(settings, p.examples)
        say(f"features: {stored:,} rows written to training_features")
    return p


def load_features(settings: Settings, options: TrainOptions) -> Prepared:
    """What :func:`features` wrote, for the stages that run in another process."""
    directory = options.directory(settings)
    frame = pd.read_parquet(directory / FEATURES_FILE)
    part = frame.pop("part").to_numpy()
    started = pd.to_datetime(frame.pop("history_start"), utc=True)
    rows = [np.flatnonzero(part == name) for name in PARTS]
    return Prepared(data.Examples(frame, history_start=started.iloc[0].to_pydatetime() if len(started) else None),
                    *rows, Preprocessor.load(directory))


# --- stage 3: tune ------------------------------------------------------------------------------------------
def tune(settings: Settings, options: TrainOptions, p: Prepared, say: Say) -> CvResult:
    """Ray Tune over k-fold CV of the training rows (fit + validation), time-forward folds by default."""
    from training.model import tune_with_cv

    if options.trials == 0:
        nan = float("nan")
        say("tune: skipped (--trials 0): the original design's parameters, 100 rounds")
        return CvResult(dict(DEFAULT_PARAMS), DEFAULT_ROUNDS, nan, nan, nan, nan, 0, 0.0)
    rows = p.train_rows
    labels = p.labels(rows)
    folds: int | splits.Folds = options.folds
    scheme, gap = "stratified", None
    if options.cv == "time":
        times = p.examples.frame["timestamp"].to_numpy()[rows]
        if options.cv_gap_days is not None:
            gap, scheme = options.cv_gap_days, f"time-forward, {options.cv_gap_days:g}-day gap"
        else:
            gap, why = splits.fitting_gap(times, options.folds, options.label_delay_days)
            shown = f"{gap:g}" if gap == options.label_delay_days else f"{gap:.2f}"
            scheme = f"time-forward, {shown}-day gap: {why}"
        folds = splits.time_forward_folds(times, labels, options.folds, gap)
    ensure_ray(settings)
    cv = tune_with_cv(p.matrix(rows), labels, p.preprocessor.output_names, trials=options.trials, folds=folds,
                      max_concurrent=settings.tune_max_concurrent, storage=_ray_dir(settings, options),
                      seed=options.seed, cpus_per_trial=settings.train_cpus_per_worker)
    cv.gap_days = gap
    say(f"tune: {cv.trials} trials x {options.folds}-fold CV ({scheme}) in {cv.seconds:.0f} s; best AP "
        f"{cv.aucpr_mean:.4f} ± {cv.aucpr_std:.4f}, AUC {cv.auc_mean:.4f} ± {cv.auc_std:.4f}, {cv.rounds} rounds")
    return cv


def _ray_dir(settings: Settings, options: TrainOptions) -> Path:
    return (options.directory(settings) / "ray").resolve()


# --- stage 4: fit ------------------------------------------------------------------------------------------
def fit(settings: Settings, options: TrainOptions, p: Prepared, cv: CvResult, say: Say) -> Path:
    """The final model under Ray Train on the fit rows with the best configuration, calibrated on the validation
    rows when its scores are off (``training.calibration``); the model folder."""
    from training import calibration
    from training.model import fit_distributed, predict

    ensure_ray(settings)
    valid = (p.matrix(p.valid_rows), p.labels(p.valid_rows))
    result = fit_distributed((p.matrix(p.fit_rows), p.labels(p.fit_rows)), valid, p.preprocessor.output_names,
                             cv.params, cv.rounds, workers=options.workers,
                             cpus_per_worker=settings.train_cpus_per_worker, storage=_ray_dir(settings, options))
    say(f"train: {options.workers} Ray Train workers, {cv.rounds} rounds in {result.seconds:.0f} s; "
        f"validation {', '.join(f'{k} {v:.4f}' for k, v in result.metrics.items())}")
    calibrated = calibration.fit(valid[1], predict(result.booster, valid[0]), settings.calibration_max_ece_share)
    say(f"calibrate: validation ECE {calibrated.ece_before:.4f} -> {calibrated.ece_after:.4f} "
        f"({calibrated.method}; calibrated above {settings.calibration_max_ece_share:g} of the fraud rate)")
    model_dir = model_artifact.save(options.directory(settings) / MODEL_DIR, result.booster, p.preprocessor,
                                    calibrated)
    (model_dir / TRAINING_FILE).write_text(json.dumps({
        "params": cv.params, "rounds": cv.rounds, "trials": cv.trials, "tune_seconds": cv.seconds,
        "fit_seconds": result.seconds, "workers": options.workers, "folds": options.folds, "cv_scheme": options.cv,
        "cv_gap_days": cv.gap_days,
        "cv": {"aucpr_mean": cv.aucpr_mean, "aucpr_std": cv.aucpr_std, "auc_mean": cv.auc_mean, "auc_std": cv.auc_std},
        "validation": result.metrics, "options": json.loads(options.model_dump_json()),
    }, indent=1, default=str))
    return model_dir


# --- stage 5: evaluate -------------------------------------------------------------------------------------
@dataclass
class Report:
    metrics: dict[str, float]
    version: str | None
    run_id: str | None
    model_dir: Path


def evaluate(settings: Settings, options: TrainOptions, p: Prepared, model_dir: Path, say: Say) -> dict[str, float]:
    """Threshold on validation, metrics and plots on the test part, CV against test side by side. Writes only
    into the report folder (the model folder is the fit stage's output; the threshold travels in the metrics).
    Scores are calibrated (the model's calibration), so the threshold is a calibrated probability; ``ece_raw``
    measures the booster's own scores on the same rows."""
    from app import decision as decision_files
    from app.calibration import expected_calibration_error
    from app.decision import CostModel
    from training import calibration, evaluation, thresholds
    from training.model import predict

    model = model_artifact.ScoringModel.from_files(model_artifact.read_folder(model_dir))
    valid_scores = model.probabilities(p.matrix(p.valid_rows))
    threshold = evaluation.f1_threshold(p.labels(p.valid_rows), valid_scores)
    test_matrix, test_labels = p.matrix(p.test_rows), p.labels(p.test_rows)
    test_scores, raw_scores = model.probabilities(test_matrix), predict(model.booster, test_matrix)
    result = evaluation.evaluate(p.examples.frame.iloc[p.test_rows], test_scores, threshold)
    result.metrics.update(ece=expected_calibration_error(test_labels, test_scores),
                          ece_raw=expected_calibration_error(test_labels, raw_scores))
    # what monitoring's estimate says of these rows: its own baseline, so an estimate is judged against an estimate
    test_days = pd.to_datetime(p.examples.frame["timestamp"].iloc[p.test_rows], utc=True).dt.tz_localize(None) \
        .to_numpy().astype("datetime64[D]")
    estimated = expected_accuracy.expected(test_scores, test_days, settings.review_capacity_per_day, min_frauds=1)
    if estimated is not None:
        result.metrics.update(roc_auc_estimated=estimated.roc_auc,  # type: ignore[arg-type]
                              average_precision_estimated=estimated.average_precision,  # type: ignore[arg-type]
                              precision_at_capacity_estimated=estimated.precision_at_capacity,  # type: ignore[arg-type]
                              precision_at_capacity=expected_accuracy.precision_at_capacity(
                                  test_days, test_scores, test_labels.astype(np.float64),
                                  settings.review_capacity_per_day))
    importance = evaluation.feature_importance(model.booster, p.preprocessor.output_names)
    report_dir = options.directory(settings) / REPORT_DIR
    # the review/decline pair: cheapest on validation within the review capacity, its cost on test beside
    frame = p.examples.frame
    volume = thresholds.volume_per_day(frame["timestamp"].iloc[np.concatenate([p.train_rows, p.test_rows])])
    holdout = thresholds.holdout_frame({
        "validation": (valid_scores, p.labels(p.valid_rows), frame.iloc[p.valid_rows]),
        "test": (test_scores, test_labels, frame.iloc[p.test_rows])}, volume)
    decision, on_test = thresholds.choose_on(holdout, CostModel.from_settings(settings), volume)
    result.metrics.update(on_test)
    report_dir.mkdir(parents=True, exist_ok=True)
    holdout.to_parquet(report_dir / decision_files.HOLDOUT_FILE, index=False)
    (report_dir / decision_files.DECISION_FILE).write_text(decision.model_dump_json(indent=1))
    thresholds.plot_on(holdout, decision, report_dir / decision_files.PLOT_FILE)
    evaluation.save_plots(report_dir, test_labels, test_scores, result, importance)
    calibration.save_reliability_plot(report_dir / calibration.RELIABILITY_PLOT, test_labels, raw_scores,
                                      test_scores)
    importance.to_csv(report_dir / "feature_importance.csv", index=False)
    m = result.metrics
    (report_dir / METRICS_FILE).write_text(json.dumps(m, indent=1))
    cv = json.loads((model_dir / TRAINING_FILE).read_text())["cv"]
    side_by_side = {"cv_scheme": options.cv, "cv_average_precision": cv["aucpr_mean"],
                    "test_average_precision": m["average_precision"], "cv_roc_auc": cv["auc_mean"],
                    "test_roc_auc": m["roc_auc"]}
    (report_dir / CV_VS_TEST_FILE).write_text(json.dumps(side_by_side, indent=1))
    # what the model learned from (fit + validation rows): drift compares served inputs and scores with it
    train_rows = p.train_rows
    reference = drift_reference.build_reference(
        p.examples.inputs(train_rows), model.probabilities(p.matrix(train_rows)), FEATURE_SET,
        times=p.examples.frame["timestamp"].to_numpy()[train_rows], history_start=p.examples.history_start,
        importance=importance.groupby(importance["feature"].str.split("=").str[0])["share"].sum().to_dict())
    (report_dir / drift_reference.FILE).write_text(reference.model_dump_json())
    say(f"evaluate: test AUC {m['roc_auc']:.4f}, AP {m['average_precision']:.4f}, precision {m['precision']:.3f}, "
        f"recall {m['recall']:.3f}, F1 {m['f1']:.3f} @ {threshold:.3f}, CP@100 {m['card_precision_at_100']:.3f}, "
        f"ECE {m['ece']:.4f} (raw {m['ece_raw']:.4f}); estimated from the scores alone: AUC "
        f"{m.get('roc_auc_estimated', float('nan')):.4f}, AP {m.get('average_precision_estimated', float('nan')):.4f}")
    say(f"evaluate: review at {decision.review_at:.4g}, decline at {decision.decline_at:.4g}: "
        f"{decision.reviews_per_day:.0f} reviews and {decision.declines_per_day:.0f} declines a day (capacity "
        f"{decision.costs.review_capacity_per_day}), expected cost {decision.expected_cost_per_day:,.0f} a day on "
        f"validation, {m.get('decision_cost_per_day', float('nan')):,.0f} on test")
    if cv["aucpr_mean"] == cv["aucpr_mean"]:  # NaN when tuning was skipped
        say(f"evaluate: CV ({options.cv}) vs test: AP {cv['aucpr_mean']:.4f} vs {m['average_precision']:.4f}, "
            f"AUC {cv['auc_mean']:.4f} vs {m['roc_auc']:.4f}")
    return m


# --- stage 6: register -------------------------------------------------------------------------------------
def register(settings: Settings, options: TrainOptions, p: Prepared, model_dir: Path, snapshot_path: Path,
             metrics: dict[str, float], say: Say) -> Report:
    """One MLflow run with parameters, CV and test metrics, artifacts and the model, registered as challenger."""
    if not options.register_model:
        return Report(metrics, None, None, model_dir)
    import mlflow

    from app import decision as decision_files
    from app.decision import Decision
    from app.registry import decision_tag
    from training import tracking
    from training.model import POSITIVE_WEIGHT, imbalance_weight

    training = json.loads((model_dir / TRAINING_FILE).read_text())
    model = model_artifact.ScoringModel.from_files(model_artifact.read_folder(model_dir))
    report_dir = options.directory(settings) / REPORT_DIR
    bounds = json.loads((snapshot_path.parent / PERIOD_FILE).read_text())
    tracking.connect(settings)
    with mlflow.start_run(run_name=f"train-{datetime.now(UTC):%Y%m%d-%H%M%S}") as run:
        mlflow.log_params({
            **{f"xgb_{k}": v for k, v in training["params"].items()}, "num_boost_round": training["rounds"],
            "scale_pos_weight": POSITIVE_WEIGHT, "class_imbalance": round(imbalance_weight(p.labels(p.fit_rows)), 3),
            "tune_trials": training["trials"],
            "cv_folds": training["folds"], "cv_scheme": options.cv,
            **({"cv_gap_days": training["cv_gap_days"]} if training.get("cv_gap_days") is not None else {}),
            "train_workers": training["workers"], "split": options.split, "test_fraction": options.test_fraction,
            "valid_fraction": options.valid_fraction, "seed": options.seed,
            "label_delay_days": settings.label_delay_days, "since": bounds["since"], "until": bounds["until"],
            "rows_fit": len(p.fit_rows), "rows_valid": len(p.valid_rows), "rows_test": len(p.test_rows),
            "threshold_rule": "max F1 on validation", "calibration": model.calibration.method,
            "calibration_max_ece_share": settings.calibration_max_ece_share,
        })
        mlflow.log_metrics({
            **{f"cv_{k}": v for k, v in training["cv"].items() if v == v},
            **{f"test_{k}": v for k, v in metrics.items() if v == v},
            "tune_seconds": training["tune_seconds"], "fit_seconds": training["fit_seconds"],
        })
        mlflow.set_tags({
            "git_commit": tracking.git_commit(), "data_md5": md5_of(snapshot_path), "feature_set": FEATURE_SET,
            "features": ",".join(FEATURES), "source": str(options.source_file or "feature store"),
        })
        tracking.log_artifacts([model_dir / name for name in (model_artifact.PREPROCESSOR_FILE,
                                                              model_artifact.CALIBRATION_FILE, TRAINING_FILE)],
                               model_artifact.PREPROCESSOR_DIR)
        tracking.log_artifacts([*sorted(report_dir.glob("*.png")), report_dir / "feature_importance.csv",
                                report_dir / METRICS_FILE, report_dir / CV_VS_TEST_FILE], REPORT_DIR)
        tracking.log_artifacts([report_dir / drift_reference.FILE], drift_reference.ARTIFACT_DIR)
        tracking.log_artifacts([report_dir / decision_files.HOLDOUT_FILE, report_dir / decision_files.DECISION_FILE],
                               decision_files.DECISION_DIR)
        example = pd.DataFrame(p.matrix(p.test_rows[:5]), columns=p.preprocessor.output_names)
        decision = Decision.model_validate_json((report_dir / decision_files.DECISION_FILE).read_text())
        version = tracking.log_model(model.booster, example, settings.registered_model_name, metrics["threshold"],
                                     {decision_files.DECISION_TAG: decision_tag(decision)})
        run_id = run.info.run_id
    say(f"register: MLflow run {run_id}, {settings.registered_model_name} version {version} -> alias 'challenger'")
    return Report(metrics, version, run_id, model_dir)


def run(settings: Settings, options: TrainOptions, say: Say) -> Report:
    """Every stage in order, the features prepared once."""
    snapshot_path = snapshot(settings, options, say)
    p = features(settings, options, snapshot_path, say)
    cv = tune(settings, options, p, say)
    model_dir = fit(settings, options, p, cv, say)
    metrics = evaluate(settings, options, p, model_dir, say)
    return register(settings, options, p, model_dir, snapshot_path, metrics, say)
