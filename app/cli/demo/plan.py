"""What the demo runs: the world's size, its timeline in event time, and the retraining run's parameters (pure).

The world is one pinned simulation. Its days, in event time:

    [history_days backfilled                  ][same_days live][drifted_days, drift on][live during the retraining]
    world_start        train_start                live_start      drift_at                trigger_at
    [windows filling  ][the champion's training]

History goes through Kafka and Spark with its labels in the rows (known one label delay after each transaction)
before the model is trained. The full plan's history is as old as the longest feature window before the champion's
training period starts (``app.features.history_span``): every training row sees full windows, as served rows do, so
the drift reference describes what serving sees and the same-world daily checks have nothing to cry wolf about. The
quick plan's history is a week (a smaller world for the suite): its inputs with longer windows are left out of the
drift verdict, with the reason shown (``monitoring.drift``). The live days are replayed as traffic that is scored
over HTTP (streaming/replay.py), faster than real time, without labels: their labels follow as label events, the
delay model's delays scaled so the chargeback limit (the latest a label comes) is one label delay of event time
(``label_time_scale``); each live day ends with the nightly check over that day (``monitoring.run.run_daily``, a
one-day drift window). The retraining run judges ``trigger_at`` once the labels of every live day before it have
come (``as_of = trigger_at + label delay``): the drift window covers the drifted days, the held-out comparison the
last ``compare_days`` of them, and the challenger trains on everything from ``train_start`` before. (The first daily
check after the switch already says retrain; the run waits for ``drifted_days`` so the challenger has drifted days
to learn from and a drifted day to be judged on.) The label horizon of the maturity curve is scaled as the delays
are, so the curve is measured from the live traffic's label events.
The timeline ends ``spare_days`` before today, so the traffic replayed during the run stays in the past.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, Field, model_validator

from app.features import history_span

# The demo's stream watermark: one replay step at most. A step's rows reach Kafka together and land in the
# partitions unevenly, so one query may read a step's late rows a batch after its early ones; with the watermark
# as long as a step nothing the replay sends is ever late, and the tiles must count every transaction. (The
# product's 10 s watermark is for real-time traffic; the replay compresses hours into seconds.) One value for both
# plans: a stack left up by one demo serves the next.
WATERMARK_MINUTES = 480
# The history in one micro-batch: Kafka's partitions are read proportionally, so a second batch starts each
# partition at another event time, and the first batch's watermark calls the slower partitions' rows late (the
# product's 200,000 split the full plan's 216,000 history rows and called 1,330 of them late).
HISTORY_MAX_OFFSETS = 500_000


class DemoPlan(BaseModel):
    name: Literal["full", "quick"]
    seed: int = 42
    customers: int = Field(ge=50)
    merchants: int = Field(ge=12)
    history_days: int = Field(ge=3)
    train_days: int = Field(ge=3, description="the champion's training period: the last days of the history")
    same_days: int = Field(ge=1)
    drifted_days: int = Field(ge=1)
    compare_days: float = Field(gt=0)
    spare_days: int = Field(default=5, ge=1)
    chunk_minutes: int = Field(ge=5, le=WATERMARK_MINUTES, description="event time replayed per step of live traffic")
    min_chunk_seconds: float = Field(default=3.0, ge=0, description="pace of the traffic during the retraining run")
    after_switch_chunks: int = Field(ge=1, description="live steps served by the new champion before the end")
    trials: int = Field(ge=0)
    folds: int = Field(default=5, ge=2)
    dag_trials: int = Field(ge=0)
    cv_gap_days: float = Field(default=1.0, ge=0)
    amount_factor: float = Field(default=2.0, gt=0, description="the drift: amounts x this (and the fraud mix)")
    # Average precision: the metric for a 0.65 % fraud rate. ROC AUC on a held-out day of the quick world (~25
    # frauds) moves by a few hundredths between equally good models; both are reported.
    promotion_metric: Literal["roc_auc", "average_precision"] = "average_precision"
    promotion_margin: float = 0.0
    label_delay_days: int = Field(default=1, ge=1, description="the demo's label delay (the product's is 7 days)")

    def label_time_scale(self, chargeback_limit_days: float) -> float:
        """The factor on the label delay model's delays: its latest label (the chargeback limit) comes one label
        delay after the transaction, as the history's row labels do."""
        return self.label_delay_days / chargeback_limit_days

    def label_horizon_days(self, horizon_days: float, chargeback_limit_days: float) -> float:
        """The maturity curve's horizon on the demo's clock: the product's, scaled as the delays are."""
        return horizon_days * self.label_time_scale(chargeback_limit_days)

    @model_validator(mode="after")
    def _trains_within_its_history(self) -> DemoPlan:
        if self.train_days > self.history_days:
            raise ValueError(f"train_days {self.train_days} is longer than the history ({self.history_days} days)")
        if self.compare_days >= self.drifted_days:
            raise ValueError(f"compare_days {self.compare_days} leaves the challenger no drifted day to learn from "
                             f"(drifted_days {self.drifted_days})")
        return self


