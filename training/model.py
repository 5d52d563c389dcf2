"""XGBoost on Ray: hyperparameter search by 5-fold CV (time-forward by default) under Ray Tune, then the final fit under
Ray Train V2 (``XGBoostTrainer`` with ``train_loop_per_worker``) over N workers.

Two choices come from measurements on a 2-core machine (see ../shared/FACTS.md and the training benchmark):

* Tune trials run ``xgb.cv`` themselves with one CPU each rather than launching a Train job per trial: a trial
  that holds a CPU while its trainer's workers wait for CPUs deadlocks on 2 cores, and a Train job per fold
  adds seconds of actor start-up per fold.
* The final fit reports to Ray Train **once**, at the end, with the model as checkpoint. Ray's
  ``RayTrainReportCallback`` reports every boosting round even with checkpointing off, and each report costs
  the Train V2 controller a poll (~2 s on this machine): 100 rounds took 223 s instead of 29 s.
"""

from __future__ import annotations

import itertools
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import xgboost as xgb

from app.errors import UserError
from app.model_artifact import MODEL_FILE
from training.splits import Folds


class ResourcesError(UserError, RuntimeError):
    """The cluster lacks the CPUs a fit needs."""

# The original design's model: n_estimators 100, max_depth 6, learning_rate 0.1, subsample 0.8,
# colsample_bytree 0.8, min_child_weight 1, reg_lambda 1.0, reg_alpha 0.
DEFAULT_PARAMS: dict[str, Any] = {
    "max_depth": 6, "eta": 0.1, "subsample": 0.8, "colsample_bytree": 0.8, "min_child_weight": 1,
    "lambda": 1.0, "alpha": 0.0,
}
DEFAULT_ROUNDS = 100
MAX_ROUNDS = 300
EARLY_STOPPING_ROUNDS = 20
REPORT_EVERY = 10  # rounds between Tune reports: enough for the scheduler, cheap for the trial
RESOURCES_PATIENCE_S = 30.0  # how long a fit waits for CPUs that a finished Tune trial is still giving back


def base_params(scale_pos_weight: float, threads: int = 1) -> dict[str, Any]:
    return {"objective": "binary:logistic", "eval_metric": ["auc", "aucpr"], "tree_method": "hist",
            "scale_pos_weight": scale_pos_weight, "nthread": threads, "verbosity": 0}


# XGBoost's scale_pos_weight. Measured (benchmarks/model_quality.py, 3 worlds): negatives / positives (each class
# weighing the same, the usual advice) gave AP 0.48-0.59, its square root 0.51-0.61, no reweighting 0.52-0.64 on
# every world, AUC +0.02-0.04: average precision rewards ranking the few certain frauds first, which the true class
# balance does. Calibration no longer has inflated odds to undo.
POSITIVE_WEIGHT = 1.0


def imbalance_weight(labels: np.ndarray) -> float:
    """negatives / positives of the labels (logged beside the weight the booster used)."""
    positives = max(int(labels.sum()), 1)
    return float((len(labels) - positives) / positives)


def search_space() -> dict[str, Any]:
    from ray import tune

    return {
        "max_depth": tune.randint(3, 10),
        "eta": tune.loguniform(0.02, 0.3),
        "subsample": tune.uniform(0.6, 1.0),
        "colsample_bytree": tune.uniform(0.5, 1.0),
        "min_child_weight": tune.loguniform(0.5, 20.0),
        "lambda": 1.0,
        "alpha": 0.0,
    }


@dataclass
class CvResult:
    params: dict[str, Any]
    rounds: int  # best number of boosting rounds (early stopping on the CV mean)
    aucpr_mean: float
    aucpr_std: float
    auc_mean: float
    auc_std: float
    trials: int
    seconds: float
    gap_days: float | None = None  # time folds: the gap between a fold's training and validation rows used


@dataclass
class CvRound:
    """The held-out folds' metrics after one boosting round: mean and standard deviation over the folds."""
    aucpr_mean: float
    aucpr_std: float
    auc_mean: float
    auc_std: float


def fold_rows(labels: np.ndarray, folds: int | Folds, seed: int) -> Folds:
    """Explicit (train, validation) rows; a count means stratified random folds (xgb.cv's own split)."""
    if not isinstance(folds, int):
        return folds
    from sklearn.model_selection import StratifiedKFold

    held_out = [test for _, test in StratifiedKFold(folds, shuffle=True, random_state=seed).split(labels, labels)]
    everything = np.arange(len(labels))
    return [(np.setdiff1d(everything, test, assume_unique=True), test) for test in held_out]


