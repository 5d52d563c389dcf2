"""Calibration (app/calibration.py, training/calibration.py) and its place in the model artifact: Platt scaling
fixes the inflated scores of an imbalance-weighted model without changing their order, leaves calibrated scores
alone, and ScoringModel applies it to every score, the identity when a version has no calibration file."""

from __future__ import annotations

from pathlib import Path

import httpx
import numpy as np
import xgboost as xgb
from sklearn.metrics import average_precision_score, roc_auc_score

from app import model_artifact
from app.calibration import Calibration, expected_calibration_error, reliability_curve, sigmoid
from app.config import Settings
from app.model_artifact import ModelFiles, ScoringModel
from app.preprocessing import Preprocessor
from app.registry import ModelVersion, Registry
from training import calibration

SEED = 20261202
ODDS_INFLATION = 30.0  # what scale_pos_weight does to the odds, roughly negatives / positives


def _world(n: int = 20_000) -> tuple[np.ndarray, np.ndarray]:
    """(labels, true fraud probability) of a simulated problem with a base rate of about 2 %."""
    rng = np.random.default_rng(SEED)
    log_odds = -4.5 + 1.2 * rng.standard_normal(n)
    truth = sigmoid(log_odds)
    return (rng.random(n) < truth).astype(np.int64), truth


def _inflated(truth: np.ndarray) -> np.ndarray:
    odds = truth / (1 - truth) * ODDS_INFLATION
    return odds / (1 + odds)


def test_platt_keeps_the_order_and_lowers_the_ece_of_inflated_scores() -> None:
    labels, truth = _world()
    raw = _inflated(truth)
    fitted = calibration.fit(labels, raw, max_ece_share=0.2)
    calibrated = fitted.apply(raw)
    assert fitted.method == "platt" and fitted.slope > 0
    assert fitted.ece_before == expected_calibration_error(labels, raw) > 0.1, f"seed {SEED}"
    assert fitted.ece_after == expected_calibration_error(labels, calibrated) < 0.01, f"seed {SEED}"
    assert roc_auc_score(labels, calibrated) == roc_auc_score(labels, raw)
    assert average_precision_score(labels, calibrated) == average_precision_score(labels, raw)
    assert np.array_equal(np.argsort(calibrated, kind="stable"), np.argsort(raw, kind="stable"))
    assert abs(fitted.intercept + np.log(ODDS_INFLATION)) < 0.5, f"seed {SEED}: intercept {fitted.intercept:.3f}"


def test_well_calibrated_scores_keep_the_identity() -> None:
    labels, truth = _world()
    fitted = calibration.fit(labels, truth, max_ece_share=0.2)
    assert fitted.method == "none" and fitted.ece_before == fitted.ece_after < 0.01, f"seed {SEED}"
    assert np.array_equal(fitted.apply(truth), truth)


def test_platt_keeps_the_order_of_the_highest_float32_scores() -> None:
    # XGBoost's scores are float32: its two values nearest 1 must stay apart after the log-odds clip
    top = np.array([0.9999999, np.nextafter(np.float32(1), np.float32(0)), 1.0], dtype=np.float32)
    assert np.all(np.diff(Calibration(method="platt", slope=0.9, intercept=-3.4).apply(top)) > 0)


def test_reliability_curve_and_ece_weigh_bins_by_their_rows() -> None:
    predicted, observed, count = reliability_curve(np.array([0, 1, 1, 1]), np.array([0.05, 0.05, 0.95, 1.0]))
    assert np.allclose(predicted, [0.05, 0.975]) and np.allclose(observed, [0.5, 1.0])
    assert count.tolist() == [2, 2]  # empty bins left out, a score of exactly 1 in the last bin
    assert np.isclose(expected_calibration_error(np.array([0, 1, 1, 1]), np.array([0.05, 0.05, 0.95, 1.0])),
                      (2 * 0.45 + 2 * 0.025) / 4)