TRAIN_DAYS = 14
FULL = DemoPlan(name="full", customers=1500, merchants=800, history_days=history_span() + TRAIN_DAYS,
                train_days=TRAIN_DAYS, same_days=3, drifted_days=2, compare_days=1, chunk_minutes=240,
                after_switch_chunks=4, trials=4, dag_trials=2)
# 7 days cut into 6 time-forward blocks of ~0.8 day: the CV gap must be shorter than a block. The traffic beside
# the retraining run paced at a step per 5 s (~130 requests/s): it shares two cores with the run it waits for.
QUICK = DemoPlan(name="quick", customers=600, merchants=300, history_days=7, train_days=7, same_days=1,
                 drifted_days=2, compare_days=1, chunk_minutes=480, min_chunk_seconds=5.0, after_switch_chunks=2,
                 trials=1, dag_trials=0, cv_gap_days=0.25)


class Timeline(BaseModel):
    world_start: datetime
    live_start: datetime
    drift_at: datetime
    trigger_at: datetime
    as_of: datetime
    compare_start: datetime
    train_start: datetime


def timeline(plan: DemoPlan, today: datetime, label_delay_days: int) -> Timeline:
    """``today``: midnight UTC of the run's day."""
    trigger_at = today - timedelta(days=plan.spare_days)
    drift_at = trigger_at - timedelta(days=plan.drifted_days)
    live_start = drift_at - timedelta(days=plan.same_days)
    world_start = live_start - timedelta(days=plan.history_days)
    compare_start = trigger_at - timedelta(days=plan.compare_days)
    return Timeline(world_start=world_start, live_start=live_start, drift_at=drift_at, trigger_at=trigger_at,
                    as_of=trigger_at + timedelta(days=label_delay_days), compare_start=compare_start,
                    train_start=live_start - timedelta(days=plan.train_days))


def world_days(plan: DemoPlan) -> int:
    """Days the simulator generates: the timeline and the traffic the retraining run may need after it."""
    return plan.history_days + plan.same_days + plan.drifted_days + plan.spare_days + 30


def dag_conf(plan: DemoPlan, line: Timeline, label_delay_days: int, label_horizon_days: float) -> dict[str, Any]:
    """The retraining run's parameters (the DAG's params) for this timeline and the demo's label times."""
    fmt = "%Y-%m-%dT%H:%M:%S"
    return {
        "as_of": line.as_of.strftime(fmt),
        "label_delay_days": label_delay_days,
        "drift_window_days": label_delay_days + plan.drifted_days,
        "compare_days": plan.compare_days,
        "train_days": (line.compare_start - line.train_start).total_seconds() / 86_400,
        "train_trials": plan.dag_trials,
        "train_args": f"--folds {plan.folds} --cv-gap-days {plan.cv_gap_days:g}",
        "promotion_metric": plan.promotion_metric,
        "promotion_margin": plan.promotion_margin,
        "label_horizon_days": label_horizon_days,
        "smoke_requests": 5,
        "job_timeout_minutes": 20,
    }
