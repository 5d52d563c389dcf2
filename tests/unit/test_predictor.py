"""The request path behind the API (serve_deployments/predictor.py) with small real stand-ins for its collaborators:
two real XGBoost models, a history source that answers as told, a list as prediction log, recording metrics.
Routing (champion / canary / shadow), error and degraded counting, reloads, health, and every answer's shape."""

from __future__ import annotations

import time
import uuid
from collections import defaultdict
from datetime import UTC, datetime

import numpy as np
import pytest
import xgboost as xgb

from app.config import Settings
from app.model_artifact import ScoringModel
from app.model_inputs import FEATURES, model_inputs
from app.preprocessing import Preprocessor
from app.schemas import HealthResponse, PredictionRequest, PredictionResponse
from serve_deployments.online_features import empty_history
from serve_deployments.predictor import Predictor

SEED = 20261202
T = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)


def _inputs(amounts: np.ndarray) -> dict[str, np.ndarray]:
    n = len(amounts)
    history = empty_history(n)
    from app.features import HISTORY_COLUMNS

    raw = {"amount": amounts, "timestamp": np.full(n, np.datetime64("2026-11-29T12:00:00", "us")),
           "country": np.full(n, "DE", dtype=object), "device_type": np.full(n, "web", dtype=object),
           "currency": np.full(n, "EUR", dtype=object)}
    return model_inputs(raw, {name: history[:, i] for i, name in enumerate(HISTORY_COLUMNS)})


def _model(version: str, fraud_above: float) -> ScoringModel:
    """A real booster that learned 'fraud above this amount'."""
    rng = np.random.default_rng(SEED)
    amounts = rng.uniform(1, 1000, 2000)
    inputs = _inputs(amounts)
    preprocessor = Preprocessor.fit(inputs)
    data = xgb.DMatrix(preprocessor.transform(inputs), label=(amounts > fraud_above).astype(int),
                       feature_names=preprocessor.output_names)
    booster = xgb.train({"objective": "binary:logistic", "max_depth": 2, "nthread": 1}, data, num_boost_round=20)
    return ScoringModel(version, booster, preprocessor, threshold=0.5)


MODELS = {"1": _model("1", 500.0), "2": _model("2", 100.0)}


class Recorded:
    def __init__(self) -> None:
        self.values: dict[tuple, float] = defaultdict(float)

    def inc(self, value: float = 1.0, tags: dict[str, str] | None = None) -> None:
        self.values[tuple(sorted((tags or {}).items()))] += value

    observe = set = inc


class Metrics:
    def __init__(self) -> None:
        for name in ("predictions", "latency", "batch_size", "degraded", "log_dropped", "reload_failures"):
            setattr(self, name, Recorded())


class History:
    """Answers every read with no history; ``degraded`` and ``down`` act as a slow or unreachable store."""

    def __init__(self) -> None:
        self.degraded = False
        self.down: str | None = None

    def history(self, customers, merchants, countries, times):  # type: ignore[no-untyped-def]
        rows = empty_history(len(customers))
        from app.features import HISTORY_COLUMNS

        return {name: rows[:, i] for i, name in enumerate(HISTORY_COLUMNS)}, self.degraded

    def ping(self) -> str | None:
        return self.down


class Log:
    def __init__(self) -> None:
        self.rows: list = []

    def append(self, rows: list) -> None:
        self.rows.extend(rows)

    def close(self) -> None:
        pass


def _loader(ref: str) -> ScoringModel:
    if ref not in MODELS:
        raise LookupError(f"model riskray-fraud has no version {ref}")
    return MODELS[ref]


@pytest.fixture
def predictor() -> Predictor:
    p = Predictor(Settings(), Metrics(), features=History(), log=Log(), loader=_loader)  # type: ignore[arg-type]
    p.reconfigure({"champion": "1"})
    return p


def _requests(n: int, amount: float = 300.0) -> list[PredictionRequest]:
    ids = [uuid.UUID(int=(SEED << 64) + i, version=4) for i in range(n)]
    return [PredictionRequest(amount=amount, merchant_id=7, customer_id=11 + i, transaction_id=ids[i], timestamp=T)
            for i in range(n)]


def _check_schema(answers: list[dict]) -> None:
    for answer in answers:
        assert PredictionResponse.model_validate(answer).model_dump(exclude_none=True) == answer


def test_the_champion_answers_logs_and_counts_each_request(predictor: Predictor) -> None:
    answers = predictor.answer(_requests(3), explain=False, endpoint="batch")
    _check_schema(answers)
    assert {a["model_version"] for a in answers} == {"1"} and not any(a["features_degraded"] for a in answers)
    assert [row.variant for row in predictor.log.rows] == ["champion"] * 3  # type: ignore[attr-defined]
    counted = predictor.metrics.predictions.values  # type: ignore[attr-defined]
    assert sum(counted.values()) == 3 and all(dict(k)["model_version"] == "1" for k in counted)


def test_explain_answers_carry_three_contributions_in_the_schema(predictor: Predictor) -> None:
    answers = predictor.answer(_requests(2), explain=True, endpoint="predict", received=[0.0, 0.0])
    _check_schema(answers)
    assert all(len(a["explanation"]) == 3 for a in answers)


