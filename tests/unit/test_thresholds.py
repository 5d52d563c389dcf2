"""The decision thresholds: the cheapest (review, decline) pair within the review capacity (training/thresholds.py),
and what an answer decides from them (app/decision.py)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from app.decision import OUTCOMES, CostModel, outcome_codes
from training.thresholds import choose, expected_cost

# 8 held-out rows standing for one day. By hand, review 4, declining a legitimate row 20, a missed fraud its amount:
#   no reviews: decline >= .80 (the .90 legitimate row 20, the .50 fraud missed 10) = 30
#   2 reviews:  decline >= .95, review .90 and .80 (8), the .50 fraud missed (10)   = 18
#   4 reviews:  decline >= .95, review .90 .. .50 (16), nothing missed               = 16
SCORES = np.array([0.95, 0.90, 0.80, 0.60, 0.50, 0.30, 0.20, 0.10])
FRAUD = np.array([1, 0, 1, 0, 1, 0, 0, 0])
AMOUNT = np.array([300, 50, 200, 40, 10, 80, 30, 20], dtype=float)


def _costs(capacity: int) -> CostModel:
    return CostModel(fraud_loss_share=1.0, review_cost=4, decline_cost=20, review_capacity_per_day=capacity)


@pytest.mark.parametrize(("capacity", "review_at", "decline_at", "cost"),
                         [(0, 0.80, 0.80, 30), (1, 0.80, 0.80, 30), (2, 0.80, 0.95, 18), (3, 0.80, 0.95, 18),
                          (4, 0.50, 0.95, 16), (8, 0.50, 0.95, 16)])
def test_the_cheapest_pair_within_the_review_capacity_is_the_one_worked_out_by_hand(
        capacity: int, review_at: float, decline_at: float, cost: float) -> None:
    decision = choose(SCORES, FRAUD, AMOUNT, _costs(capacity), volume_per_day=8)
    assert (decision.review_at, decision.decline_at) == (review_at, decline_at)
    assert decision.expected_cost_per_day == pytest.approx(cost)
    assert decision.reviews_per_day <= capacity


def test_capacity_and_costs_are_per_day_of_the_traffic_the_rows_stand_for() -> None:
    # each row stands for 10 transactions a day: 20 reviews a day is a band of 2 rows, the 4-row band is out
    decision = choose(SCORES, FRAUD, AMOUNT, _costs(20), volume_per_day=80)
    assert (decision.review_at, decision.decline_at) == (0.80, 0.95)
    assert decision.reviews_per_day == 20 and decision.expected_cost_per_day == pytest.approx(180)
    assert decision.missed_loss_per_day == pytest.approx(100) and decision.frauds_caught_share == pytest.approx(2 / 3)


def test_an_answer_declines_at_or_over_the_decline_threshold_reviews_in_the_band_and_approves_under_it() -> None:
    codes = outcome_codes(np.array([0.96, 0.95, 0.7, 0.5, 0.49]), review_at=0.5, decline_at=0.95)
    assert [OUTCOMES[c] for c in codes] == ["decline", "decline", "review", "review", "approve"]
    assert list(outcome_codes(np.array([0.9, 0.1]), 0.8, 0.8)) == [2, 0]  # no review band


@pytest.mark.parametrize("seed", range(6))
def test_the_choice_equals_a_brute_force_search_over_every_pair_of_thresholds(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = 40
    scores = np.round(rng.random(n), 1)  # ties: a threshold cannot split equal probabilities
    fraud = (rng.random(n) < scores * 0.6).astype(int)
    amount = np.round(rng.gamma(2, 60, n), 2)
    costs = CostModel(fraud_loss_share=0.8, review_cost=6, decline_cost=30, review_capacity_per_day=int(seed * 3))
    decision = choose(scores, fraud, amount, costs, volume_per_day=n)
    edges = [float("inf"), *sorted(set(scores.tolist()), reverse=True)]
    feasible = []
    for decline_at, review_at in itertools.product(edges, edges):
        if review_at > decline_at:
            continue
        reviews = int(((scores >= review_at) & (scores < decline_at)).sum())
        if reviews <= costs.review_capacity_per_day:
            feasible.append(expected_cost(scores, fraud, amount, costs, review_at, decline_at))
    assert decision.expected_cost_per_day == pytest.approx(min(feasible))
    assert expected_cost(scores, fraud, amount, costs, decision.review_at, decision.decline_at) == pytest.approx(
        decision.expected_cost_per_day)


def test_no_held_out_rows_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="no held-out rows"):
        choose(np.array([]), np.array([]), np.array([]), _costs(1), volume_per_day=1)


def test_the_thresholds_plot_is_written(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from training.thresholds import save_plot

    rng = np.random.default_rng(7)
    scores = rng.random(500) ** 3
    fraud = (rng.random(500) < scores).astype(int)
    decision = choose(scores, fraud, rng.gamma(2, 60, 500), _costs(20), volume_per_day=500)
    assert save_plot(scores, fraud, rng.gamma(2, 60, 500), decision, tmp_path / "t.png").stat().st_size > 0


def _payload(tags: dict[str, str]) -> dict:  # type: ignore[type-arg]
    return {"model_version": {"name": "riskray-fraud", "version": "3", "run_id": "r1", "source": "models:/m-1",
                              "tags": [{"key": k, "value": v} for k, v in tags.items()]}}


def test_a_versions_decision_travels_as_its_tag_and_a_version_without_one_declines_at_its_threshold() -> None:
    import httpx

    from app.config import Settings
    from app.model_artifact import ScoringModel
    from app.registry import Registry, RegistryError

    decision = choose(SCORES, FRAUD, AMOUNT, _costs(2), volume_per_day=8)
    tags: dict[str, str] = {"threshold": "0.7"}
    written: list[dict] = []  # type: ignore[type-arg]

    def mlflow(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/model-versions/set-tag"):
            import json

            written.append(json.loads(request.content))
            tags[written[-1]["key"]] = written[-1]["value"]
            return httpx.Response(200, json={})
        return httpx.Response(200, json=_payload(tags))

    with Registry(Settings(), transport=httpx.MockTransport(mlflow)) as registry:
        before = registry.version("3")
        assert before.decision is None
        legacy = ScoringModel("3", None, None, before.threshold)  # type: ignore[arg-type]
        assert list(legacy.outcomes(np.array([0.9, 0.7, 0.5]))) == [2, 2, 0]  # decline at the threshold, no review
        registry.set_decision("3", decision)
        after = registry.version("3")
        assert after.decision == decision and written[-1]["key"] == "decision"
        model = ScoringModel("3", None, None, after.threshold, decision=after.decision)  # type: ignore[arg-type]
        assert [OUTCOMES[c] for c in model.outcomes(np.array([0.95, 0.9, 0.5]))] == ["decline", "review", "approve"]
        # a tag no reader can parse: the version is still reachable (to promote away from, or to rewrite the tag),
        # and cannot be loaded to serve
        tags["decision"] = '{"review_at": "soon"}'
        broken = registry.version("3")
        assert broken.decision is None and "'decision' tag is not a decision" in (broken.decision_error or "")
        with pytest.raises(RegistryError, match="thresholds 3 --set"):
            registry.download(broken)


def test_a_pair_that_never_declines_survives_its_json_round_trip() -> None:
    costs = CostModel(fraud_loss_share=1.0, review_cost=1, decline_cost=10_000, review_capacity_per_day=8)
    decision = choose(SCORES[1:], FRAUD[1:], AMOUNT[1:], costs, volume_per_day=7)  # the highest score is legitimate
    assert decision.decline_at == float("inf")  # a false decline costs more than any fraud: review instead
    assert type(decision).model_validate_json(decision.model_dump_json()) == decision


@pytest.mark.parametrize("seed", range(40))
def test_equal_costs_go_to_fewer_reviews_then_fewer_declines_whatever_the_float_noise(seed: int) -> None:
    rng = np.random.default_rng(1000 + seed)
    n = 12
    scores = np.round(rng.random(n), 1)
    fraud = (rng.random(n) < 0.3).astype(int)
    amount = np.round(rng.random(n), 1)
    costs = CostModel(fraud_loss_share=0.7, review_cost=0.1, decline_cost=0.3, review_capacity_per_day=4)
    decision = choose(scores, fraud, amount, costs, volume_per_day=n)
    edges = [float("inf"), *sorted(set(scores.tolist()), reverse=True)]
    best = None
    for decline_at, review_at in itertools.product(edges, edges):
        if review_at > decline_at:
            continue
        reviews = int(((scores >= review_at) & (scores < decline_at)).sum())
        if reviews <= costs.review_capacity_per_day:
            key = (round(expected_cost(scores, fraud, amount, costs, review_at, decline_at), 6), reviews,
                   int((scores >= decline_at).sum()))
            best = key if best is None or key < best else best
    assert best is not None
    assert (round(decision.expected_cost_per_day, 6), decision.reviews_per_day, decision.declines_per_day) == best


def test_the_one_row_outcome_rule_serving_uses_is_the_vectorised_rule() -> None:
    from app.decision import outcome_code, outcome_codes

    rng = np.random.default_rng(20261206)
    p = np.concatenate([rng.random(500), [0.2, 0.7, 0.0, 1.0]])  # the thresholds themselves included
    for review_at, decline_at in ((0.2, 0.7), (0.7, 0.7), (0.0, 1.0), (float("inf"), float("inf"))):
        assert [outcome_code(x, review_at, decline_at) for x in p.tolist()] == outcome_codes(
            p, review_at, decline_at).tolist()
