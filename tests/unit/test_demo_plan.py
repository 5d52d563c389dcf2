"""The demo's plan: its timeline and the retraining run's periods fit together (app/cli/demo/plan.py), and the
replay cuts days into consecutive chunks (streaming/replay.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest

from app.cli.demo.plan import FULL, QUICK, WATERMARK_MINUTES, DemoPlan, dag_conf, timeline
from app.features import history_span
from streaming.replay import chunks

TODAY = datetime(2026, 12, 2, tzinfo=UTC)


@pytest.mark.parametrize("plan", [FULL, QUICK], ids=lambda p: p.name)
def test_the_timeline_runs_history_then_live_then_drift_then_the_trigger_in_the_past(plan: DemoPlan) -> None:
    line = timeline(plan, TODAY, label_delay_days=7)
    assert line.world_start < line.live_start < line.drift_at < line.trigger_at < TODAY
    assert line.live_start - line.world_start == timedelta(days=plan.history_days)
    assert line.trigger_at - line.drift_at == timedelta(days=plan.drifted_days)
    assert line.as_of == line.trigger_at + timedelta(days=7)  # every live label matured


@pytest.mark.parametrize("plan", [FULL, QUICK], ids=lambda p: p.name)
def test_the_run_judges_drifted_days_and_trains_the_challenger_on_the_days_before_them(plan: DemoPlan) -> None:
    line = timeline(plan, TODAY, label_delay_days=7)
    conf = dag_conf(plan, line, label_delay_days=7, label_horizon_days=0.75)
    as_of = datetime.fromisoformat(conf["as_of"]).replace(tzinfo=UTC)
    drift_start = as_of - timedelta(days=conf["drift_window_days"])
    compare_end = as_of - timedelta(days=conf["label_delay_days"])
    compare_start = compare_end - timedelta(days=conf["compare_days"])
    train_start = compare_start - timedelta(days=conf["train_days"])
    assert drift_start == line.drift_at  # the drift window holds drifted traffic only
    assert line.drift_at < compare_start < compare_end == line.trigger_at  # held out: the last drifted days
    assert train_start == line.train_start  # the challenger has seen drifted days, never the held-out ones
    assert conf["label_horizon_days"] == 0.75
    assert f"--folds {plan.folds}" in conf["train_args"]


@pytest.mark.parametrize("plan", [FULL, QUICK], ids=lambda p: p.name)
def test_no_replayed_row_can_be_late_a_step_never_spans_more_than_the_watermark(plan: DemoPlan) -> None:
    assert plan.chunk_minutes <= WATERMARK_MINUTES
    with pytest.raises(ValueError, match="chunk_minutes"):
        plan.model_validate({**plan.model_dump(), "chunk_minutes": WATERMARK_MINUTES + 1})


def test_the_full_plans_champion_trains_only_on_days_whose_every_feature_window_the_history_filled() -> None:
    line = timeline(FULL, TODAY, label_delay_days=1)
    assert line.train_start - line.world_start >= timedelta(days=history_span())
    assert line.live_start - line.train_start == timedelta(days=FULL.train_days)


def test_the_label_horizon_runs_on_the_demos_clock_as_the_label_delays_do() -> None:
    scale = FULL.label_time_scale(chargeback_limit_days=120)
    assert FULL.label_horizon_days(90, chargeback_limit_days=120) == pytest.approx(90 * scale) == 0.75


def test_a_plan_cannot_train_on_more_days_than_its_history() -> None:
    with pytest.raises(ValueError, match="train_days"):
        DemoPlan.model_validate({**QUICK.model_dump(), "train_days": QUICK.history_days + 1})


def test_the_quick_plan_keeps_the_full_plans_phases_and_five_fold_cv() -> None:
    assert QUICK.folds == FULL.folds == 5
    assert QUICK.same_days >= 1 and QUICK.drifted_days >= 1 and QUICK.after_switch_chunks >= 1
    assert QUICK.customers < FULL.customers and QUICK.history_days < FULL.history_days


def test_replay_chunks_cover_every_row_of_a_day_once_in_event_time_order() -> None:
    day = pd.DataFrame({"timestamp": pd.date_range("2026-11-01", periods=1440, freq="1min", tz=UTC)
                        + pd.Timedelta(seconds=30), "v": range(1440)})
    parts = list(chunks(iter([day]), 240))
    assert [end for end, _ in parts] == list(pd.date_range("2026-11-01 04:00", periods=6, freq="240min", tz=UTC))
    assert pd.concat([rows for _, rows in parts])["v"].tolist() == list(range(1440))
    assert all((rows["timestamp"] < end).all() for end, rows in parts)


def test_replay_chunks_sort_each_day_and_carry_rows_past_midnight_into_the_next_days_chunks() -> None:
    stamps = pd.to_datetime(["2026-11-01 05:00", "2026-11-01 01:00", "2026-11-02 00:30", "2026-11-01 23:00"], utc=True)
    day1 = pd.DataFrame({"timestamp": stamps, "v": [1, 0, 3, 2]})  # a burst spilled past midnight
    day2 = pd.DataFrame({"timestamp": pd.to_datetime(["2026-11-02 00:10", "2026-11-02 07:00"], utc=True),
                         "v": [10, 11]})
    parts = list(chunks(iter([day1, day2]), 240))
    assert sorted(pd.concat([rows for _, rows in parts])["v"].tolist()) == [0, 1, 2, 3, 10, 11]  # each row once
    replayed = pd.concat([rows for _, rows in parts])["timestamp"]
    assert replayed.is_monotonic_increasing  # no chunk holds a row older than the one before
    assert all(((rows["timestamp"] < end) & (rows["timestamp"] >= end - pd.Timedelta(minutes=240))).all()
               for end, rows in parts)
