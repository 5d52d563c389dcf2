"""The request path behind the API (serve_deployments/predictor.py) with small real stand-ins for its collaborators:
two real XGBoost models, a history source that answers as told, a list as prediction log, recording metrics.
Routing (champion / canary / shadow), error and degraded counting, reloads, health, and every answer's shape."""

from __future__ import annotations

import time
import uuid
from collections import defaultdict
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
import xgboost as xgb

from app.config import Settings
from app.decision import CostModel, Decision
from app.lists import ListEntry, ListView
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
        for name in ("predictions", "decisions", "latency", "batch_size", "degraded", "log_dropped", "reload_failures"):
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


class Lists:
    """The lists as a test sets them (``view``), applied as serving applies the live ones."""

    def __init__(self) -> None:
        self.view = ListView([])

    def decide(self, customer_id: int, merchant_id: int, at: datetime):  # type: ignore[no-untyped-def]
        return self.view.decide(customer_id, merchant_id, at)

    def refresh(self) -> None:
        pass

    def close(self) -> None:
        pass


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
    p = Predictor(Settings(), Metrics(), features=History(), log=Log(), lists=Lists(), loader=_loader)  # type: ignore[arg-type]
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
                  lists=Lists(), loader=flaky)
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
    empty = Predictor(Settings(), Metrics(), features=History(), log=Log(), lists=Lists(), loader=_loader)  # type: ignore[arg-type]
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


def _decided(model: ScoringModel, review_at: float, decline_at: float) -> ScoringModel:
    decision = Decision(review_at=review_at, decline_at=decline_at, costs=CostModel(
        fraud_loss_share=1, review_cost=5, decline_cost=25, review_capacity_per_day=100), chosen_on="test", rows=1,
        frauds=0, volume_per_day=1, expected_cost_per_day=0, reviews_per_day=0, declines_per_day=0,
        missed_loss_per_day=0, frauds_caught_share=0)
    return replace(model, decision=decision)


def test_outcomes_follow_the_versions_review_and_decline_thresholds_and_only_flagged_answers_carry_reasons() -> None:
    amounts = [300.0, 501.0, 900.0]
    _, probability = MODELS["1"].score(_inputs(np.array(amounts)))
    assert probability[0] < probability[1] < probability[2]
    models = {"1": _decided(MODELS["1"], review_at=float(probability[1]), decline_at=float(probability[2]))}
    p = Predictor(Settings(), Metrics(), features=History(), log=Log(), lists=Lists(), loader=models.__getitem__)  # type: ignore[arg-type]
    p.reconfigure({"champion": "1"})
    requests = [_requests(1, amount)[0] for amount in amounts]
    answers = p.answer(requests, explain=False, endpoint="batch")
    _check_schema(answers)
    assert [a["outcome"] for a in answers] == ["approve", "review", "decline"]
    assert answers[0]["reasons"] == []
    # only the amount varies in this world, so it is the reason, worded from the row (a card with no history)
    assert answers[2]["reasons"][0] == {"input": "amount", "text": "amount 900.00 on a card with no earlier spending"}
    assert all(1 <= len(a["reasons"]) <= 3 for a in answers[1:])
    assert [row.outcome for row in p.log.rows] == ["approve", "review", "decline"]  # type: ignore[attr-defined]
    assert p.metrics.decisions.values == {  # type: ignore[attr-defined]
        (("model_version", "1"), ("outcome", outcome)): 1.0 for outcome in ("approve", "review", "decline")}


def test_a_review_no_input_pushed_says_its_score_and_threshold() -> None:
    models = {"1": _decided(MODELS["1"], review_at=0.0, decline_at=1.0)}  # every answer reviewed
    p = Predictor(Settings(), Metrics(), features=History(), log=Log(), lists=Lists(), loader=models.__getitem__)  # type: ignore[arg-type]
    p.reconfigure({"champion": "1"})
    answer = p.answer(_requests(1, 20.0), explain=False, endpoint="batch")[0]
    assert answer["outcome"] == "review"
    assert answer["reasons"] == [{"input": "probability", "text": (
        f"fraud probability {answer['fraud_probability']:.3f}, at or over the review threshold 0.000")}]


def test_canary_answers_carry_the_challengers_outcome_by_the_challengers_thresholds() -> None:
    models = {"1": _decided(MODELS["1"], review_at=0.9, decline_at=0.99),  # amount 300: approved by 1
              "2": _decided(MODELS["2"], review_at=0.01, decline_at=0.02)}  # declined by 2 (fraud above 100)
    p = Predictor(Settings(), Metrics(), features=History(), log=Log(), lists=Lists(), loader=models.__getitem__)  # type: ignore[arg-type]
    p.reconfigure({"champion": "1", "challenger": "2", "ab_mode": "canary", "canary_share": 0.5})
    answers = p.answer(_requests(200), explain=False, endpoint="batch")
    by_version = {(a["model_version"], a["outcome"], bool(a["reasons"])) for a in answers}
    assert by_version == {("1", "approve", False), ("2", "decline", True)}


