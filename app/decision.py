"""What an answer decides: approve, review or decline, from the model's probability and its version's two
thresholds, which are chosen by money and by how many cases the fraud team can review a day
(``training.thresholds``).

The cost model, per transaction (one currency; a reviewed transaction's fraud is caught, so a review costs only the
review):

    approved fraud: its amount x ``fraud_loss_share``   approved legitimate: 0
    reviewed (either): ``review_cost``                  declined fraud: 0
    declined legitimate: ``decline_cost`` (the margin and the customer's trust a false decline loses)
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from app.config import Settings

# Where a version's decision lives: the pair as a model-version tag (compact JSON; re-choosing it for a registered
# version needs no retraining), and the run's artifact folder with the held-out rows it was chosen on and its plot
DECISION_TAG = "decision"
DECISION_DIR = "decision"
HOLDOUT_FILE = "holdout_scores.parquet"
DECISION_FILE = "decision.json"
PLOT_FILE = "thresholds.png"

Outcome = Literal["approve", "review", "decline"]
OUTCOMES: tuple[Outcome, ...] = ("approve", "review", "decline")  # index = outcome code


class CostModel(BaseModel):
    fraud_loss_share: float = Field(gt=0, le=1, description="share of a missed fraud's amount that is lost")
    review_cost: float = Field(ge=0, description="one analyst review")
    decline_cost: float = Field(ge=0, description="declining one legitimate transaction")
    review_capacity_per_day: int = Field(ge=0, description="reviews a day the team can do")

    @classmethod
    def from_settings(cls, settings: Settings) -> CostModel:
        return cls(fraud_loss_share=settings.cost_fraud_loss_share, review_cost=settings.cost_review,
                   decline_cost=settings.cost_decline_legit, review_capacity_per_day=settings.review_capacity_per_day)


class Decision(BaseModel):
    """A model version's two thresholds and what they are expected to cost, per day of traffic like the held-out
    rows they were chosen on. A probability at or over ``decline_at`` declines, else at or over ``review_at``
    reviews, else approves; ``review_at == decline_at`` means no review band (inf: never)."""

    model_config = ConfigDict(ser_json_inf_nan="strings")  # "Infinity" in JSON (a tag, a file), read back as inf

    review_at: float
    decline_at: float
    costs: CostModel
    chosen_on: str = Field(description="the held-out rows the pair was chosen on")
    rows: int
    frauds: int
    volume_per_day: float = Field(description="transactions a day the rows stand for")
    expected_cost_per_day: float
    reviews_per_day: float
    declines_per_day: float
    missed_loss_per_day: float
    frauds_caught_share: float = Field(description="share of the rows' frauds reviewed or declined")


def outcome_code(probability: float, review_at: float, decline_at: float) -> int:
    """One row's ``outcome_codes`` (serving's micro-batches of a few rows: no numpy per call)."""
    return 2 if probability >= decline_at else 1 if probability >= review_at else 0


def outcome_codes(probabilities: np.ndarray, review_at: float | np.ndarray, decline_at: float | np.ndarray
                  ) -> np.ndarray:
    """0 approve, 1 review, 2 decline per row (indexes of OUTCOMES); thresholds per row or one for all."""
    p = np.asarray(probabilities, dtype=np.float64)
    return np.where(p >= decline_at, 2, np.where(p >= review_at, 1, 0)).astype(np.int8)


def pair_text(version: str, review_at: float, decline_at: float) -> str:
    """A served version's pair as the Serve config (``ServeModelConfig.decisions``) and /health say it."""
    return f"v{version} review {review_at!r} decline {decline_at!r}"