def cross_validate(params: dict[str, Any], dall: xgb.DMatrix, folds: Folds, *, max_rounds: int,
                   early_stopping_rounds: int, on_round: Any = None) -> list[CvRound]:
    """k-fold CV in lockstep, early-stopped on the held-out folds' mean average precision; returns the rounds
    up to the best one.

    What ``xgb.cv`` does, less its evaluation of every training fold each round: that sorts ~4/5 of the rows
    twice per fold and round (AUC and AP) for a number nobody reads, and cost a quarter of the CV time here
    (benchmarks/training_benchmark.py)."""
    packs = []
    for train_rows, valid_rows in folds:
        dtrain, dvalid = dall.slice(train_rows), dall.slice(valid_rows)
        packs.append((xgb.Booster(params, [dtrain, dvalid]), dtrain, dvalid))
    history: list[CvRound] = []
    best, best_round = -np.inf, 0
    for iteration in range(max_rounds):
        scores: dict[str, list[float]] = {"auc": [], "aucpr": []}
        for booster, dtrain, dvalid in packs:
            booster.update(dtrain, iteration)
            # "[3]\tvalid-auc:0.91\tvalid-aucpr:0.52"
            for item in booster.eval_set([(dvalid, "valid")], iteration).split("\t")[1:]:
                name, value = item.split(":")
                scores[name.removeprefix("valid-")].append(float(value))
        history.append(CvRound(float(np.mean(scores["aucpr"])), float(np.std(scores["aucpr"])),
                               float(np.mean(scores["auc"])), float(np.std(scores["auc"]))))
        if on_round is not None:
            on_round(iteration, history[-1])
        if history[-1].aucpr_mean > best:
            best, best_round = history[-1].aucpr_mean, iteration
        elif iteration - best_round >= early_stopping_rounds:
            break
    return history[: best_round + 1]


def _cv_trial(config: dict[str, Any], matrix: np.ndarray, labels: np.ndarray, feature_names: list[str],
              folds: int | Folds, scale_pos_weight: float, seed: int) -> None:
    """One Tune trial: k-fold CV of one configuration, reporting the CV means as it boosts. ``folds``: explicit
    (train, validation) rows (time-forward), or a count of stratified random folds."""
    from ray import tune

    def report(iteration: int, scores: CvRound) -> None:
        if (iteration + 1) % REPORT_EVERY == 0:
            tune.report({"cv_aucpr": scores.aucpr_mean, "cv_auc": scores.auc_mean, "rounds": iteration + 1})

    dall = xgb.DMatrix(matrix, label=labels, feature_names=feature_names)
    params = {**base_params(scale_pos_weight), **config}
    history = cross_validate(params, dall, fold_rows(labels, folds, seed), max_rounds=MAX_ROUNDS,
                             early_stopping_rounds=EARLY_STOPPING_ROUNDS, on_round=report)
    best = history[-1]
    tune.report({
        "cv_aucpr": best.aucpr_mean, "cv_aucpr_std": best.aucpr_std, "cv_auc": best.auc_mean,
        "cv_auc_std": best.auc_std, "best_rounds": len(history), "done": True,
    })


def tune_with_cv(matrix: np.ndarray, labels: np.ndarray, feature_names: list[str], *, trials: int,
                 folds: int | Folds, max_concurrent: int, storage: Path, seed: int = 7, cpus_per_trial: float = 0.9
                 ) -> CvResult:
    """Search ``trials`` configurations (the original design's defaults first) by k-fold CV mean average
    precision; ASHA stops trials that fall behind at the same round count. ``folds``: time-forward (train,
    validation) rows (``training.splits``), or a count of stratified random folds."""
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search import BasicVariantGenerator

    started = time.monotonic()
    trainable = tune.with_resources(
        tune.with_parameters(_cv_trial, matrix=matrix, labels=labels, feature_names=feature_names, folds=folds,
                             scale_pos_weight=POSITIVE_WEIGHT, seed=seed),
        {"cpu": cpus_per_trial},
    )
    tuner = tune.Tuner(
        trainable,
        param_space=search_space(),
        tune_config=tune.TuneConfig(
            metric="cv_aucpr", mode="max", num_samples=trials,
            # one training_iteration = one report = REPORT_EVERY boosting rounds
            scheduler=ASHAScheduler(time_attr="training_iteration", max_t=MAX_ROUNDS // REPORT_EVERY + 1,
                                    grace_period=3, reduction_factor=2),
            search_alg=BasicVariantGenerator(points_to_evaluate=[DEFAULT_PARAMS], random_state=seed,
                                             max_concurrent=max_concurrent),
        ),
        run_config=tune.RunConfig(name=f"cv-{int(time.time())}", storage_path=str(storage), verbose=0),
    )
    grid = tuner.fit()
    finished = [r for r in grid if r.error is None and r.metrics and r.metrics.get("done")]
    if not finished:
        errors = [str(r.error).splitlines()[0] for r in grid if r.error is not None]
        raise RuntimeError("no tuning trial finished" + (f": {errors[0]}" if errors else ""))
    best = max(finished, key=lambda r: r.metrics["cv_aucpr"])
    m = best.metrics
    return CvResult(params=dict(best.config), rounds=int(m["best_rounds"]), aucpr_mean=m["cv_aucpr"],
                    aucpr_std=m["cv_aucpr_std"], auc_mean=m["cv_auc"], auc_std=m["cv_auc_std"],
                    trials=len(grid), seconds=time.monotonic() - started)