def test_re_chosen_thresholds_for_the_served_version_reload_it_and_the_same_ones_do_not() -> None:
    loads: list[str] = []

    def counting(ref: str) -> ScoringModel:
        loads.append(ref)
        return MODELS[ref]

    p = Predictor(Settings(), Metrics(), features=History(), log=Log(), lists=Lists(), loader=counting)  # type: ignore[arg-type]
    p.reconfigure({"champion": "1", "decisions": "v1 review 0.2 decline 0.5"})
    p.reconfigure({"champion": "1", "decisions": "v1 review 0.2 decline 0.5", "canary_share": 0.2})
    assert loads == ["1"]
    p.reconfigure({"champion": "1", "decisions": "v1 review 0.3 decline 0.5"})
    assert loads == ["1", "1"]


def _entry(entry_id: int, kind: str, entity: str, entity_id: int, **times: datetime) -> ListEntry:
    return ListEntry(entry_id=entry_id, list=kind, entity=entity, entity_id=entity_id, reason="case 7: chargeback",
                     added_by="analyst@bank", added_at=times.get("added_at", datetime(2026, 1, 1, tzinfo=UTC)),
                     expires_at=times.get("expires_at"), removed_at=times.get("removed_at"))


def test_a_listed_entity_is_decided_by_its_list_before_the_model_and_the_reason_says_so() -> None:
    models = {"1": _decided(MODELS["1"], review_at=0.5, decline_at=0.9)}  # amount 300: approved by the model
    lists = Lists()
    p = Predictor(Settings(), Metrics(), features=History(), log=Log(), lists=lists,  # type: ignore[arg-type]
                  loader=models.__getitem__)
    p.reconfigure({"champion": "1"})
    requests = _requests(3)  # customers 11, 12, 13 at merchant 7
    lists.view = ListView([_entry(1, "deny", "customer", 11), _entry(2, "allow", "customer", 12)])
    answers = p.answer(requests, explain=False, endpoint="batch")
    _check_schema(answers)
    assert [a["outcome"] for a in answers] == ["decline", "approve", "approve"]
    assert answers[0]["reasons"] == [{"input": "list", "text": (
        "customer 11 is on the deny list: case 7: chargeback (added by analyst@bank on 2026-01-01)")}]
    assert answers[1]["reasons"][0]["text"].startswith("customer 12 is on the allow list")
    assert answers[2]["reasons"] == []  # the model's approval: no reasons
    assert answers[0]["is_fraud"] == answers[2]["is_fraud"]  # the original fields stay the model's
    # a deny on the merchant outweighs an allow on the card
    lists.view = ListView([_entry(2, "allow", "customer", 12), _entry(3, "deny", "merchant", 7)])
    assert {a["outcome"] for a in p.answer(requests, explain=False, endpoint="batch")} == {"decline"}


def test_a_list_entry_applies_from_its_addition_until_it_is_removed_or_expires() -> None:
    t = datetime(2026, 6, 1, tzinfo=UTC)
    day = timedelta(days=1)
    view = ListView([_entry(1, "deny", "customer", 1, added_at=t, expires_at=t + 2 * day),
                     _entry(2, "deny", "customer", 2, added_at=t, removed_at=t + day),
                     _entry(3, "allow", "customer", 2, added_at=t + 3 * day)])
    assert view.decide(1, 9, t - day) is None and view.decide(1, 9, t).entry_id == 1
    assert view.decide(1, 9, t + 2 * day) is None  # expired
    assert view.decide(2, 9, t + day / 2).entry_id == 2 and view.decide(2, 9, t + day) is None  # removed
    assert view.decide(2, 9, t + 4 * day).entry_id == 3  # a later entry of the same card


def test_a_listed_entity_is_logged_with_the_lists_outcome_for_the_shadow_model_too() -> None:
    models = {"1": _decided(MODELS["1"], review_at=0.5, decline_at=0.9), "2": _decided(MODELS["2"], 0.5, 0.9)}
    lists = Lists()
    lists.view = ListView([_entry(1, "allow", "customer", 11)])
    p = Predictor(Settings(), Metrics(), features=History(), log=Log(), lists=lists,  # type: ignore[arg-type]
                  loader=models.__getitem__)
    p.reconfigure({"champion": "1", "challenger": "2", "ab_mode": "shadow"})
    p.answer(_requests(1), explain=False, endpoint="batch")  # customer 11: model 2 alone would decline it
    assert [(row.variant, row.outcome) for row in p.log.rows] == [  # type: ignore[attr-defined]
        ("champion", "approve"), ("shadow", "approve")]
