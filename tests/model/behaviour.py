"""A model trained on a pinned simulated world, and the behaviour it must show (the Made With ML habit of model
tests). Shared by tests/model/test_model_behaviour.py, which asserts floors on one pinned seed, and
benchmarks/floors.py, which measures the same quantities over many seeds to show the floors hold with margin.

The model is the project's own: point-in-time features, the time split and preprocessing of training.pipeline,
the original design's XGBoost parameters, fitted with plain xgboost (Ray Train gives the same model; no cluster
is needed to test behaviour).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import pandas as pd
from sklearn import metrics as skm

from app.config import Settings
from app.model_artifact import ScoringModel
from app.model_inputs import model_inputs
from app.point_in_time import history_frame
from streaming.simulator import ScenarioShares, Simulator, SimulatorConfig
from training import data
from training.model import DEFAULT_PARAMS, DEFAULT_ROUNDS, fit_plain
from training.options import TrainOptions
from training.pipeline import Prepared, prepare

WORLD_START = datetime(2026, 3, 2, tzinfo=UTC)
# the world of tests/integration/test_training.py: 3 default days from here (calendars depend on the day)
TRAINING_WORLD_START = datetime(2021, 3, 1, tzinfo=UTC)
TRAINING_WORLD_DAYS = 3
# the behaviour world: card testing and account takeovers three times their default share, so the test part
# holds enough of each to compare with their customers' usual transactions
BEHAVIOUR_SHARES = ScenarioShares(card_testing=0.003, account_takeover=0.003)


@dataclass
class Trained:
    seed: int
    prepared: Prepared
    model: ScoringModel
    test: pd.DataFrame  # the test part: ids, time, label, scenario, score
    test_inputs: dict[str, np.ndarray]
    test_history: pd.DataFrame


def train_on_world(seed: int, days: int = 4, shares: ScenarioShares | None = None,
                   start: datetime = WORLD_START) -> Trained:
    settings = Settings()
    config = SimulatorConfig(seed=seed, shares=shares or ScenarioShares())
    frames = Simulator(config).backfill(start, days)
    world = pd.concat(list(frames), ignore_index=True)
    snapshot = data.with_row_labels(data.check_transactions(world.drop(columns="scenario"), f"world {seed}"),
                                    settings, None)
    options = TrainOptions.from_settings(settings, trials=0, seed=seed)
    p = prepare(snapshot, settings, options, None, None)
    booster = fit_plain((p.matrix(p.fit_rows), p.labels(p.fit_rows)), p.preprocessor.output_names,
                        dict(DEFAULT_PARAMS), DEFAULT_ROUNDS, threads=2)
    model = ScoringModel(f"world-{seed}", booster, p.preprocessor, threshold=0.5)
    test = p.examples.frame.iloc[p.test_rows][["transaction_id", "customer_id", "timestamp", "is_fraud"]].copy()
    test["scenario"] = test["transaction_id"].map(world.set_index("transaction_id")["scenario"])
    test_inputs = p.examples.inputs(p.test_rows)
    test["score"] = model.score(test_inputs)[1]
    history = history_frame(snapshot, settings.label_delay_days)
    test_history = history.set_index(snapshot["transaction_id"]).loc[test["transaction_id"]]
    return Trained(seed, p, model, test.reset_index(drop=True), test_inputs, test_history)


def test_auc(t: Trained) -> float:
    return float(skm.roc_auc_score(t.test["is_fraud"], t.test["score"]))


def average_precision_vs_amount_alone(t: Trained) -> tuple[float, float]:
    """(the model's AP, the AP of ranking by amount alone) on the test part."""
    labels = t.test["is_fraud"].to_numpy()
    return (float(skm.average_precision_score(labels, t.test["score"])),
            float(skm.average_precision_score(labels, t.test_inputs["amount"])))


def share_scoring_higher_at_20x_amount(t: Trained) -> float:
    """Of the legitimate test transactions, the share that scores higher when the same transaction (same
    customer, time, history) asks for 20 times the amount."""
    legit = np.flatnonzero(t.test["is_fraud"].to_numpy() == 0)
    raw = {name: t.test_inputs[name][legit] for name in ("country", "device_type", "currency")}
    raw["amount"] = t.test_inputs["amount"][legit] * 20
    raw["timestamp"] = t.test["timestamp"].to_numpy(dtype="datetime64[us]")[legit]
    history = {name: t.test_history[name].to_numpy()[legit] for name in t.test_history.columns}
    _, boosted = t.model.score(model_inputs(raw, history))
    return float((boosted > t.test["score"].to_numpy()[legit]).mean())


def share_above_the_customers_usual(t: Trained, scenario: str) -> tuple[float, int]:
    """Of the test transactions of a fraud scenario whose customer has legitimate test transactions too, the share
    scoring above that customer's median legitimate score; and how many there were."""
    usual = t.test[t.test["scenario"] == ""].groupby("customer_id")["score"].median()
    cases = t.test[(t.test["scenario"] == scenario) & t.test["customer_id"].isin(usual.index)]
    if cases.empty:
        return float("nan"), 0
    return float((cases["score"].to_numpy() > usual.loc[cases["customer_id"]].to_numpy()).mean()), len(cases)