def _train_loop_per_worker(config: dict[str, Any]) -> None:
    """Runs on every Ray Train worker: its shard as a DMatrix, XGBoost's collective trains one model."""
    import ray
    import ray.train

    context = ray.train.get_context()
    names = config["feature_names"]
    matrix, labels = ray.get(config["shards"][context.get_world_rank()])
    valid_matrix, valid_labels = ray.get(config["valid"])
    dtrain = xgb.DMatrix(matrix, label=labels, feature_names=names)
    # each worker evaluates the whole validation set; metrics are identical on every rank
    dvalid = xgb.DMatrix(valid_matrix, label=valid_labels, feature_names=names)
    evals_result: dict = {}
    booster = xgb.train(config["params"], dtrain, num_boost_round=config["rounds"],
                        evals=[(dvalid, "valid")], evals_result=evals_result, verbose_eval=False)
    metrics = {f"valid_{k}": float(v[-1]) for k, v in evals_result["valid"].items()}
    # One report at the end; only rank 0 attaches the model (every rank holds the same booster).
    with tempfile.TemporaryDirectory() as directory:
        checkpoint = None
        if context.get_world_rank() == 0:
            booster.save_model(str(Path(directory) / MODEL_FILE))
            checkpoint = ray.train.Checkpoint.from_directory(directory)
        ray.train.report(metrics, checkpoint=checkpoint)


@dataclass
class FitResult:
    booster: xgb.Booster
    seconds: float
    metrics: dict[str, float]


def fit_distributed(train: tuple[np.ndarray, np.ndarray], valid: tuple[np.ndarray, np.ndarray],
                    feature_names: list[str], params: dict[str, Any], rounds: int, *, workers: int,
                    cpus_per_worker: float, storage: Path) -> FitResult:
    """The final model under Ray Train V2 on ``workers`` workers.

    Each worker's shard travels through the object store (``ray.put`` here, ``ray.get`` on the worker): the
    training matrix is already in memory, and Ray Data's streaming split of the same rows cost ~11 s per fit
    on this machine (20k rows) against ~0.05 s this way."""
    import ray
    from ray.train import RunConfig, ScalingConfig
    from ray.train.xgboost import XGBoostTrainer

    # A Tune trial that just finished gives its CPU back asynchronously (its actor stops after tuner.fit returns);
    # wait for that, but not forever: Ray Train would wait for the CPUs forever, so say so instead
    deadline = time.monotonic() + RESOURCES_PATIENCE_S
    while (free := ray.available_resources().get("CPU", 0.0)) + 1e-9 < workers * cpus_per_worker:
        if time.monotonic() > deadline:
            break
        time.sleep(0.5)
    if free + 1e-9 < workers * cpus_per_worker:
        raise ResourcesError(
            f"Ray has {free:g} CPUs free, training needs {workers} workers x {cpus_per_worker:g} CPU: lower --workers, "
            "or free CPUs (other Ray jobs, Serve replicas)")
    started = time.monotonic()
    bounds = np.linspace(0, len(train[1]), workers + 1).astype(int)
    shards = [ray.put((train[0][a:b], train[1][a:b])) for a, b in itertools.pairwise(bounds)]
    threads = max(int(cpus_per_worker), 1)
    trainer = XGBoostTrainer(
        _train_loop_per_worker,
        train_loop_config={"params": {**base_params(POSITIVE_WEIGHT, threads), **params},
                           "rounds": rounds, "feature_names": feature_names,
                           "shards": shards, "valid": ray.put(valid)},
        scaling_config=ScalingConfig(num_workers=workers, resources_per_worker={"CPU": cpus_per_worker}),
        run_config=RunConfig(name=f"fit-{int(time.time())}", storage_path=str(storage)),
    )
    result = trainer.fit()
    with result.checkpoint.as_directory() as directory:
        booster = xgb.Booster(model_file=str(Path(directory) / MODEL_FILE))
    return FitResult(booster, time.monotonic() - started, dict(result.metrics or {}))


def predict(booster: xgb.Booster, matrix: np.ndarray) -> np.ndarray:
    return booster.inplace_predict(matrix, validate_features=False)


def fit_plain(train: tuple[np.ndarray, np.ndarray], feature_names: list[str], params: dict[str, Any],
              rounds: int, threads: int) -> xgb.Booster:
    """Plain single-process ``xgb.train``: the benchmark's baseline."""
    dtrain = xgb.DMatrix(train[0], label=train[1], feature_names=feature_names)
    return xgb.train({**base_params(POSITIVE_WEIGHT, threads), **params}, dtrain, num_boost_round=rounds)
