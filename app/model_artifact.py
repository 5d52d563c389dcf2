"""A trained model as a set of files, and the one way to load and score it.

Layout (a training run's model folder, and the same files in MLflow):

* ``model.ubj``: the XGBoost booster (UBJSON; MLflow's xgboost flavour logs it under ``model/``);
* ``preprocessor.json``: the fitted :class:`app.preprocessing.Preprocessor` (a run artifact ``preprocessor/``);
* ``calibration.json``: the :class:`app.calibration.Calibration` applied to every score (beside the preprocessor,
  in ``preprocessor/``); a version registered before calibration has none and scores raw (the identity);
* the decision threshold: the model version's ``threshold`` tag in the registry (chosen by evaluation on the
  validation part's calibrated scores; a training folder's ``report/metrics.json`` holds it too): ``is_fraud``;
* the decision: the review/decline pair, the version's ``decision`` tag (``app.decision``; a training folder's
  ``report/decision.json``): the answer's outcome. A version from before it declines at the threshold and reviews
  nothing.

The constants below are the layout's one statement: training writes and logs with them; the registry and the demo
read with them.

Training writes it (:func:`save`); evaluation, batch scoring and serving read it through :class:`ScoringModel`; the
registry fetches its files and loads a registered version (``app.registry.load_scoring_model``). XGBoost is imported
only when a model is loaded, so importing ``app`` stays light.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from app.calibration import FILE as CALIBRATION_FILE
from app.calibration import Calibration
from app.decision import Decision, outcome_codes
from app.preprocessing import FILE_NAME as PREPROCESSOR_FILE
from app.preprocessing import Preprocessor

if TYPE_CHECKING:
    import xgboost as xgb

MODEL_DIR = "model"  # the training folder's model folder, and the MLflow model's name in its run
MODEL_FORMAT = "ubj"  # the booster's format (UBJSON); MLflow's xgboost flavour then names the file model.<format>
MODEL_FILE = f"model.{MODEL_FORMAT}"
PREPROCESSOR_DIR = "preprocessor"  # the run artifact folder logged beside the model
PREPROCESSOR_ARTIFACT = f"{PREPROCESSOR_DIR}/{PREPROCESSOR_FILE}"
CALIBRATION_ARTIFACT = f"{PREPROCESSOR_DIR}/{CALIBRATION_FILE}"
REPORT_DIR = "report"  # evaluation's plots and metrics: the training folder's report/, and the run artifact folder
THRESHOLD_TAG = "threshold"  # model-version tag in the registry
DEFAULT_THRESHOLD = 0.5
TOP_CONTRIBUTIONS = 3


@dataclass(frozen=True)
class ModelFiles:
    """A model's files as bytes, wherever they came from (a folder, or the registry)."""

    version: str
    booster: bytes
    preprocessor: str
    threshold: float = DEFAULT_THRESHOLD
    calibration: str | None = None  # calibration.json's text; None (a version without one): the identity
    decision: Decision | None = None


def save(directory: Path, booster: xgb.Booster, preprocessor: Preprocessor, calibration: Calibration) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    booster.save_model(str(directory / MODEL_FILE))
    preprocessor.save(directory)
    (directory / CALIBRATION_FILE).write_text(calibration.model_dump_json(indent=1))
    return directory


def read_folder(directory: Path, version: str = "local", threshold: float = DEFAULT_THRESHOLD) -> ModelFiles:
    calibration = directory / CALIBRATION_FILE
    return ModelFiles(version, (directory / MODEL_FILE).read_bytes(), (directory / PREPROCESSOR_FILE).read_text(),
                      threshold, calibration.read_text() if calibration.exists() else None)


def decide(probability: np.ndarray, threshold: float | np.ndarray) -> np.ndarray:
    """The decision rule: fraud (1) when the probability reaches the threshold (one, or one per row)."""
    return (np.asarray(probability) >= threshold).astype(np.int64)


@dataclass(frozen=True)
class ScoringModel:
    """Booster, preprocessor, version, decision threshold and calibration, scoring column arrays with
    ``inplace_predict`` (no DataFrame, no DMatrix per call). The threshold applies to calibrated probabilities."""

    version: str
    booster: Any  # xgboost.Booster
    preprocessor: Preprocessor
    threshold: float
    calibration: Calibration = field(default_factory=Calibration)
    decision: Decision | None = None

    @property
    def review_at(self) -> float:
        return self.decision.review_at if self.decision is not None else self.threshold

    @property
    def decline_at(self) -> float:
        return self.decision.decline_at if self.decision is not None else self.threshold

    @classmethod
    def from_files(cls, files: ModelFiles, threads: int | None = None) -> ScoringModel:
        import xgboost as xgb

        booster = xgb.Booster()
        booster.load_model(bytearray(files.booster))
        if threads is not None:
            booster.set_param({"nthread": threads})
        calibration = (Calibration.model_validate_json(files.calibration) if files.calibration is not None
                       else Calibration())
        return cls(files.version, booster, Preprocessor.model_validate_json(files.preprocessor), files.threshold,
                   calibration, files.decision)

    def probabilities(self, matrix: np.ndarray) -> np.ndarray:
        """Calibrated fraud probabilities of an already preprocessed matrix."""
        return self.calibration.apply(self.booster.inplace_predict(matrix, validate_features=False))

    def score(self, inputs: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """(preprocessed matrix, fraud probability) of model-input columns (``app.model_inputs``)."""
        matrix = self.preprocessor.transform(inputs)
        return matrix, self.probabilities(matrix)

    def decide(self, probability: np.ndarray) -> np.ndarray:
        return decide(probability, self.threshold)

    def outcomes(self, probability: np.ndarray) -> np.ndarray:
        """Outcome codes (``app.decision.OUTCOMES``) by the version's review/decline pair."""
        return outcome_codes(probability, self.review_at, self.decline_at)

    def explain(self, matrix: np.ndarray) -> list[list[dict[str, Any]]]:
        """The largest |contribution| features per row (XGBoost pred_contribs, in log-odds)."""
        import xgboost as xgb

        names = self.preprocessor.output_names
        contributions = self.booster.predict(xgb.DMatrix(matrix, feature_names=names), pred_contribs=True)[:, :-1]
        out = []
        for row in contributions:  # the last column (dropped) is the bias
            top = np.argsort(-np.abs(row))[:TOP_CONTRIBUTIONS]
            out.append([{"feature": names[i], "contribution": float(row[i])} for i in top])
        return out