def _booster_and_preprocessor() -> tuple[xgb.Booster, Preprocessor]:
    rng = np.random.default_rng(SEED)
    matrix = rng.standard_normal((500, 3)).astype(np.float32)
    labels = (matrix[:, 0] + 0.5 * rng.standard_normal(500) > 1.5).astype(int)
    booster = xgb.train({"objective": "binary:logistic", "max_depth": 2, "nthread": 1, "scale_pos_weight": 10.0},
                        xgb.DMatrix(matrix, label=labels), num_boost_round=10)
    preprocessor = Preprocessor(numeric=["a", "b", "c"], means=[0.0] * 3, scales=[1.0] * 3, categories={})
    return booster, preprocessor


PLATT = Calibration(method="platt", slope=0.8, intercept=-2.3)


def test_scoring_model_applies_the_calibration_and_the_identity_without_one() -> None:
    booster, preprocessor = _booster_and_preprocessor()
    matrix = np.random.default_rng(SEED + 1).standard_normal((50, 3)).astype(np.float32)
    raw = booster.inplace_predict(matrix, validate_features=False)
    files = ModelFiles("1", bytes(booster.save_raw(raw_format="ubj")), preprocessor.model_dump_json())
    unchanged = ScoringModel.from_files(files)
    assert unchanged.calibration.method == "none"
    assert np.array_equal(unchanged.probabilities(matrix), raw.astype(np.float64))
    calibrated = ScoringModel.from_files(ModelFiles("2", files.booster, files.preprocessor,
                                                    calibration=PLATT.model_dump_json()))
    assert calibrated.calibration == PLATT
    assert np.allclose(calibrated.probabilities(matrix), PLATT.apply(raw))


def test_read_folder_round_trips_save_and_reads_an_older_folder_without_calibration(tmp_path: Path) -> None:
    booster, preprocessor = _booster_and_preprocessor()
    folder = model_artifact.save(tmp_path / "model", booster, preprocessor, PLATT)
    files = model_artifact.read_folder(folder, version="7", threshold=0.3)
    model = ScoringModel.from_files(files)
    assert (model.version, model.threshold, model.calibration) == ("7", 0.3, PLATT)
    assert model.preprocessor.model_dump() == preprocessor.model_dump()
    matrix = np.eye(3, dtype=np.float32)
    assert np.allclose(model.probabilities(matrix),
                       PLATT.apply(booster.inplace_predict(matrix, validate_features=False)))
    (folder / model_artifact.CALIBRATION_FILE).unlink()  # a model folder written before calibration
    assert model_artifact.read_folder(folder).calibration is None


def test_the_registry_downloads_the_calibration_and_none_for_a_version_without_one() -> None:
    booster, preprocessor = _booster_and_preprocessor()
    stored = {model_artifact.MODEL_FILE: bytes(booster.save_raw(raw_format="ubj")),
              model_artifact.PREPROCESSOR_ARTIFACT: preprocessor.model_dump_json().encode(),
              model_artifact.CALIBRATION_ARTIFACT: PLATT.model_dump_json().encode()}
    asked: list[str] = []

    def mlflow(request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path.endswith("/model-versions/get-download-uri"):
            return httpx.Response(200, json={"artifact_uri": "mlflow-artifacts:/1/models/m-1/artifacts"})
        if path.endswith("/runs/get"):
            return httpx.Response(200, json={"run": {"info": {"artifact_uri": "mlflow-artifacts:/1/r1/artifacts"}}})
        name = path.split("/artifacts/", 2)[-1]
        asked.append(name)
        return httpx.Response(200, content=stored[name]) if name in stored else httpx.Response(404)

    version = ModelVersion("riskray-fraud", "3", "r1", "models:/m-1", (), 0.4)
    with Registry(Settings(), transport=httpx.MockTransport(mlflow)) as registry:
        assert ScoringModel.from_files(registry.download(version)).calibration == PLATT
        del stored[model_artifact.CALIBRATION_ARTIFACT]  # a version registered before calibration
        assert registry.download(version).calibration is None
    assert asked.count(model_artifact.CALIBRATION_ARTIFACT) == 2  # one request per download, found or not


def test_a_validation_part_of_one_class_keeps_the_identity() -> None:
    scores = np.linspace(0.01, 0.9, 50)
    fitted = calibration.fit(np.zeros(50, dtype=np.int64), scores, max_ece_share=0.2)
    assert fitted.method == "none" and np.array_equal(fitted.apply(scores), scores)