def test_canary_answers_the_configured_share_and_the_same_transaction_always_alike(predictor: Predictor) -> None:
    predictor.reconfigure({"champion": "1", "challenger": "2", "ab_mode": "canary", "canary_share": 0.3})
    requests = _requests(2000)
    first = predictor.answer(requests, explain=False, endpoint="batch")
    _check_schema(first)
    share = sum(a["model_version"] == "2" for a in first) / len(first)
    assert abs(share - 0.3) < 0.03, f"seed {SEED}: challenger share {share:.3f}"  # 3 sigma is 0.031
    again = predictor.answer(requests, explain=False, endpoint="batch")
    assert [a["model_version"] for a in again] == [a["model_version"] for a in first]
    variants = {row.variant for row in predictor.log.rows}  # type: ignore[attr-defined]
    assert variants == {"champion", "challenger"}


def test_shadow_scores_with_both_and_returns_only_the_champion(predictor: Predictor) -> None:
    predictor.reconfigure({"champion": "1", "challenger": "2", "ab_mode": "shadow"})
    answers = predictor.answer(_requests(4), explain=False, endpoint="batch")
    _check_schema(answers)
    assert {a["model_version"] for a in answers} == {"1"}
    logged = [(row.variant, row.model_version) for row in predictor.log.rows]  # type: ignore[attr-defined]
    assert sorted(set(logged)) == [("champion", "1"), ("shadow", "2")] and len(logged) == 8


def test_a_degraded_history_is_flagged_and_counted(predictor: Predictor) -> None:
    predictor.features.degraded = True  # type: ignore[attr-defined]
    answers = predictor.answer(_requests(5), explain=False, endpoint="batch")
    _check_schema(answers)
    assert all(a["features_degraded"] for a in answers)
    assert sum(predictor.metrics.degraded.values.values()) == 5  # type: ignore[attr-defined]


def test_failures_are_counted_as_errors_of_the_serving_version(predictor: Predictor) -> None:
    predictor.failed(4)
    assert predictor.metrics.predictions.values[  # type: ignore[attr-defined]
        (("model_version", "1"), ("result", "error"))] == 4


def test_a_failed_reload_keeps_the_old_model_serving_and_is_counted(predictor: Predictor) -> None:
    predictor.reconfigure({"champion": "9"})
    assert predictor.champion is not None and predictor.champion.version == "1"
    assert sum(predictor.metrics.reload_failures.values.values()) == 1  # type: ignore[attr-defined]
    health = predictor.health()
    assert health.status == "ok" and health.model_version == "1" and "no version 9" in health.last_reload_error
    assert predictor.answer(_requests(1), explain=False, endpoint="batch")[0]["model_version"] == "1"
    predictor.reconfigure({"champion": "2"})  # the next good reload goes through and clears the error
    assert predictor.champion.version == "2" and predictor.health().last_reload_error is None


def test_a_failed_reload_is_tried_again_by_the_replica_until_the_registry_answers() -> None:
    """Serve reconfigures only on a changed user_config: re-sending the failed one would never load it."""
    available = dict(MODELS)
    missing = available.pop("2")

    def flaky(ref: str) -> ScoringModel:
        if ref not in available:
            raise ConnectionError("MLflow at 127.0.0.1:25000 is unreachable")
        return available[ref]

    p = Predictor(Settings(serve_store_retry_s=0.01), Metrics(), features=History(), log=Log(),  # type: ignore[arg-type]
                  loader=flaky)
    p.reconfigure({"champion": "1"})
    p.reconfigure({"champion": "2"})
    assert p.champion.version == "1" and "unreachable" in (p.load_error or "")
    time.sleep(0.02)
    assert p.retry_failed_reload()
    p._retry.join()  # type: ignore[union-attr]
    assert p.champion.version == "1" and sum(p.metrics.reload_failures.values.values()) == 2  # type: ignore[attr-defined]
    available["2"] = missing  # the registry is back
    time.sleep(0.02)
    assert p.retry_failed_reload()
    p._retry.join()  # type: ignore[union-attr]
    assert p.champion.version == "2" and p.load_error is None
    assert not p.retry_failed_reload()  # nothing pending any more


def test_health_names_a_missing_model_and_an_unreachable_store() -> None:
    empty = Predictor(Settings(), Metrics(), features=History(), log=Log(), loader=_loader)  # type: ignore[arg-type]
    assert empty.health() == HealthResponse(status="unavailable", reasons=["model not loaded"])
    with pytest.raises(LookupError):  # nothing to serve: Serve is told, and retries the replica
        empty.reconfigure({"champion": "9"})
    empty.reconfigure({"champion": "1"})
    empty.features.down = "feature store unreachable: connection refused"  # type: ignore[attr-defined]
    health = empty.health()
    assert health.status == "unavailable" and health.reasons == ["feature store unreachable: connection refused"]


def test_every_model_input_reaches_the_model(predictor: Predictor) -> None:
    assert set(predictor.champion.preprocessor.numeric) | set(  # type: ignore[union-attr]
        predictor.champion.preprocessor.categories) == set(FEATURES)  # type: ignore[union-attr]
