"""A registered model as Serve holds it: booster, preprocessor, version and decision threshold, scoring column
arrays with ``inplace_predict`` (no DataFrame, no DMatrix per request)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import xgboost as xgb

from app.config import Settings
from app.preprocessing import Preprocessor
from app.registry import Registry

TOP_CONTRIBUTIONS = 3


@dataclass(frozen=True)
class LoadedModel:
    version: str
    booster: xgb.Booster
    preprocessor: Preprocessor
    threshold: float

    @classmethod
    def load(cls, settings: Settings, ref: str) -> LoadedModel:
        """``ref``: an alias ('champion') or a version number."""
        with Registry(settings) as registry:
            version = registry.resolve(ref)
            files = registry.download(version)
        booster = xgb.Booster()
        booster.load_model(bytearray(files.booster))
        booster.set_param({"nthread": 1})  # one request, one core: threads cost more than they save here
        return cls(version.version, booster, Preprocessor.model_validate_json(files.preprocessor),
                   version.threshold)

    def score(self, inputs: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        matrix = self.preprocessor.transform(inputs)
        probability = self.booster.inplace_predict(matrix, validate_features=False)
        return matrix, np.asarray(probability, dtype=np.float64)

    def explain(self, matrix: np.ndarray) -> list[list[dict[str, Any]]]:
        """The largest |contribution| features per row (XGBoost pred_contribs, in log-odds)."""
        contributions = self.booster.predict(
            xgb.DMatrix(matrix, feature_names=self.preprocessor.output_names), pred_contribs=True
        )[:, :-1]  # the last column is the bias
        names = self.preprocessor.output_names
        out = []
        for row in contributions:
            top = np.argsort(-np.abs(row))[:TOP_CONTRIBUTIONS]
            out.append([{"feature": names[i], "contribution": float(row[i])} for i in top])
        return out
