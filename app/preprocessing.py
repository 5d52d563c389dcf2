"""The preprocessing fitted on training data and shipped with the model, so serving transforms exactly alike.

Numeric inputs are standardised (scikit-learn's ``StandardScaler`` fits the means and scales); missing values
stay NaN, which XGBoost treats as *missing* and learns a default branch for — better than imputing a mean that
would hide "no history". Categoricals are one-hot encoded over the categories seen in training; an unseen
category encodes as all zeros. The fitted state is plain JSON (``preprocessor.json``), applied with numpy: no
scikit-learn object is unpickled at serving time and one request costs microseconds.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from pathlib import Path

import numpy as np
from pydantic import BaseModel

from app.model_inputs import CATEGORICAL_FEATURES, NUMERIC_FEATURES

FILE_NAME = "preprocessor.json"


class Preprocessor(BaseModel):
    numeric: list[str]
    means: list[float]
    scales: list[float]
    categories: dict[str, list[str]]

    @classmethod
    def fit(cls, columns: Mapping[str, np.ndarray]) -> Preprocessor:
        from sklearn.preprocessing import StandardScaler

        numeric = np.column_stack([np.asarray(columns[n], dtype=np.float64) for n in NUMERIC_FEATURES])
        with warnings.catch_warnings():  # a column with no value at all (e.g. no label old enough yet) is fine
            warnings.simplefilter("ignore", RuntimeWarning)
            scaler = StandardScaler().fit(numeric)  # NaNs are ignored in fit, as intended
        categories = {
            name: sorted({str(v) for v in np.asarray(columns[name], dtype=object)}) for name in CATEGORICAL_FEATURES
        }
        return cls(numeric=list(NUMERIC_FEATURES), means=np.nan_to_num(scaler.mean_).tolist(),
                   scales=np.nan_to_num(scaler.scale_, nan=1.0).tolist(), categories=categories)

    @property
    def output_names(self) -> list[str]:
        return [*self.numeric, *(f"{name}={value}" for name, values in self.categories.items() for value in values)]

    def model_post_init(self, _context: object) -> None:
        self._means = np.asarray(self.means)
        self._scales = np.asarray(self.scales)
        self._index = {name: {v: i for i, v in enumerate(values)} for name, values in self.categories.items()}

    def transform(self, columns: Mapping[str, np.ndarray]) -> np.ndarray:
        """The model matrix (float32, rows x output_names) for model-input columns."""
        n = len(columns[self.numeric[0]])
        width = len(self.numeric) + sum(len(v) for v in self.categories.values())
        out = np.zeros((n, width), dtype=np.float32)
        numeric = np.column_stack([np.asarray(columns[name], dtype=np.float64) for name in self.numeric])
        out[:, : len(self.numeric)] = (numeric - self._means) / self._scales
        offset = len(self.numeric)
        for name, values in self.categories.items():
            index = self._index[name]
            codes = np.fromiter((index.get(str(v), -1) for v in columns[name]), dtype=np.int64, count=n)
            known = codes >= 0
            out[np.flatnonzero(known), offset + codes[known]] = 1.0
            offset += len(values)
        return out

    def save(self, directory: Path) -> Path:
        path = directory / FILE_NAME
        path.write_text(self.model_dump_json(indent=1))
        return path

    @classmethod
    def load(cls, directory: Path) -> Preprocessor:
        return cls.model_validate_json((directory / FILE_NAME).read_text())
