"""Drift compares like with like (monitoring/drift.py, app/drift_reference.py): a window's input only where the
history filled its window, calendar inputs only over whole weeks. On a simulated world with no drift switch, the
inputs of the days after training stay under the action threshold; with the switch on, amounts act at once."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from app.drift_reference import build_reference, numeric_reference, window_full
from app.model_inputs import CALENDAR_INPUTS, FEATURE_SET, NUMERIC_FEATURES, WINDOW_DAYS_OF, model_inputs, raw_columns
from app.point_in_time import history_frame
from app.reports import LEFT_OUT
from monitoring.drift import Thresholds, compare, whole_weeks
from streaming.simulator import DriftConfig, Simulator, SimulatorConfig

SEED = 20261206
START = datetime(2026, 8, 3, tzinfo=UTC)  # a Monday
DAY = timedelta(days=1)
World = tuple[dict[str, np.ndarray], np.ndarray]  # model inputs and event times of a simulated world


def _world(days: int, drift_at: datetime | None = None) -> pd.DataFrame:
    config = SimulatorConfig(seed=SEED, customers=800, merchants=120, drift=DriftConfig(at=drift_at, amount_factor=2))
    return pd.concat(Simulator(config).backfill(START, days), ignore_index=True).sort_values(
        "timestamp", kind="stable", ignore_index=True)


def _inputs(frame: pd.DataFrame) -> World:
    history = history_frame(frame, label_delay_days=1)
    inputs = model_inputs(raw_columns(frame), {name: history[name].to_numpy() for name in history.columns})
    return inputs, frame["timestamp"].to_numpy(dtype="datetime64[us]")


def _part(inputs: dict[str, np.ndarray], times: np.ndarray, since: datetime, until: datetime
          ) -> tuple[dict[str, np.ndarray], np.ndarray]:
    keep = (times >= np.datetime64(since.replace(tzinfo=None), "us")) & (
        times < np.datetime64(until.replace(tzinfo=None), "us"))
    return {k: v[keep] for k, v in inputs.items()}, times[keep]


@pytest.fixture(scope="module")
def same_world() -> World:
    return _inputs(_world(70))


def _check(world: World, train: tuple[int, int], serve: tuple[int, int],
           like_with_like: bool = True) -> dict[str, object]:
    inputs, times = world
    trained, train_times = _part(inputs, times, START + train[0] * DAY, START + train[1] * DAY)
    served, served_times = _part(inputs, times, START + serve[0] * DAY, START + serve[1] * DAY)
    scores = np.zeros(len(train_times))
    reference = build_reference(trained, scores, FEATURE_SET, *((train_times, START) if like_with_like else ()))
    results = compare(reference, served, None, Thresholds(), served_times if like_with_like else None,
                      float(serve[1] - serve[0]) if like_with_like else None)
    return {r.name: r for r in results}


def test_a_window_counts_rows_only_from_the_history_start_plus_its_span() -> None:
    times = np.array(["2026-08-03T00:00", "2026-08-09T23:59", "2026-08-10T00:00", "2026-09-10"], dtype="datetime64[us]")
    assert window_full(times, START, 7).tolist() == [False, False, True, True]
    assert window_full(times, None, 7).all() and window_full(times, START, None).all()


def test_the_reference_of_a_window_input_holds_only_rows_whose_window_was_full() -> None:
    times = (np.datetime64("2026-08-03", "us") + np.arange(40) * np.timedelta64(1, "D")).astype("datetime64[us]")
    inputs = {name: np.arange(40.0) for name in NUMERIC_FEATURES} | {"country": np.array(["DE"] * 40),
                                                                     "device_type": np.array(["web"] * 40),
                                                                     "currency": np.array(["EUR"] * 40)}
    reference = build_reference(inputs, np.zeros(40), FEATURE_SET, times, START)
    by_name = {r.name: r for r in reference.numeric}
    assert by_name["amount"].rows == 40 and by_name["amount"].window_days is None
    assert by_name["cust_txn_count_7d"].rows == 33 and by_name["cust_txn_count_7d"].window_days == 7
    assert by_name["merchant_txn_count_30d"].rows == 10
    assert by_name["cust_mean_amount_1d"].rows == 39
    assert reference.history_start == START


def test_calendar_inputs_are_judged_over_whole_weeks_only() -> None:
    assert whole_weeks(7) and whole_weeks(14.0) and not whole_weeks(3) and not whole_weeks(10) and not whole_weeks(None)
    reference = build_reference({n: np.zeros(10) for n in NUMERIC_FEATURES} | {
        "country": np.array(["DE"] * 10), "device_type": np.array(["web"] * 10), "currency": np.array(["EUR"] * 10)},
        np.zeros(10), FEATURE_SET)
    served = {n: np.ones(10) for n in NUMERIC_FEATURES} | {
        "country": np.array(["DE"] * 10), "device_type": np.array(["web"] * 10), "currency": np.array(["EUR"] * 10)}
    results = {r.name: r for r in compare(reference, served, None, window_days=3)}
    for name in CALENDAR_INPUTS:
        assert results[name].status == LEFT_OUT and "whole weeks" in results[name].reason
    assert results["amount"].status != LEFT_OUT


def test_a_young_world_cried_wolf_on_full_windows_and_no_longer_does(same_world: World) -> None:
    # the quick demo's shape: 28 days of history, the champion trained on them, 4 days of the same world served
    before = _check(same_world, (0, 28), (28, 32), like_with_like=False)
    acted = sorted(name for name, r in before.items() if r.status == "act")
    assert "merchant_txn_count_30d" in acted and "cust_txn_count_30d" in acted, acted  # the false alarm of old

    after = _check(same_world, (0, 28), (28, 32))
    assert [name for name, r in after.items() if r.status == "act"] == [], after
    for name, days in WINDOW_DAYS_OF.items():
        if days >= 30:
            assert after[name].status == LEFT_OUT and "full 30-day window" in after[name].reason
    for name in CALENDAR_INPUTS:
        assert after[name].status == LEFT_OUT
    assert after["amount"].status == "ok" and after["cust_txn_count_7d"].psi is not None


def test_an_old_enough_world_judges_every_input_over_a_week_and_none_acts(same_world: World) -> None:
    # history beyond the longest window before training starts: every reference is full; a week served
    after = _check(same_world, (31, 59), (59, 66))
    judged = {name: r for name, r in after.items() if r.status != LEFT_OUT}
    assert set(judged) == set(after), {n: r.reason for n, r in after.items() if r.status == LEFT_OUT}
    assert [name for name, r in judged.items() if r.status == "act"] == [], {n: r.psi for n, r in judged.items()}


def test_the_drift_switch_makes_amounts_act_in_one_day() -> None:
    world = _inputs(_world(60, drift_at=START + 59 * DAY))
    after = _check(world, (31, 59), (59, 60))
    assert after["amount"].status == "act", after["amount"]
    assert numeric_reference("x", np.zeros(0)).rows == 0
