"""Run the simulator: live (events/s for a duration, event time = now) or backfill (N days at full speed).

Backfilled history carries its labels in the rows. Live traffic given a ``LabelFeed`` goes without them, as a real
client sends it, and the feed sends each label as an event when its report time comes."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pandas as pd

from streaming.label_feed import LabelFeed
from streaming.simulator import SCENARIOS, Simulator
from streaming.sinks import Sink

Progress = Callable[[float], None]  # called with the amount of work done since the last call


@dataclass
class RunStats:
    events: int = 0
    seconds: float = 0.0  # producing: the loop that paces events (live) or writes them (backfill)
    flush_seconds: float = 0.0  # waiting for the sink to deliver what was produced, after the loop
    by_scenario: Counter[str] = field(default_factory=Counter)
    labels_sent: int = 0  # label events sent (live with a LabelFeed)
    labels_held: int = 0  # label events whose report time had not come when the run ended

    @property
    def rate(self) -> float:
        return self.events / self.seconds if self.seconds else 0.0

    def share(self, scenario: str) -> float:
        return self.by_scenario[scenario] / self.events if self.events else 0.0

    def fraud_share(self) -> float:
        return sum(self.by_scenario[s] for s in SCENARIOS) / self.events if self.events else 0.0

    def add(self, frame: pd.DataFrame) -> None:
        self.events += len(frame)
        self.by_scenario.update(frame["scenario"].to_numpy().tolist())


def run_backfill(simulator: Simulator, sink: Sink, days: int, end: datetime | None = None,
                 progress: Progress = lambda _: None) -> RunStats:
    end = (end or datetime.now(UTC)).astimezone(UTC)
    start = end - timedelta(days=days)
    stats, began = RunStats(), time.monotonic()
    for frame in simulator.backfill(start, days):
        frame = frame[frame["timestamp"] < pd.Timestamp(end)]
        sink.write(frame)
        stats.add(frame)
        progress(1)
    _close(sink, stats, began)
    return stats


def _close(sink: Sink, stats: RunStats, began: float) -> None:
    stats.seconds = time.monotonic() - began
    sink.close()
    stats.flush_seconds = time.monotonic() - began - stats.seconds


# a tick's pandas work (make, queue, send) costs ~5 ms however few rows it carries: at 100 events/s, ticks of 50 ms
# took 11 % of a core with a discarding sink and 27 % in the soak beside the API it is meant to load, not compete with
MIN_ROWS_PER_TICK = 20


def live_tick_s(rate: float, tick_s: float = 0.05) -> float:
    """The live mode's tick: ``tick_s``, or longer at a low rate, so that a tick carries at least
    ``MIN_ROWS_PER_TICK`` rows (event times stay spread over the tick; none is ahead of the clock)."""
    return max(tick_s, MIN_ROWS_PER_TICK / rate) if rate > 0 else tick_s


def run_live(simulator: Simulator, sink: Sink, rate: float, duration_s: float, tick_s: float = 0.05,
             progress: Progress = lambda _: None, labels: LabelFeed | None = None) -> RunStats:
    """Keep ``rate`` events/s. Rows whose event time lies ahead (the rest of a card-testing burst) wait in a
    queue until their time comes, so event time never runs ahead of the clock. With ``labels``, the rows go
    without their label and the feed sends the label events whose report time has come, tick by tick."""
    stats = RunStats()
    tick_s = live_tick_s(rate, tick_s)
    began = time.monotonic()
    last_wall = datetime.now(UTC)
    pending = pd.DataFrame()
    created = 0
    while (elapsed := time.monotonic() - began) < duration_s:
        due = int(rate * elapsed) - created
        now_wall = datetime.now(UTC)
        if due > 0:
            fresh = simulator.live_batch(due, last_wall, now_wall)
            created += due
            pending = fresh if pending.empty else pd.concat([pending, fresh], ignore_index=True)
        if not pending.empty:
            ready = (pending["timestamp"] <= pd.Timestamp(now_wall)).to_numpy()
            ready_rows = pending[ready]
            pending = pending[~ready]
            if len(ready_rows):
                if labels is not None:
                    ready_rows = labels.without_labels(ready_rows)
                sink.write(ready_rows)
                stats.add(ready_rows)
        if labels is not None:
            stats.labels_sent += labels.release(pd.Timestamp(now_wall))
        last_wall = now_wall
        time.sleep(max(0.0, tick_s - (time.monotonic() - began - elapsed)))
        progress(min(time.monotonic() - began, duration_s) - min(elapsed, duration_s))
    _close(sink, stats, began)
    if labels is not None:
        labels.sink.close()
        stats.labels_held = labels.held
    return stats
