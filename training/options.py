"""The options of one training run, defined once: `riskray train` (also the Ray job's entry point) and the DVC
stages (params.yaml) all build them with :meth:`TrainOptions.from_settings`, so a ``RISKRAY_*`` setting changes
every entry point alike and an explicit value (a CLI flag, a params.yaml entry) overrides it."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from app.config import Settings

Scheme = Literal["time", "stratified"]


class TrainOptions(BaseModel):
    source_file: Path | None = Field(default=None, description="train from a Parquet/CSV file, not the store")
    since: datetime | None = None
    until: datetime | None = None
    trials: int = Field(ge=0, description="Tune trials; 0 = the original design's defaults, no search")
    folds: int = Field(ge=2)
    cv: Scheme = Field(description="time: time-forward folds (prequential); stratified: random folds")
    cv_gap_days: float | None = Field(
        default=None, ge=0, description="time folds: days between a fold's training and validation rows; None: the "
                                        "label delay, shortened to fit a short period (training.splits.fitting_gap)")
    label_delay_days: float = Field(ge=0, description="the default gap of time folds (recorded in options.json, so "
                                                        "DVC re-runs the stages when it changes)")
    workers: int = Field(ge=1)
    split: Scheme = Field(description="time: test on the latest part; stratified: a random part")
    test_fraction: float = Field(default=0.2, gt=0, lt=0.9)
    valid_fraction: float = Field(default=0.15, gt=0, lt=0.9, description="latest part of the training part")
    seed: int
    register_model: bool = True
    work_dir: Path | None = Field(default=None, description="stage files; default: the settings' training folder")

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any) -> TrainOptions:
        """The settings' defaults, then every override that is not None."""
        values: dict[str, Any] = {
            "trials": settings.tune_trials, "folds": settings.cv_folds, "cv": settings.cv_scheme,
            "cv_gap_days": settings.cv_gap_days, "label_delay_days": settings.label_delay_days,
            "workers": settings.train_workers, "split": settings.train_split, "seed": settings.train_seed,
        }
        values.update({key: value for key, value in overrides.items() if value is not None})
        return cls.model_validate(values)

    def directory(self, settings: Settings) -> Path:
        return self.work_dir or settings.training_dir
